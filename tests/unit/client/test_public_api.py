"""The client's public surface: what it exports and that every call has a sync twin."""

from __future__ import annotations

import inspect

import pytest

import sandbox.client
from sandbox.client import HTTPServiceClient, Sandbox


def test_exports_are_exactly_the_public_names_sorted() -> None:
    assert sandbox.client.__all__ == [
        "Envelope",
        "HTTPClientConfig",
        "HTTPServiceClient",
        "Sandbox",
        "SandboxConfig",
    ]
    assert sandbox.client.__all__ == sorted(sandbox.client.__all__)


def _async_methods(cls: type) -> list[str]:
    return [
        name
        for name, member in inspect.getmembers(cls, inspect.iscoroutinefunction)
        if not name.startswith("_")
    ]


@pytest.mark.parametrize("cls", [HTTPServiceClient, Sandbox])
def test_every_async_method_has_a_sync_twin_with_the_same_parameters(cls: type) -> None:
    # `aclose` is `close` under httpx's name; `close_sync` is the twin of both.
    twins = {"aclose": "close"}
    methods = _async_methods(cls)

    assert len(methods) >= 18
    for name in methods:
        twin = getattr(cls, f"{twins.get(name, name)}_sync")
        assert not inspect.iscoroutinefunction(twin)
        own = inspect.signature(getattr(cls, twins.get(name, name))).parameters
        assert inspect.signature(twin).parameters == own, name


def test_sandbox_offers_the_product_api() -> None:
    expected = {
        "start",
        "close",
        "aclose",
        "warmup",
        "get_warmup_status",
        "create_session",
        "destroy_session",
        "list_sessions",
        "reinitialize",
        "refresh_sessions",
        "execute",
        "execute_batch",
        "get_tools",
        "get_status",
        "health",
        "heartbeat",
        "disconnect",
        "shutdown_server",
    }

    assert set(_async_methods(Sandbox)) == expected


def test_both_close_asynchronously_with_a_blocking_twin() -> None:
    for cls in (Sandbox, HTTPServiceClient):
        assert inspect.iscoroutinefunction(cls.close)
        assert inspect.iscoroutinefunction(cls.aclose)
        assert not inspect.iscoroutinefunction(cls.close_sync)
