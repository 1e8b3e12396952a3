"""The Sandbox facade against a scripted in-process server (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from sandbox.client import Envelope, HTTPServiceClient, Sandbox
from sandbox.client._local_server import LocalServer
from sandbox.errors import SandboxConnectionError
from tests.unit.client.conftest import FakeServer, Invoke, Transports, envelope


@pytest.fixture
def no_spawn(monkeypatch: pytest.MonkeyPatch) -> list[Sequence[str]]:
    """Records (and refuses) every attempt to start a server process."""
    spawned: list[Sequence[str]] = []

    def spawn(command: Sequence[str]) -> LocalServer:
        spawned.append(command)
        raise AssertionError(f"tried to start a server: {command}")

    monkeypatch.setattr(LocalServer, "spawn", staticmethod(spawn))
    return spawned


def test_default_worker_id_is_generated_and_distinct() -> None:
    first, second = Sandbox(), Sandbox()

    assert re.fullmatch(r"worker-[0-9a-f]{8}", first.worker_id)
    assert first.worker_id != second.worker_id


async def test_first_call_starts_implicitly(
    server: FakeServer, transports: Transports, call: Invoke
) -> None:
    sb = Sandbox(worker_id="w7", **transports)
    assert not sb.is_started

    result = await call(sb, "execute", "bash:run", {"command": "ls"}, 30)
    await call(sb, "list_sessions")

    assert result == envelope(data={"path": "/execute"})
    assert sb.is_started
    assert server.paths == ["/health", "/execute", "/session/list"]
    assert server.body(server.requests[1]) == {
        "worker_id": "w7",
        "action": "bash:run",
        "params": {"command": "ls"},
        "timeout": 30,
    }
    assert {request.headers["X-Worker-ID"] for request in server.requests} == {"w7"}
    await call(sb, "close")


# The methods that return the server's envelope as it came.
FACADE: list[tuple[str, tuple[Any, ...], str, Any]] = [
    ("warmup", (["vm"], True), "/warmup", {"resources": ["vm"], "wait": True}),
    ("warmup", (), "/warmup", {"wait": False}),
    ("get_warmup_status", (), "/warmup/status", None),
    (
        "refresh_sessions",
        ("bash",),
        "/session/refresh",
        {"worker_id": "w7", "resource_type": "bash"},
    ),
    (
        "execute_batch",
        ([{"action": "bash:run", "params": {"command": "ls"}}], True, False),
        "/execute/batch",
        {
            "worker_id": "w7",
            "actions": [{"action": "bash:run", "params": {"command": "ls"}}],
            "parallel": True,
            "stop_on_error": False,
        },
    ),
    ("get_status", (), "/api/v1/lifecycle/status", {"worker_id": "w7"}),
    ("heartbeat", (), "/api/v1/lifecycle/heartbeat", {"worker_id": "w7"}),
    ("disconnect", (), "/api/v1/worker/disconnect", {"worker_id": "w7"}),
    ("health", (), "/health", None),
    ("shutdown_server", (), "/shutdown", {"force": False, "cleanup_sessions": True}),
]
# Every method that sends a request, with arguments it accepts.
REQUESTS: list[tuple[str, tuple[Any, ...]]] = [
    *((name, args) for name, args, _, _ in FACADE),
    ("execute", ("bash:run", {"command": "ls"})),
    ("create_session", ("vm", {"screen_size": [640, 480]})),
    ("destroy_session", ("vm",)),
    ("destroy_session", ()),
    ("list_sessions", ()),
    ("reinitialize", ("vm",)),
    ("get_tools", ()),
]


@pytest.mark.parametrize(("name", "args", "path", "body"), FACADE, ids=[f[0] for f in FACADE])
async def test_facade_method_calls_its_endpoint(
    server: FakeServer,
    transports: Transports,
    call: Invoke,
    name: str,
    args: tuple[Any, ...],
    path: str,
    body: Any,
) -> None:
    sb = Sandbox(worker_id="w7", api_key="k-123", **transports)
    await call(sb, "start")

    result = await call(sb, name, *args)
    await call(sb, "close")

    assert result == envelope(data={"path": path})
    assert server.last.url.path == path
    assert server.body(server.last) == body
    assert server.last.headers["Authorization"] == "Bearer k-123"


async def test_start_is_done_once(server: FakeServer, transports: Transports) -> None:
    sb = Sandbox(**transports)

    assert await sb.start() is sb
    assert sb.start_sync() is sb
    await sb.heartbeat()
    await sb.close()

    assert server.paths == ["/health", "/api/v1/lifecycle/heartbeat"]


async def test_start_reports_an_unreachable_server(
    server: FakeServer, transports: Transports, call: Invoke
) -> None:
    sb = Sandbox(retry_count=0, **transports)
    server.replies.append(httpx.ConnectError("Connection refused"))

    with pytest.raises(SandboxConnectionError, match="Is the server running"):
        await call(sb, "start")

    assert not sb.is_started
    await call(sb, "get_tools")  # a later call tries again
    assert sb.is_started
    await call(sb, "close")


async def test_start_accepts_a_server_reporting_trouble(
    server: FakeServer, transports: Transports, call: Invoke
) -> None:
    server.replies.append(httpx.Response(502, json=envelope(2001, message="Docker is down")))
    sb = Sandbox(**transports)

    await call(sb, "start")

    assert sb.is_started
    await call(sb, "close")


async def test_async_context_manager(server: FakeServer, transports: Transports) -> None:
    async with Sandbox(worker_id="w7", **transports) as sb:
        assert sb.is_started
        await sb.execute("bash:run", {"command": "true"})

    assert not sb.is_started
    with pytest.raises(RuntimeError, match="closed"):
        await sb.execute("bash:run")
    assert server.paths == ["/health", "/execute"]


def test_sync_context_manager(server: FakeServer, transports: Transports) -> None:
    with Sandbox(worker_id="w7", **transports) as sb:
        sb.execute_sync("bash:run", {"command": "true"})

    with pytest.raises(RuntimeError, match="closed"):
        sb.execute_sync("bash:run")
    with pytest.raises(RuntimeError, match="closed"):
        sb.start_sync()
    assert server.paths == ["/health", "/execute"]


async def test_close_twice_and_close_unstarted_are_harmless(
    server: FakeServer, transports: Transports, call: Invoke
) -> None:
    sb = Sandbox(**transports)

    await call(sb, "close")
    await call(sb, "close")

    assert server.requests == []
    with pytest.raises(RuntimeError, match="closed"):
        await call(sb, "start")


async def test_auto_start_uses_a_running_server(
    server: FakeServer,
    transports: Transports,
    call: Invoke,
    no_spawn: list[Sequence[str]],
) -> None:
    sb = Sandbox("http://localhost:18890", auto_start_server=True, **transports)

    await call(sb, "start")
    await call(sb, "close")

    assert no_spawn == []
    assert sb.server is None
    assert server.paths == ["/health"]
    assert server.requests[0].extensions["timeout"]["read"] == 2.0  # one quick probe


async def test_auto_start_never_starts_a_remote_server(
    server: FakeServer,
    transports: Transports,
    call: Invoke,
    no_spawn: list[Sequence[str]],
) -> None:
    server.replies.append(httpx.ConnectError("Connection refused"))
    sb = Sandbox("http://10.1.2.3:18890", auto_start_server=True, retry_count=0, **transports)

    with pytest.raises(SandboxConnectionError, match=r"10\.1\.2\.3"):
        await call(sb, "start")

    assert no_spawn == []
    await call(sb, "close")


async def test_auto_start_does_not_start_over_a_foreign_service(
    server: FakeServer,
    transports: Transports,
    call: Invoke,
    no_spawn: list[Sequence[str]],
) -> None:
    server.replies.append(httpx.Response(200, text="<html>someone else's app</html>"))
    sb = Sandbox(auto_start_server=True, **transports)

    with pytest.raises(SandboxConnectionError, match="without a sandbox envelope"):
        await call(sb, "start")

    assert no_spawn == []
    await call(sb, "close")


def test_repr_hides_the_api_key() -> None:
    sb = Sandbox(worker_id="w7", api_key="s3cret-key")

    assert "s3cret-key" not in repr(sb)
    assert "s3cret-key" not in repr(sb.client)
    assert "w7" in repr(sb)


async def test_the_http_client_underneath_starts_the_sandbox_and_returns_envelopes(
    server: FakeServer, transports: Transports, call: Invoke
) -> None:
    sb = Sandbox(worker_id="w7", **transports)

    listed = await call(sb.client, "list_sessions")

    assert isinstance(sb.client, HTTPServiceClient)
    assert sb.client.worker_id == "w7"
    assert sb.is_started
    assert server.paths == ["/health", "/session/list"]
    assert listed == envelope(data={"path": "/session/list"})
    await call(sb, "close")
    with pytest.raises(RuntimeError, match="Sandbox is closed"):
        await call(sb.client, "health")


async def test_an_endpoint_added_to_the_http_client_starts_a_sandbox_first(
    server: FakeServer, transports: Transports, call: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a new endpoint is: a builder (here `_get`) and the two I/O twins.
    async def ping(self: HTTPServiceClient) -> Envelope:
        return await self._send(self._get("/ping"))

    def ping_sync(self: HTTPServiceClient) -> Envelope:
        return self._send_sync(self._get("/ping"))

    monkeypatch.setattr(HTTPServiceClient, "ping", ping, raising=False)
    monkeypatch.setattr(HTTPServiceClient, "ping_sync", ping_sync, raising=False)
    sb = Sandbox(worker_id="w7", **transports)

    result = await call(sb.client, "ping")
    await call(sb.client, "ping")

    assert result == envelope(data={"path": "/ping"})
    assert server.paths == ["/health", "/ping", "/ping"]
    assert sb.is_started
    await call(sb, "close")
    with pytest.raises(RuntimeError, match="closed"):
        await call(sb.client, "ping")
    assert server.paths == ["/health", "/ping", "/ping"]


@pytest.mark.parametrize(("name", "args"), REQUESTS, ids=[r[0] for r in REQUESTS])
async def test_every_method_is_refused_after_close(
    server: FakeServer,
    transports: Transports,
    call: Invoke,
    name: str,
    args: tuple[Any, ...],
) -> None:
    sb = Sandbox(**transports)
    await call(sb, "start")
    await call(sb, "close")

    with pytest.raises(RuntimeError, match="Sandbox is closed"):
        await call(sb, name, *args)

    assert server.paths == ["/health"]
    assert not sb.is_started


async def test_concurrent_first_calls_start_once(transports: Transports) -> None:
    paths: list[str] = []

    async def slow_health(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path == "/health":
            await asyncio.sleep(0.05)  # let every other first call reach the start
        return httpx.Response(200, json=envelope())

    sb = Sandbox(transport=httpx.MockTransport(slow_health))

    results = await asyncio.gather(*(sb.execute("bash:run") for _ in range(8)))

    assert [result["code"] for result in results] == [0] * 8
    assert paths.count("/health") == 1
    assert paths.count("/execute") == 8
    await sb.close()


def test_concurrent_first_sync_calls_from_threads_start_once() -> None:
    paths: list[str] = []
    lock = threading.Lock()

    def slow_health(request: httpx.Request) -> httpx.Response:
        with lock:
            paths.append(request.url.path)
        if request.url.path == "/health":
            time.sleep(0.05)  # let every other thread reach the start
        return httpx.Response(200, json=envelope())

    sb = Sandbox(sync_transport=httpx.MockTransport(slow_health))

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: sb.execute_sync("bash:run"), range(8)))

    assert [result["code"] for result in results] == [0] * 8
    assert paths.count("/health") == 1
    assert paths.count("/execute") == 8
    sb.close_sync()


async def test_positional_timeout_works_on_both_clients(
    server: FakeServer, transports: Transports, client: HTTPServiceClient
) -> None:
    sb = Sandbox(worker_id="w1", **transports)

    await sb.execute("bash:run", {"command": "ls"}, 30)
    await client.execute("bash:run", {"command": "ls"}, 30)
    await client.execute("bash:run", {"command": "ls"}, timeout=30)

    bodies = [server.body(request) for request in server.requests[1:]]
    assert [body["timeout"] for body in bodies] == [30, 30, 30]
    await sb.close()
