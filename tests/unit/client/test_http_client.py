"""HTTPServiceClient against a scripted in-process server (httpx.MockTransport)."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from sandbox.client import HTTPClientConfig, HTTPServiceClient
from sandbox.client._base import ClientState
from sandbox.errors import SandboxConnectionError, ToolNotFound, error_from_envelope
from tests.unit.client.conftest import FakeServer, Invoke, Transports, envelope

W = {"worker_id": "w1"}

ENDPOINTS: list[tuple[str, tuple[Any, ...], dict[str, Any], str, str, Any]] = [
    (
        "execute",
        ("bash:run", {"command": "ls"}),
        {"timeout": 5},
        "POST",
        "/execute",
        {**W, "action": "bash:run", "params": {"command": "ls"}, "timeout": 5},
    ),
    (
        "execute",
        ("vm:screenshot",),
        {},
        "POST",
        "/execute",
        {**W, "action": "vm:screenshot", "params": {}},
    ),
    (
        "execute_batch",
        (
            [
                {"action": "bash:run", "params": {"command": "ls"}},
                {"action": "vm:wait", "timeout": 3},
            ],
        ),
        {"parallel": True, "stop_on_error": False},
        "POST",
        "/execute/batch",
        {
            **W,
            "actions": [
                {"action": "bash:run", "params": {"command": "ls"}},
                {"action": "vm:wait", "params": {}, "timeout": 3},
            ],
            "parallel": True,
            "stop_on_error": False,
        },
    ),
    (
        "create_session",
        ("vm", {"screen_size": [800, 600]}),
        {"custom_name": "desk"},
        "POST",
        "/session/create",
        {**W, "resource_type": "vm", "config": {"screen_size": [800, 600]}, "custom_name": "desk"},
    ),
    (
        "create_session",
        ("bash",),
        {},
        "POST",
        "/session/create",
        {**W, "resource_type": "bash", "config": {}},
    ),
    ("destroy_session", ("vm",), {}, "POST", "/session/destroy", {**W, "resource_type": "vm"}),
    ("destroy_session", (), {}, "POST", "/session/destroy", W),
    ("list_sessions", (), {}, "POST", "/session/list", W),
    ("refresh_sessions", ("bash",), {}, "POST", "/session/refresh", {**W, "resource_type": "bash"}),
    ("refresh_sessions", (), {}, "POST", "/session/refresh", W),
    ("get_tools", (), {}, "GET", "/tools", None),
    ("health", (), {}, "GET", "/health", None),
    (
        "warmup",
        (["vm", "rag"],),
        {"wait": True},
        "POST",
        "/warmup",
        {"resources": ["vm", "rag"], "wait": True},
    ),
    ("warmup", ("rag",), {}, "POST", "/warmup", {"resources": ["rag"], "wait": False}),
    ("warmup", (), {}, "POST", "/warmup", {"wait": False}),
    ("get_warmup_status", (), {}, "GET", "/warmup/status", None),
    ("get_status", (), {}, "POST", "/api/v1/lifecycle/status", W),
    ("heartbeat", (), {}, "POST", "/api/v1/lifecycle/heartbeat", W),
    ("disconnect", (), {}, "POST", "/api/v1/worker/disconnect", W),
    ("shutdown_server", (), {}, "POST", "/shutdown", {"force": False, "cleanup_sessions": True}),
    (
        "shutdown_server",
        (True, False),
        {},
        "POST",
        "/shutdown",
        {"force": True, "cleanup_sessions": False},
    ),
    ("destroy_all_sessions", (), {}, "POST", "/api/v1/worker/disconnect", W),
    ("refresh_session", ("vm",), {}, "POST", "/session/refresh", {**W, "resource_type": "vm"}),
    ("get_tool_schema", ("vm:click",), {}, "GET", "/api/v1/tools/vm:click/schema", None),
    (
        "init_resource",
        ("rag", {"top_k": 10}),
        {},
        "POST",
        "/api/v1/init/resource",
        {**W, "resource_type": "rag", "init_config": {"top_k": 10}},
    ),
    (
        "init_batch",
        ({"vm": {"content": {"screen_size": [1920, 1080]}}},),
        {},
        "POST",
        "/api/v1/init/batch",
        {**W, "resource_configs": {"vm": {"content": {"screen_size": [1920, 1080]}}}},
    ),
    (
        "init_from_config",
        ("/srv/configs/rag.json",),
        {"override_params": {"top_k": 3}},
        "POST",
        "/api/v1/init/from-config",
        {**W, "config_path": "/srv/configs/rag.json", "override_params": {"top_k": 3}},
    ),
]


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "method", "path", "body"),
    ENDPOINTS,
    ids=[f"{e[0]}-{i}" for i, e in enumerate(ENDPOINTS)],
)
async def test_endpoint_sends_method_path_body_and_headers(
    client: HTTPServiceClient,
    server: FakeServer,
    call: Invoke,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    method: str,
    path: str,
    body: Any,
) -> None:
    result = await call(client, name, *args, **kwargs)

    assert result == envelope(data={"path": path})
    (request,) = server.requests
    assert (request.method, request.url.path) == (method, path)
    assert server.body(request) == body
    assert request.headers["X-Worker-ID"] == "w1"
    assert request.headers["Authorization"] == "Bearer s3cret-key"
    assert re.fullmatch(r"[0-9a-f]{32}", request.headers["X-Request-ID"])


async def test_worker_id_argument_wins_over_config(
    client: HTTPServiceClient, server: FakeServer, call: Invoke
) -> None:
    await call(client, "execute", "bash:run", {"command": "pwd"}, worker_id="w2")

    assert server.body(server.last)["worker_id"] == "w2"
    assert server.last.headers["X-Worker-ID"] == "w2"


async def test_worker_id_none_sends_no_worker(
    client: HTTPServiceClient, server: FakeServer, call: Invoke
) -> None:
    await call(client, "list_sessions", worker_id=None)

    assert server.body(server.last) == {}
    assert "X-Worker-ID" not in server.last.headers


async def test_no_api_key_sends_no_authorization(server: FakeServer, call: Invoke) -> None:
    mock = httpx.MockTransport(server)
    client = HTTPServiceClient(transport=mock, sync_transport=mock)

    await call(client, "health")
    await client.aclose()

    assert "Authorization" not in server.last.headers


async def test_a_client_without_a_worker_id_gets_one_of_its_own(
    server: FakeServer, transports: Transports, call: Invoke
) -> None:
    first = HTTPServiceClient(**transports)
    second = HTTPServiceClient(config=HTTPClientConfig(worker_id=None), **transports)

    await call(first, "execute", "bash:run")
    await call(second, "execute", "bash:run")
    await first.close()
    await second.close()

    workers = [server.body(request)["worker_id"] for request in server.requests]
    assert all(re.fullmatch(r"worker-[0-9a-f]{8}", worker) for worker in workers)
    assert workers[0] != workers[1]
    assert [request.headers["X-Worker-ID"] for request in server.requests] == workers


async def test_base_url_path_prefix_is_kept(server: FakeServer, call: Invoke) -> None:
    mock = httpx.MockTransport(server)
    config = HTTPClientConfig(base_url="http://gateway:8080/sandbox/")
    client = HTTPServiceClient(config=config, transport=mock, sync_transport=mock)

    await call(client, "execute", "bash:run")
    await client.aclose()

    assert str(server.last.url) == "http://gateway:8080/sandbox/execute"


@pytest.mark.parametrize(
    ("status", "code"),
    [(404, 1001), (400, 1002), (409, 1003), (502, 2001), (504, 2002), (500, 5000)],
)
async def test_error_envelope_is_returned_not_raised(
    client: HTTPServiceClient, server: FakeServer, call: Invoke, status: int, code: int
) -> None:
    sent = envelope(code, data={"field": "params.x"}, message="it failed")
    server.replies.append(httpx.Response(status, json=sent))

    result = await call(client, "execute", "bash:run")

    assert result == sent
    assert len(server.requests) == 1


async def test_returned_error_envelope_rebuilds_the_error(
    client: HTTPServiceClient, server: FakeServer, call: Invoke
) -> None:
    server.replies.append(httpx.Response(404, json=envelope(1001, message="no tool vm:fly")))

    error = error_from_envelope(await call(client, "execute", "vm:fly"))

    assert isinstance(error, ToolNotFound)
    assert error.message == "no tool vm:fly"


async def test_envelope_missing_keys_are_filled(
    client: HTTPServiceClient, server: FakeServer, call: Invoke
) -> None:
    server.replies.append(httpx.Response(200, json={"code": 0}))

    assert await call(client, "health") == {"code": 0, "message": "", "data": None, "meta": {}}


@pytest.mark.parametrize(
    ("status", "content"),
    [
        (502, b"<html><body>502 Bad Gateway</body></html>"),
        (200, b"[1, 2, 3]"),
        (200, b'{"code": "0", "data": {}}'),
        (200, b'{"code": true}'),
        (200, b'{"status": "ok"}'),
        (200, b""),
        (500, b"\xff\xfe not utf-8"),
    ],
)
async def test_body_without_envelope_raises(
    client: HTTPServiceClient, server: FakeServer, call: Invoke, status: int, content: bytes
) -> None:
    server.replies.append(httpx.Response(status, content=content))

    with pytest.raises(SandboxConnectionError, match=f"HTTP {status} without a sandbox envelope"):
        await call(client, "execute", "bash:run")
    assert len(server.requests) == 1  # a bad answer is an answer: never retried


async def test_non_envelope_message_shows_a_short_body_excerpt(
    client: HTTPServiceClient, server: FakeServer, call: Invoke
) -> None:
    server.replies.append(httpx.Response(502, text="Bad Gateway " + "x" * 5000))

    with pytest.raises(SandboxConnectionError) as caught:
        await call(client, "health")

    assert "Bad Gateway" in caught.value.message
    assert len(caught.value.message) < 400
    assert caught.value.data["status_code"] == 502


async def test_transport_failure_retried_with_one_request_id_then_raises(
    server: FakeServer, transports: Transports, call: Invoke
) -> None:
    client = HTTPServiceClient(
        config=HTTPClientConfig(max_retries=2, retry_delay=0.0), **transports
    )
    server.replies += [httpx.ConnectError("Connection refused")] * 5

    with pytest.raises(SandboxConnectionError, match="after 3 attempts") as caught:
        await call(client, "execute", "bash:run", {"command": "ls"})
    await client.aclose()

    assert len(server.requests) == 3
    assert len({request.headers["X-Request-ID"] for request in server.requests}) == 1
    assert isinstance(caught.value, ConnectionError)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert caught.value.data["connect_failed"] is True
    assert "ConnectError" in caught.value.message


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("Connection reset by peer"),
    ],
)
async def test_transient_failure_is_retried_until_an_answer(
    client: HTTPServiceClient, server: FakeServer, call: Invoke, failure: Exception
) -> None:
    server.replies += [failure, failure]

    result = await call(client, "execute", "bash:run")

    assert result["code"] == 0
    assert len(server.requests) == 3
    assert len({request.headers["X-Request-ID"] for request in server.requests}) == 1
    assert server.body(server.requests[0]) == server.body(server.requests[2])


async def test_no_retry_on_http_error_status(
    client: HTTPServiceClient, server: FakeServer, call: Invoke
) -> None:
    server.replies.append(httpx.Response(500, json=envelope(5000, message="boom")))

    result = await call(client, "execute", "bash:run")

    assert result["code"] == 5000
    assert len(server.requests) == 1


async def test_zero_retries_means_one_attempt(
    server: FakeServer, transports: Transports, call: Invoke
) -> None:
    client = HTTPServiceClient(config=HTTPClientConfig(max_retries=0), **transports)
    server.replies.append(httpx.ConnectError("Connection refused"))

    with pytest.raises(SandboxConnectionError, match="after 1 attempt:"):
        await call(client, "health")
    await client.aclose()

    assert len(server.requests) == 1


async def test_each_call_has_its_own_request_id(
    client: HTTPServiceClient, server: FakeServer, call: Invoke
) -> None:
    await call(client, "execute", "bash:run")
    await call(client, "execute", "bash:run")

    first, second = (request.headers["X-Request-ID"] for request in server.requests)
    assert first != second


def test_retries_back_off_exponentially(
    server: FakeServer, transports: Transports, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    client = HTTPServiceClient(
        config=HTTPClientConfig(max_retries=3, retry_delay=0.5), **transports
    )
    server.replies += [httpx.ConnectError("refused")] * 4

    with pytest.raises(SandboxConnectionError):
        client.execute_sync("bash:run")
    client.close_sync()

    assert slept == [0.5, 1.0, 2.0]


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "read"),
    [
        ("health", (), {}, 60.0),
        ("execute", ("bash:run",), {}, 60.0),
        ("execute", ("bash:run",), {"timeout": 10}, 60.0),
        ("execute", ("bash:run",), {"timeout": 100}, 115.0),
        (
            "execute_batch",
            ([{"action": "a", "timeout": 30}, {"action": "b", "timeout": 50}, {"action": "c"}],),
            {},
            95.0,
        ),
        (
            "execute_batch",
            ([{"action": "a", "timeout": 30}, {"action": "b", "timeout": 50}, {"action": "c"}],),
            {"parallel": True},
            65.0,
        ),
    ],
)
async def test_read_timeout_outlasts_the_tool_timeout(
    client: HTTPServiceClient,
    server: FakeServer,
    call: Invoke,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    read: float,
) -> None:
    await call(client, name, *args, **kwargs)

    timeout = server.last.extensions["timeout"]
    assert timeout["read"] == read
    assert timeout["connect"] == 60.0


async def test_state_goes_unopened_opened_closed(
    client: HTTPServiceClient, server: FakeServer, call: Invoke
) -> None:
    states = [client.state]
    await call(client, "health")
    states.append(client.state)

    await client.aclose()

    states.append(client.state)
    assert states == [ClientState.UNOPENED, ClientState.OPENED, ClientState.CLOSED]
    with pytest.raises(RuntimeError, match="closed"):
        await call(client, "execute", "bash:run")
    assert len(server.requests) == 1


async def test_sync_close_refuses_sync_and_async_calls(client: HTTPServiceClient) -> None:
    client.health_sync()
    client.close_sync()

    with pytest.raises(RuntimeError, match="closed"):
        client.health_sync()
    with pytest.raises(RuntimeError, match="closed"):
        await client.execute("bash:run")


async def test_one_client_serves_both_styles(client: HTTPServiceClient, server: FakeServer) -> None:
    assert (await client.health())["code"] == 0
    assert client.health_sync()["code"] == 0
    assert server.paths == ["/health", "/health"]


async def test_closing_twice_is_harmless(client: HTTPServiceClient) -> None:
    await client.health()
    client.health_sync()
    client.close_sync()
    await client.close()
    await client.aclose()

    assert client.state is ClientState.CLOSED


async def test_async_context_manager_closes(server: FakeServer, transports: Transports) -> None:
    async with HTTPServiceClient(config=HTTPClientConfig(worker_id="w1"), **transports) as client:
        assert (await client.list_sessions())["code"] == 0

    assert client.state is ClientState.CLOSED
    with pytest.raises(RuntimeError):
        await client.list_sessions()


def test_sync_context_manager_closes(server: FakeServer, transports: Transports) -> None:
    with HTTPServiceClient(config=HTTPClientConfig(worker_id="w1"), **transports) as client:
        assert client.list_sessions_sync()["code"] == 0

    assert client.state is ClientState.CLOSED
    with pytest.raises(RuntimeError):
        client.list_sessions_sync()


def test_entering_a_closed_client_raises(transports: Transports) -> None:
    client = HTTPServiceClient(**transports)
    client.close_sync()

    with pytest.raises(RuntimeError), client:
        pass


def test_repr_hides_the_api_key() -> None:
    config = HTTPClientConfig(api_key="s3cret-key", worker_id="w1")
    client = HTTPServiceClient(config=config)

    for text in (repr(config), str(config), repr(client)):
        assert "s3cret-key" not in text
    assert "w1" in repr(client)
    assert config.api_key == "s3cret-key"
