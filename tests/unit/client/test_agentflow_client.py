"""AgentFlow's client code, run unchanged: what it constructs, sends and reads back.

The calls are the ones AgentFlow's rollout/ and synthesis/ pipelines make (and
its documented client examples); the stand-in server answers as ours does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox import (
    BackendError,
    HTTPClientConfig,
    HTTPServiceClient,
    Sandbox,
    SandboxConfig,
    format_tool_result,
)
from tests.unit.client.conftest import Invoke

URL = "http://127.0.0.1:18890"


def _answer(
    code: int = 0, data: Any = None, message: str = "success", top: dict[str, Any] | None = None
) -> httpx.Response:
    status = {0: 200, 1001: 404, 1002: 400, 1003: 409, 2001: 502}[code]
    body = {"code": code, "message": message, "data": data, "meta": {}, **(top or {})}
    return httpx.Response(status, json=body)


class StandIn:
    """Answers as the sandbox server does, from a dict of sessions per resource type.

    `refuse` makes a create of that resource type answer the given error;
    `session_status` is what create answers carry (None: the key is left out);
    `failing` makes a path answer 2001 with that message.
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.sessions: dict[str, dict[str, Any]] = {}
        self.refuse: dict[str, tuple[int, str]] = {}
        self.session_status: str | None = "active"
        self.tools_at_top_level = True
        self.failing: dict[str, str] = {}
        self._numbers = iter(range(1, 1000))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = json.loads(request.content) if request.content else {}
        path = request.url.path
        if path in self.failing:
            return _answer(2001, None, self.failing[path])
        if path == "/session/create":
            return self._create(body)
        if path == "/session/destroy":
            return self._destroy(body.get("resource_type"))
        if path == "/session/list":
            sessions = list(self.sessions.values())
            return _answer(data={"sessions": sessions, "count": len(sessions)})
        if path == "/tools":
            tools = [{"name": "bash:run", "resource_type": "bash", "parameters": {}}]
            top = {"tools": tools} if self.tools_at_top_level else {}
            return _answer(data={"tools": tools, "count": 1}, top=top)
        if path == "/execute":
            return _answer(data={"echo": body["params"]})
        return _answer(data={"path": path})

    def _create(self, body: dict[str, Any]) -> httpx.Response:
        resource = body["resource_type"]
        if resource in self.refuse:
            code, message = self.refuse[resource]
            return _answer(code, {"field": "config"}, message)
        existing = self.sessions.get(resource)
        session = existing or {
            "session_id": f"{resource}_w_{next(self._numbers):03d}",
            "session_name": body.get("custom_name") or f"{resource}-session",
            "resource_type": resource,
        }
        self.sessions[resource] = session
        data = {
            **session,
            "status": "exists" if existing else "created",
            "config_applied": body.get("config", {}),
        }
        if self.session_status is not None:
            data["session_status"] = self.session_status
        return _answer(data=data)

    def _destroy(self, resource: str | None) -> httpx.Response:
        names = [resource] if resource else list(self.sessions)
        if not any(name in self.sessions for name in names):
            return _answer(1003, None, f"worker w has no {resource or 'session'}")
        gone = [self.sessions.pop(name)["session_id"] for name in names if name in self.sessions]
        return _answer(data={"destroyed": gone, "count": len(gone)})

    def sent(self, path: str) -> list[Any]:
        return [
            json.loads(r.content) if r.content else None
            for r in self.requests
            if r.url.path == path
        ]

    @property
    def paths(self) -> list[str]:
        return [request.url.path for request in self.requests]


@pytest.fixture
def stand_in() -> StandIn:
    return StandIn()


@pytest.fixture
def sandbox(stand_in: StandIn) -> Iterator[Sandbox]:
    mock = httpx.MockTransport(stand_in)
    sb = Sandbox(URL, "w", transport=mock, sync_transport=mock)
    yield sb
    sb.close_sync()


@pytest.fixture
def client_logger_level() -> Iterator[None]:
    """Puts the ``sandbox.client`` logger's level back (a Sandbox may set it)."""
    logger = logging.getLogger("sandbox.client")
    level = logger.level
    yield
    logger.setLevel(level)


# -- constructing and starting, as rollout/core/runner.py does -----------------


@pytest.mark.usefixtures("client_logger_level")
async def test_a_runner_constructs_and_starts_a_sandbox(stand_in: StandIn, call: Invoke) -> None:
    mock = httpx.MockTransport(stand_in)
    sb = Sandbox(
        server_url=URL,
        worker_id="runner-1",
        server_config_path="configs/sandbox-server/rag_config.json",
        warmup_resources=["rag"],
        auto_start_server=False,
        timeout=120,
        retry_count=1,
        log_level="warning",
        transport=mock,
        sync_transport=mock,
    )

    assert await call(sb, "start") is sb

    assert sb.is_connected
    assert sb.is_started
    assert (sb.worker_id, sb.server_url, sb.client.worker_id) == ("runner-1", URL, "runner-1")
    assert (sb.config.timeout, sb.config.retry_count) == (120, 1)
    assert str(sb.config.server_config_path).endswith("rag_config.json")
    assert logging.getLogger("sandbox.client").level == logging.WARNING
    # The warmup waits, so the resources are ready when `start` returns.
    assert stand_in.paths == ["/health", "/warmup"]
    assert stand_in.sent("/warmup") == [{"resources": ["rag"], "wait": True}]
    await call(sb, "close")


async def test_start_warms_what_it_is_given_and_survives_a_failed_warmup(
    stand_in: StandIn, sandbox: Sandbox, call: Invoke, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in.failing["/warmup"] = "image sandbox/desktop failed to build"

    with caplog.at_level(logging.WARNING, logger="sandbox.client"):
        await call(sandbox, "start", ["vm"])

    assert sandbox.is_started
    assert stand_in.sent("/warmup") == [{"resources": ["vm"], "wait": True}]
    assert "image sandbox/desktop failed to build" in caplog.text


def test_a_config_object_and_arguments_combine() -> None:
    config = SandboxConfig(server_url="http://localhost:18890", worker_id=None, retry_count=0)

    from_config = Sandbox(config=config)
    overridden = Sandbox(worker_id="w9", config=config, timeout=5)

    assert re.fullmatch(r"worker-[0-9a-f]{8}", from_config.worker_id)
    assert from_config.server_url == "http://localhost:18890"
    assert (overridden.worker_id, overridden.config.timeout) == ("w9", 5)
    assert overridden.config.retry_count == 0
    assert SandboxConfig().worker_id != SandboxConfig().worker_id


# -- create_session: a name, a list or a dict; AgentFlow's summary ---------------


async def test_create_one_resource_with_a_config(
    stand_in: StandIn, sandbox: Sandbox, call: Invoke
) -> None:
    summary = await call(sandbox, "create_session", "vm", {"screen_size": [1920, 1080]})

    assert stand_in.sent("/session/create") == [
        {"worker_id": "w", "resource_type": "vm", "config": {"screen_size": [1920, 1080]}}
    ]
    assert summary["status"] == "success"
    assert (summary["total"], summary["success"]) == (1, 1)
    assert summary["create_time_ms"] >= 0
    assert summary["sessions"] == {
        "vm": {
            "status": "success",
            "session_id": "vm_w_001",
            "session_name": "vm-session",
            "config_applied": {"screen_size": [1920, 1080]},
            "message": "success",
            "code": 0,
            "created": True,
        }
    }


async def test_create_a_list_then_a_dict_with_custom_names(
    stand_in: StandIn, sandbox: Sandbox, call: Invoke
) -> None:
    first = await call(sandbox, "create_session", ["bash", "code"])
    # synthesis/pipeline.py: one session per seed, named after it.
    second = await call(
        sandbox, "create_session", {"rag": {"custom_name": "rag_seed7", "top_k": 3}, "bash": {}}
    )

    assert list(first["sessions"]) == ["bash", "code"]
    assert first["status"] == "success"
    sent = {body["resource_type"]: body for body in stand_in.sent("/session/create")[2:]}
    assert sent["rag"] == {
        "worker_id": "w",
        "resource_type": "rag",
        "config": {"top_k": 3},
        "custom_name": "rag_seed7",
    }
    assert second["sessions"]["rag"]["session_name"] == "rag_seed7"
    assert second["sessions"]["rag"]["config_applied"] == {"top_k": 3}
    # bash was open already: still a success, and said so.
    assert second["sessions"]["bash"]["status"] == "success"
    assert second["sessions"]["bash"]["created"] is False


async def test_a_refused_resource_makes_the_summary_partial_then_error(
    stand_in: StandIn, sandbox: Sandbox, call: Invoke
) -> None:
    stand_in.refuse["vm"] = (1002, "config.screen_size: at most 7680x4320")

    partial = await call(sandbox, "create_session", {"bash": {}, "vm": {"screen_size": [0, 0]}})
    refused = await call(sandbox, "create_session", "vm")

    assert (partial["status"], partial["success"], partial["total"]) == ("partial", 1, 2)
    vm = partial["sessions"]["vm"]
    assert (vm["status"], vm["code"]) == ("error", 1002)
    assert vm["error"] == "config.screen_size: at most 7680x4320"
    assert refused["status"] == "error"


@pytest.mark.parametrize(("said", "status"), [("active", "success"), (None, "success")])
async def test_a_session_counts_when_active_or_when_the_server_does_not_say(
    stand_in: StandIn, sandbox: Sandbox, call: Invoke, said: str | None, status: str
) -> None:
    stand_in.session_status = said

    summary = await call(sandbox, "create_session", "bash")

    assert summary["status"] == status


async def test_a_session_the_server_calls_inactive_is_an_error(
    stand_in: StandIn, sandbox: Sandbox, call: Invoke
) -> None:
    stand_in.session_status = "starting"

    summary = await call(sandbox, "create_session", "bash")

    assert summary["status"] == "error"
    assert summary["sessions"]["bash"]["status"] == "error"


def test_create_session_refuses_other_shapes(sandbox: Sandbox) -> None:
    with pytest.raises(TypeError, match="resources must be"):
        sandbox.create_session_sync(42)  # type: ignore[arg-type]


# -- destroy, list, reinitialize -------------------------------------------------


async def test_destroy_by_name_list_or_all(
    stand_in: StandIn, sandbox: Sandbox, call: Invoke
) -> None:
    await call(sandbox, "create_session", ["bash", "code", "rag", "vm"])

    one = await call(sandbox, "destroy_session", "bash")
    some = await call(sandbox, "destroy_session", ["code", "bash"])
    rest = await call(sandbox, "destroy_session")

    assert one == {
        "status": "success",
        "total": 1,
        "success": 1,
        "details": {
            "bash": {
                "status": "success",
                "session_id": "bash_w_001",
                "message": "success",
                "code": 0,
            }
        },
    }
    assert (some["status"], some["success"]) == ("partial", 1)
    assert some["details"]["bash"]["code"] == 1003
    assert rest["status"] == "success"
    assert sorted(rest["details"]) == ["rag", "vm"]
    # None destroys what the worker has: it lists first.
    assert stand_in.paths[-3:] == ["/session/list", "/session/destroy", "/session/destroy"]
    assert await call(sandbox, "list_sessions") == []


async def test_list_sessions_returns_the_list(
    stand_in: StandIn, sandbox: Sandbox, call: Invoke
) -> None:
    await call(sandbox, "create_session", "bash")

    sessions = await call(sandbox, "list_sessions")

    assert sessions == [
        {"session_id": "bash_w_001", "session_name": "bash-session", "resource_type": "bash"}
    ]
    assert stand_in.sent("/session/list") == [{"worker_id": "w"}]


async def test_list_sessions_raises_an_error_answer(
    stand_in: StandIn, sandbox: Sandbox, call: Invoke
) -> None:
    stand_in.failing["/session/list"] = "Docker does not answer"

    with pytest.raises(BackendError, match="Docker does not answer"):
        await call(sandbox, "list_sessions")


async def test_reinitialize_replaces_one_session(
    stand_in: StandIn, sandbox: Sandbox, call: Invoke
) -> None:
    await call(sandbox, "create_session", ["rag", "bash"])

    result = await call(sandbox, "reinitialize", "rag", {"custom_name": "rag_seed2", "top_k": 5})

    assert result["status"] == "success"
    assert result["resource_type"] == "rag"
    assert result["old_session_id"] == "rag_w_001"
    assert result["new_session_id"] == "rag_w_003"
    assert result["new_session_name"] == "rag_seed2"
    assert result["config_applied"] == {"custom_name": "rag_seed2", "top_k": 5}
    assert result["reinit_time_ms"] >= 0
    assert stand_in.sent("/session/destroy")[-1] == {"worker_id": "w", "resource_type": "rag"}
    assert set(stand_in.sessions) == {"rag", "bash"}


async def test_reinitialize_without_a_session_just_creates_one(
    stand_in: StandIn, sandbox: Sandbox, call: Invoke
) -> None:
    result = await call(sandbox, "reinitialize", "vm")

    assert (result["status"], result["old_session_id"]) == ("success", None)
    assert result["new_session_id"] == "vm_w_001"


async def test_reinitialize_reports_a_refused_create(
    stand_in: StandIn, sandbox: Sandbox, call: Invoke
) -> None:
    stand_in.refuse["vm"] = (1002, "config.memory: over the ceiling")

    result = await call(sandbox, "reinitialize", "vm", {"memory": "64g"})

    assert result == {
        "status": "error",
        "resource_type": "vm",
        "old_session_id": None,
        "error": "config.memory: over the ceiling",
        "code": 1002,
    }


# -- execute and the tools -------------------------------------------------------


async def test_execute_merges_keyword_arguments_into_params(
    stand_in: StandIn, sandbox: Sandbox, call: Invoke
) -> None:
    # synthesis/core/worker.py passes a seed's kwargs this way.
    result = await call(
        sandbox, "execute", "rag-search", {"query": "q"}, None, seed_path="/s", query="x", k=None
    )
    await call(sandbox, "execute", "bash:run", {"command": "ls"}, 30)

    first, second = stand_in.sent("/execute")
    assert first == {
        "worker_id": "w",
        "action": "rag-search",
        "params": {"query": "q", "seed_path": "/s"},
    }
    assert second["timeout"] == 30
    assert result["data"] == {"echo": {"query": "q", "seed_path": "/s"}}


@pytest.mark.parametrize("top_level", [True, False])
async def test_get_tools_returns_the_list(
    stand_in: StandIn, sandbox: Sandbox, call: Invoke, top_level: bool
) -> None:
    stand_in.tools_at_top_level = top_level

    tools = await call(sandbox, "get_tools")
    hidden = await call(sandbox, "get_tools", True)

    assert [tool["name"] for tool in tools] == ["bash:run"]
    assert hidden == tools
    queries = [r.url.query for r in stand_in.requests if r.url.path == "/tools"]
    assert queries == [b"include_hidden=false", b"include_hidden=true"]


# -- HTTPServiceClient and HTTPClientConfig --------------------------------------


def test_http_client_config_takes_agentflows_fields() -> None:
    config = HTTPClientConfig(
        base_url="http://localhost:8080/",
        timeout=30.0,
        max_retries=2,
        retry_delay=0.1,
        auto_heartbeat=False,
        heartbeat_interval=5.0,
        worker_id=None,
    )

    assert config.base_url == "http://localhost:8080"
    assert (config.auto_heartbeat, config.heartbeat_interval) == (False, 5.0)
    assert re.fullmatch(r"worker-[0-9a-f]{8}", config.worker_id or "")
    assert HTTPClientConfig().auto_heartbeat is True


def test_http_client_arguments_win_over_its_config() -> None:
    config = HTTPClientConfig(base_url="http://a:1", worker_id="w1", timeout=10)

    client = HTTPServiceClient(base_url="http://b:2", config=config)
    plain = HTTPServiceClient(base_url="http://c:3", worker_id="w3", timeout=7)

    assert (client.base_url, client.worker_id, client.config.timeout) == ("http://b:2", "w1", 10)
    assert (plain.base_url, plain.worker_id, plain.config.timeout) == ("http://c:3", "w3", 7)


def test_a_config_passed_as_the_url_is_refused_with_a_hint() -> None:
    with pytest.raises(TypeError, match="config="):
        HTTPServiceClient(HTTPClientConfig())  # type: ignore[arg-type]


async def test_http_client_session_methods_return_envelopes_and_list_tools_a_list(
    stand_in: StandIn,
) -> None:
    mock = httpx.MockTransport(stand_in)
    config = HTTPClientConfig(base_url=URL, worker_id="w", auto_heartbeat=False)

    async with HTTPServiceClient(config=config, transport=mock) as client:
        created = await client.create_session("rag", {"top_k": 10}, custom_name="r1")
        listed = await client.list_sessions()
        tools = await client.list_tools()

    assert stand_in.paths[0] == "/health"  # entering connects
    assert created["data"]["session_name"] == "r1"
    assert listed["data"]["count"] == 1
    assert tools[0]["name"] == "bash:run"


async def test_close_can_destroy_the_workers_sessions(stand_in: StandIn, call: Invoke) -> None:
    mock = httpx.MockTransport(stand_in)
    client = HTTPServiceClient(URL, "w", transport=mock, sync_transport=mock)
    await call(client, "execute", "bash:run")

    await call(client, "close", destroy_sessions=True)

    assert stand_in.paths == ["/execute", "/api/v1/worker/disconnect"]
    assert stand_in.sent("/api/v1/worker/disconnect") == [{"worker_id": "w"}]


async def test_close_without_a_request_destroys_nothing(stand_in: StandIn, call: Invoke) -> None:
    mock = httpx.MockTransport(stand_in)
    client = HTTPServiceClient(URL, "w", transport=mock, sync_transport=mock)

    await call(client, "close", destroy_sessions=True)

    assert stand_in.requests == []


async def test_connect_starts_heartbeats_until_close() -> None:
    beat = asyncio.Event()
    paths: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path.endswith("/heartbeat"):
            beat.set()
        return _answer(data={})

    config = HTTPClientConfig(base_url=URL, worker_id="w", heartbeat_interval=0.01)
    client = HTTPServiceClient(config=config, transport=httpx.MockTransport(server))

    await client.connect()
    await asyncio.wait_for(beat.wait(), timeout=10)
    await client.close()

    assert paths[:2] == ["/health", "/api/v1/lifecycle/heartbeat"]
    with pytest.raises(RuntimeError, match="closed"):
        await client.heartbeat()


def test_connect_sync_beats_from_a_thread_until_close() -> None:
    beat = threading.Event()
    bodies: list[Any] = []

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/heartbeat"):
            bodies.append(json.loads(request.content))
            beat.set()
        return _answer(data={})

    config = HTTPClientConfig(base_url=URL, worker_id="w", heartbeat_interval=0.01)
    with HTTPServiceClient(config=config, sync_transport=httpx.MockTransport(server)):
        assert beat.wait(timeout=10)

    assert bodies[0] == {"worker_id": "w"}


async def test_no_heartbeats_without_auto_heartbeat(stand_in: StandIn) -> None:
    config = HTTPClientConfig(base_url=URL, auto_heartbeat=False)
    client = HTTPServiceClient(config=config, transport=httpx.MockTransport(stand_in))

    await client.connect()
    await client.close()

    assert stand_in.paths == ["/health"]


async def test_a_sandbox_sends_no_heartbeats_of_its_own(sandbox: Sandbox) -> None:
    assert sandbox.client.config.auto_heartbeat is False


# -- a pipeline's turn, end to end ------------------------------------------------


async def test_a_synthesis_turn_formats_what_it_executed(stand_in: StandIn, call: Invoke) -> None:
    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/execute":
            data = {"stdout": "hello\n", "stderr": "", "exit_code": 0, "cwd": "/home/sandbox"}
            meta = {"tool": "bash:run", "resource_type": "bash", "execution_time_ms": 3.5}
            return httpx.Response(
                200, json={"code": 0, "message": "success", "data": data, "meta": meta}
            )
        return stand_in(request)

    mock = httpx.MockTransport(server)
    sb = Sandbox(URL, "w", transport=mock, sync_transport=mock)
    await call(sb, "create_session", {"bash": {}})

    result = await call(sb, "execute", "bash-run", {"command": "echo hello"})

    assert format_tool_result(result) == "hello"
    await call(sb, "close")
