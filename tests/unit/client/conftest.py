"""A scripted stand-in server for `httpx.MockTransport`, and sync/async call helpers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypedDict

import httpx
import pytest

from sandbox.client import HTTPClientConfig, HTTPServiceClient

Reply = httpx.Response | Exception


def envelope(code: int = 0, data: Any = None, message: str = "success") -> dict[str, Any]:
    return {"code": code, "message": message, "data": data, "meta": {"trace_id": "t-1"}}


class FakeServer:
    """Records every request; answers from `replies` in order, then with a success
    envelope naming the request's path. An exception in `replies` is raised, as a
    transport failure would be."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.replies: list[Reply] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.replies:
            reply = self.replies.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply
        return httpx.Response(200, json=envelope(data={"path": request.url.path}))

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    @property
    def paths(self) -> list[str]:
        return [request.url.path for request in self.requests]

    @staticmethod
    def body(request: httpx.Request) -> Any:
        return json.loads(request.content) if request.content else None


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


class Transports(TypedDict):
    """The transport keywords of `HTTPServiceClient` and `Sandbox`."""

    transport: httpx.AsyncBaseTransport
    sync_transport: httpx.BaseTransport


@pytest.fixture
def transports(server: FakeServer) -> Transports:
    mock = httpx.MockTransport(server)
    return {"transport": mock, "sync_transport": mock}


@pytest.fixture
async def client(transports: Transports) -> AsyncIterator[HTTPServiceClient]:
    config = HTTPClientConfig(worker_id="w1", api_key="s3cret-key", retry_delay=0.0)
    client = HTTPServiceClient(config=config, **transports)
    yield client
    await client.aclose()


Invoke = Callable[..., Awaitable[Any]]


@pytest.fixture(params=["async", "sync"])
def call(request: pytest.FixtureRequest) -> Invoke:
    """``await call(obj, "execute", ...)`` runs ``obj.execute`` or ``obj.execute_sync``."""
    sync = request.param == "sync"

    async def invoke(obj: object, name: str, *args: Any, **kwargs: Any) -> Any:
        if sync:
            return getattr(obj, f"{name}_sync")(*args, **kwargs)
        return await getattr(obj, name)(*args, **kwargs)

    return invoke
