"""The client's public surface: what it exports and that every call has a sync twin."""

from __future__ import annotations

import inspect

import pytest

import sandbox.client
from sandbox.client import HTTPServiceClient, Sandbox


def test_exports_are_exactly_the_public_names_sorted() -> None:
    assert sandbox.client.__all__ == ["HTTPClientConfig", "HTTPServiceClient", "Sandbox"]
    assert sandbox.client.__all__ == sorted(sandbox.client.__all__)


def _async_methods(cls: type) -> list[str]:
    return [
        name
        for name, member in inspect.getmembers(cls, inspect.iscoroutinefunction)
        if not name.startswith("_")
    ]


@pytest.mark.parametrize("cls", [HTTPServiceClient, Sandbox])
def test_every_async_method_has_a_sync_twin_with_the_same_parameters(cls: type) -> None:
    twins = {"aclose": "close"} if cls is HTTPServiceClient else {}
    methods = _async_methods(cls)

    assert len(methods) >= 14
    for name in methods:
        twin = getattr(cls, twins.get(name, f"{name}_sync"))
        assert not inspect.iscoroutinefunction(twin)
        assert (
            inspect.signature(twin).parameters == inspect.signature(getattr(cls, name)).parameters
        ), name


def test_sandbox_offers_the_product_api() -> None:
    expected = {
        "start",
        "close",
        "warmup",
        "get_warmup_status",
        "create_session",
        "destroy_session",
        "list_sessions",
        "refresh_sessions",
        "execute",
        "execute_batch",
        "get_tools",
        "get_status",
        "heartbeat",
        "shutdown_server",
    }

    assert set(_async_methods(Sandbox)) == expected
