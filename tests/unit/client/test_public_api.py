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
    # Each class keeps its own closing contract: HTTPServiceClient's `close` blocks
    # and `aclose` is its async twin; Sandbox's `close` is async (so is `aclose`,
    # the same call) and `close_sync` blocks.
    twins = {"aclose": "close"} if cls is HTTPServiceClient else {"aclose": "close_sync"}
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

    # As an HTTPServiceClient, a Sandbox also has every endpoint the client has.
    assert set(_async_methods(Sandbox)) == expected | {"aclose", "disconnect", "health"}
    assert set(_async_methods(HTTPServiceClient)) <= set(_async_methods(Sandbox))


def test_sandbox_closes_asynchronously_and_the_http_client_blocks() -> None:
    assert inspect.iscoroutinefunction(Sandbox.close)
    assert not inspect.iscoroutinefunction(Sandbox.close_sync)
    assert not inspect.iscoroutinefunction(HTTPServiceClient.close)
