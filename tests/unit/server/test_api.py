"""The API through an in-process transport, with Docker and the agents faked."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.errors import ErrorCode
from tests.unit.fakes import FakeClock, FakeRuntime

from .conftest import Harness, make_settings, open_harness

# Guards against a hang, not timing asserts: far beyond what each step needs.
_GUARD_S = 10.0

PREFIXES = ["", "/api/v1"]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_execute_auto_creates_a_session_and_returns_the_envelope(
    harness: Harness, prefix: str
) -> None:
    envelope = await harness.post(
        f"{prefix}/execute", {"worker_id": "w1", "action": "bash:run", "params": {"command": "ls"}}
    )
    assert envelope["_status"] == 200
    assert envelope["code"] == 0
    assert envelope["message"] == "success"
    assert envelope["data"]["stdout"] == "ls\n"
    meta = envelope["meta"]
    assert meta["tool"] == "bash:run"
    assert meta["resource_type"] == "bash"
    assert meta["session_id"].startswith("bash_w1_001_")
    assert meta["trace_id"]
    assert meta["execution_time_ms"] >= 0
    listed = await harness.post(f"{prefix}/session/list", {"worker_id": "w1"})
    (session,) = listed["data"]["sessions"]
    assert session["auto_created"] is True
    assert session["status"] == "ready"


async def test_worker_id_may_come_from_the_header(harness: Harness) -> None:
    envelope = await harness.post(
        "/execute",
        {"action": "bash.run", "params": {"command": "pwd"}},
        headers={"X-Worker-ID": "header-worker"},
    )
    assert envelope["code"] == 0
    assert "_header-worker_" in envelope["meta"]["session_id"]


async def test_missing_worker_id_is_a_1002_naming_it(harness: Harness) -> None:
    envelope = await harness.post("/execute", {"action": "bash:run", "params": {"command": "x"}})
    assert (envelope["code"], envelope["_status"]) == (ErrorCode.INVALID_PARAMS, 400)
    assert envelope["data"]["field"] == "worker_id"


@pytest.mark.parametrize(
    "action", ["bash:run", "bash.run", "bash_run", "bash-run", "run", " bash:run "]
)
async def test_tool_name_spellings_resolve(harness: Harness, action: str) -> None:
    envelope = await harness.post(
        "/execute", {"worker_id": "w1", "action": action, "params": {"command": "true"}}
    )
    assert envelope["code"] == 0, envelope
    assert envelope["meta"]["tool"] == "bash:run"


async def test_unknown_tool_is_1001_with_http_404_and_a_suggestion(harness: Harness) -> None:
    envelope = await harness.post("/execute", {"worker_id": "w1", "action": "bash:rn"})
    assert (envelope["code"], envelope["_status"]) == (ErrorCode.TOOL_NOT_FOUND, 404)
    assert "bash:run" in envelope["message"]
    assert harness.runtime.containers == {}, "an unknown tool must not start a container"


async def test_unknown_params_are_ignored_and_named_in_warnings(harness: Harness) -> None:
    params = {"code": "print(1)", "seed_path": "/data/1"}
    body = {"worker_id": "w1", "action": "code:execute", "params": params}
    envelope = await harness.post("/execute", body)
    assert envelope["code"] == 0, envelope
    assert envelope["meta"]["warnings"] == [
        "params.seed_path: code:execute takes no such parameter; ignored"
    ]
    # The fake agent echoes what it was sent: the unknown parameter never reached it.
    assert envelope["data"]["params"]["code"] == "print(1)"
    assert "seed_path" not in envelope["data"]["params"]
    plain = await harness.post("/execute", {**body, "params": {"code": "print(1)"}})
    assert plain["meta"]["warnings"] is None


async def test_unknown_params_are_1002_when_the_operator_says_so() -> None:
    h = await open_harness(make_settings(unknown_params="error"))
    async with h.app.router.lifespan_context(h.app), h.client:
        body = {"worker_id": "w1", "action": "bash:run", "params": {"command": "ls", "bogus": 1}}
        envelope = await h.post("/execute", body)
    assert (envelope["code"], envelope["_status"]) == (ErrorCode.INVALID_PARAMS, 400)
    assert envelope["data"]["field"] == "params.bogus"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "params.command"),
        ({"command": 42}, "params.command"),
        ({"command": "ls", "timeout": "soon"}, "params.timeout"),
        ({"command": "ls", "timeout": -1}, "params.timeout"),
        ({"command": "ls", "env": {"A": 1}}, "params.env.A"),
    ],
)
async def test_bad_params_are_1002_naming_the_field(
    harness: Harness, params: dict[str, Any], field: str
) -> None:
    envelope = await harness.post(
        "/execute", {"worker_id": "w1", "action": "bash:run", "params": params}
    )
    assert (envelope["code"], envelope["_status"]) == (ErrorCode.INVALID_PARAMS, 400)
    assert envelope["data"]["field"] == field
    assert envelope["message"].startswith(field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"worker_id": "w1"}, "action"),
        ({"worker_id": "w1", "action": "bash:run", "params": "ls"}, "params"),
        ({"worker_id": "w1", "action": "bash:run", "timeout": 0}, "timeout"),
        ({"worker_id": "bad worker", "action": "bash:run"}, "worker_id"),
        ({"worker_id": "w1", "action": "bash:run", "surprise": True}, "surprise"),
    ],
)
async def test_bad_request_bodies_are_1002_naming_the_field(
    harness: Harness, body: dict[str, Any], field: str
) -> None:
    envelope = await harness.post("/execute", body)
    assert (envelope["code"], envelope["_status"]) == (ErrorCode.INVALID_PARAMS, 400)
    assert envelope["data"]["field"] == field


async def test_malformed_json_is_1002(harness: Harness) -> None:
    response = await harness.client.post(
        "/execute", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == ErrorCode.INVALID_PARAMS
    assert response.json()["data"]["field"] == "body"


async def test_create_is_idempotent_and_reports_the_applied_config(harness: Harness) -> None:
    body = {"worker_id": "w1", "resource_type": "bash", "session_config": {"memory": "512m"}}
    first = await harness.post("/session/create", body)
    assert first["code"] == 0
    assert first["data"]["status"] == "created"
    assert first["data"]["config_applied"] == {
        "memory": "512m",
        "cpus": 1.0,
        "pids": 512,
        "network": False,
    }
    (spec,) = harness.runtime.specs.values()
    assert spec.memory_bytes == (512 + 2048) * 1024**2, "memory plus the 2g disk quota (tmpfs)"
    assert spec.network is False
    assert spec.environment["SANDBOX_AGENT_SOCKET"] == "/run/sandbox/agent/agent.sock"
    assert spec.token
    assert spec.labels["sandbox.token"] == spec.token, "for adoption after a restart"
    assert spec.token not in spec.environment.values(), "never in the container's env"
    assert spec.environment["SANDBOX_AGENT_TOKEN_FILE"] == "/run/sandbox/agent/token"
    ((socket_dir, mount),) = spec.volumes.items()
    assert mount == {"bind": "/run/sandbox/agent", "mode": "rw"}
    assert Path(socket_dir).is_dir()
    assert spec.labels["sandbox.session"] == first["data"]["session_id"]
    assert spec.labels["sandbox.server"] == "unit"
    second = await harness.post("/session/create", body)
    assert second["data"]["status"] == "exists"
    assert second["data"]["session_id"] == first["data"]["session_id"]
    assert len(harness.runtime.containers) == 1
    await harness.post("/session/destroy", {"worker_id": "w1"})
    assert not Path(socket_dir).exists(), "the socket directory goes with the container"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"worker_id": "w1", "resource_type": "gpu"}, "resource_type"),
        (
            {"worker_id": "w1", "resource_type": "bash", "config": {"memory": "lots"}},
            "config.memory",
        ),
        ({"worker_id": "w1", "resource_type": "bash", "config": {"cpus": 0}}, "config.cpus"),
        ({"worker_id": "w1", "resource_type": "bash", "config": {"colour": 1}}, "config.colour"),
    ],
)
async def test_bad_create_is_1002_naming_the_field(
    harness: Harness, body: dict[str, Any], field: str
) -> None:
    envelope = await harness.post("/session/create", body)
    assert (envelope["code"], envelope["_status"]) == (ErrorCode.INVALID_PARAMS, 400)
    assert envelope["data"]["field"] == field
    assert harness.runtime.containers == {}


async def test_unknown_resource_message_lists_the_known_ones(harness: Harness) -> None:
    envelope = await harness.post("/session/create", {"worker_id": "w", "resource_type": "gpu"})
    assert "bash" in envelope["message"]
    assert "code" in envelope["message"]


async def test_destroying_a_missing_session_is_1003(harness: Harness) -> None:
    envelope = await harness.post("/session/destroy", {"worker_id": "nobody"})
    assert (envelope["code"], envelope["_status"]) == (ErrorCode.SESSION_ERROR, 409)
    envelope = await harness.post(
        "/session/destroy", {"worker_id": "nobody", "resource_type": "bash"}
    )
    assert envelope["code"] == ErrorCode.SESSION_ERROR
    assert "no bash session" in envelope["message"]


async def test_destroy_removes_the_container_and_the_next_call_gets_a_new_session(
    harness: Harness,
) -> None:
    first = await harness.post("/session/create", {"worker_id": "w1", "resource_type": "bash"})
    destroyed = await harness.post("/session/destroy", {"worker_id": "w1", "resource_type": "bash"})
    assert destroyed["data"]["destroyed"] == [first["data"]["session_id"]]
    assert harness.runtime.containers == {}
    again = await harness.post(
        "/execute", {"worker_id": "w1", "action": "bash:run", "params": {"command": "true"}}
    )
    assert again["meta"]["session_id"] != first["data"]["session_id"]
    assert again["meta"]["session_id"].startswith("bash_w1_002_")


async def test_start_failure_is_1003_and_leaves_no_session(harness: Harness) -> None:
    harness.runtime.fail_start = "image not found: sandbox/shell:latest"
    envelope = await harness.post("/session/create", {"worker_id": "w1", "resource_type": "bash"})
    assert (envelope["code"], envelope["_status"]) == (ErrorCode.SESSION_ERROR, 409)
    assert "image not found" in envelope["message"]
    listed = await harness.post("/session/list", {"worker_id": "w1"})
    assert listed["data"]["count"] == 0


async def test_timeout_is_2002_with_partial_output_and_the_session_lives_on(
    harness: Harness,
) -> None:
    body = {"worker_id": "w1", "action": "bash:run", "params": {"command": "sleep 9"}}
    envelope = await harness.post("/execute", {**body, "timeout": 2})
    assert (envelope["code"], envelope["_status"]) == (ErrorCode.TIMEOUT, 504)
    assert envelope["data"]["stdout"] == "partial"
    assert envelope["meta"]["session_id"]
    after = await harness.post(
        "/execute", {"worker_id": "w1", "action": "bash:run", "params": {"command": "echo"}}
    )
    assert after["code"] == 0
    assert after["meta"]["session_id"] == envelope["meta"]["session_id"]


async def test_the_smaller_of_two_timeouts_wins_and_the_default_applies(harness: Harness) -> None:
    seen: list[float] = []

    async def record(params: dict[str, Any]) -> dict[str, Any]:
        seen.append(params["timeout"])
        return {}

    harness.agents.handlers["bash.run"] = record
    base = {"worker_id": "w1", "action": "bash:run"}
    await harness.post("/execute", {**base, "params": {"command": "a", "timeout": 5}, "timeout": 9})
    await harness.post("/execute", {**base, "params": {"command": "a"}, "timeout": 3})
    await harness.post("/execute", {**base, "params": {"command": "a"}})
    assert seen == [5, 3, harness.settings.default_timeout_s]


async def test_dead_container_is_2001_then_replaced(harness: Harness) -> None:
    body = {"worker_id": "w1", "action": "bash:run", "params": {"command": "true"}}
    first = await harness.post("/execute", body)
    (container,) = harness.runtime.containers
    harness.runtime.kill(container, exit_code=137, oom=True)
    dead = await harness.post("/execute", body)
    assert (dead["code"], dead["_status"]) == (ErrorCode.BACKEND_ERROR, 502)
    assert "exit code 137" in dead["message"]
    assert "OOM" in dead["message"]
    assert dead["data"] == {"exit_code": 137, "oom_killed": True}
    replaced = await harness.post("/execute", body)
    assert replaced["code"] == 0
    assert replaced["meta"]["session_id"] != first["meta"]["session_id"]


async def test_unexpected_errors_are_5000_without_a_traceback(harness: Harness) -> None:
    envelope = await harness.post(
        "/execute", {"worker_id": "w1", "action": "bash:run", "params": {"command": "boom"}}
    )
    assert (envelope["code"], envelope["_status"]) == (ErrorCode.INTERNAL, 500)
    assert "Traceback" not in str(envelope)
    assert "secret" not in str(envelope)
    assert envelope["meta"]["trace_id"] in envelope["message"]


async def test_unknown_endpoint_is_an_envelope(harness: Harness) -> None:
    response = await harness.client.get("/nope")
    assert response.status_code == 404
    assert response.json()["code"] == ErrorCode.TOOL_NOT_FOUND


async def test_sequential_batch_stops_on_the_first_error(harness: Harness) -> None:
    actions = [
        {"action": "bash:run", "params": {"command": "one"}},
        {"action": "bash:nope", "params": {}},
        {"action": "bash:run", "params": {"command": "three"}},
    ]
    envelope = await harness.post("/execute/batch", {"worker_id": "w1", "actions": actions})
    assert envelope["code"] == 0
    data = envelope["data"]
    assert (data["total"], data["executed"], data["success_count"]) == (3, 2, 1)
    assert [r["code"] for r in data["results"]] == [0, ErrorCode.TOOL_NOT_FOUND]

    envelope = await harness.post(
        "/execute/batch", {"worker_id": "w1", "actions": actions, "stop_on_error": False}
    )
    data = envelope["data"]
    assert (data["total"], data["executed"], data["success_count"]) == (3, 3, 2)
    assert data["results"][2]["data"]["stdout"] == "three\n"


async def test_parallel_batch_runs_concurrently(harness: Harness) -> None:
    running = 0
    peak = 0

    async def slow(params: dict[str, Any]) -> dict[str, Any]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return {"stdout": params["command"]}

    harness.agents.handlers["bash.run"] = slow
    actions = [{"action": "bash:run", "params": {"command": str(i)}} for i in range(5)]
    envelope = await harness.post(
        "/execute/batch", {"worker_id": "w1", "actions": actions, "parallel": True}
    )
    data = envelope["data"]
    assert data["success_count"] == 5
    assert [r["data"]["stdout"] for r in data["results"]] == ["0", "1", "2", "3", "4"]
    assert peak == 5


async def test_a_retried_request_id_runs_the_tool_once(harness: Harness) -> None:
    body = {"worker_id": "w1", "action": "bash:run", "params": {"command": "once"}}
    headers = {"X-Request-ID": "retry-1"}
    first, second = await asyncio.gather(
        harness.post("/execute", body, headers=headers),
        harness.post("/execute", body, headers=headers),
    )
    third = await harness.post("/execute", body, headers=headers)
    assert harness.agents.calls["bash.run"] == 1
    assert first["data"] == second["data"] == third["data"]
    await harness.post("/execute", body, headers={"X-Request-ID": "retry-2"})
    assert harness.agents.calls["bash.run"] == 2


async def test_a_slow_start_for_one_worker_does_not_block_another(harness: Harness) -> None:
    gate = asyncio.Event()
    harness.runtime.gates["slow"] = gate
    slow = asyncio.create_task(
        harness.post("/session/create", {"worker_id": "slow", "resource_type": "bash"})
    )
    await asyncio.sleep(0.01)
    fast = await asyncio.wait_for(
        harness.post(
            "/execute", {"worker_id": "fast", "action": "bash:run", "params": {"command": "hi"}}
        ),
        timeout=2,
    )
    assert fast["code"] == 0
    assert not slow.done()
    gate.set()
    assert (await slow)["code"] == 0


async def test_concurrent_creates_of_one_key_make_one_container(harness: Harness) -> None:
    gate = asyncio.Event()
    harness.runtime.gates["w1"] = gate
    body = {"worker_id": "w1", "resource_type": "bash"}
    tasks = [asyncio.create_task(harness.post("/session/create", body)) for _ in range(5)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert len({r["data"]["session_id"] for r in results}) == 1
    assert sorted(r["data"]["status"] for r in results) == ["created"] + ["exists"] * 4
    assert len(harness.runtime.containers) == 1


async def test_refresh_and_heartbeat_push_expiry() -> None:
    clock = FakeClock()
    h = await open_harness(make_settings(session_ttl_s=60), clock=clock)
    async with h.app.router.lifespan_context(h.app), h.client:
        created = await h.post("/session/create", {"worker_id": "w1", "resource_type": "bash"})
        assert created["data"]["expires_at"] == clock.now + 60
        clock.advance(30)
        refreshed = await h.post("/session/refresh", {"worker_id": "w1"})
        assert refreshed["data"]["expires_at"] == clock.now + 60
        clock.advance(30)
        beat = await h.post("/api/v1/lifecycle/heartbeat", {"worker_id": "w1"})
        assert beat["data"]["refreshed"] == [created["data"]["session_id"]]
        (listed,) = (await h.post("/session/list", {"worker_id": "w1"}))["data"]["sessions"]
        assert (listed["last_used_at"], listed["expires_at"]) == (clock.now, clock.now + 60)
        missing = await h.post("/session/refresh", {"worker_id": "w2"})
        assert missing["code"] == ErrorCode.SESSION_ERROR


async def test_the_sweeper_destroys_expired_sessions_on_its_own() -> None:
    clock = FakeClock()
    h = await open_harness(make_settings(session_ttl_s=60, sweep_interval_s=0.01), clock=clock)
    async with h.app.router.lifespan_context(h.app), h.client:
        await h.post("/session/create", {"worker_id": "w1", "resource_type": "bash"})
        clock.advance(61)

        async def swept() -> None:
            while h.runtime.containers:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(swept(), _GUARD_S)
        assert (await h.post("/session/list", {}))["data"]["count"] == 0


def _workers(listed: dict[str, Any]) -> list[str]:
    return sorted(s["worker_id"] for s in listed["data"]["sessions"])


async def test_a_session_idle_past_its_ttl_is_swept_unless_a_call_holds_it() -> None:
    clock = FakeClock()
    h = await open_harness(make_settings(session_ttl_s=60), clock=clock)
    async with h.app.router.lifespan_context(h.app), h.client:
        sweep = h.app.state.services.sessions.sweep
        for worker in ("idle", "busy"):
            await h.post("/session/create", {"worker_id": worker, "resource_type": "bash"})
        clock.advance(59)
        assert await sweep() == 0
        entered, gate = asyncio.Event(), asyncio.Event()

        async def held(params: dict[str, Any]) -> dict[str, Any]:
            entered.set()
            await gate.wait()
            return {"stdout": "done"}

        h.agents.handlers["bash.run"] = held
        body = {"worker_id": "busy", "action": "bash:run", "params": {"command": "x"}}
        call = asyncio.create_task(h.post("/execute", body))
        await asyncio.wait_for(entered.wait(), _GUARD_S)
        clock.advance(600)
        assert await sweep() == 1, "the idle session expired; the busy one runs a call"
        assert _workers(await h.post("/session/list", {})) == ["busy"]
        assert len(h.runtime.containers) == 1
        gate.set()
        assert (await call)["code"] == 0
        clock.advance(59)
        assert await sweep() == 0, "the call's end pushed the expiry"
        clock.advance(1)
        assert await sweep() == 1
        assert h.runtime.containers == {}
        assert (await h.post("/session/list", {}))["data"]["count"] == 0


async def test_disconnect_destroys_all_of_a_workers_sessions(harness: Harness) -> None:
    await harness.post("/session/create", {"worker_id": "w1", "resource_type": "bash"})
    await harness.post("/session/create", {"worker_id": "w1", "resource_type": "code"})
    await harness.post("/session/create", {"worker_id": "w2", "resource_type": "bash"})
    envelope = await harness.post("/api/v1/worker/disconnect", {"worker_id": "w1"})
    assert len(envelope["data"]["destroyed"]) == 2
    assert len(harness.runtime.containers) == 1
    status = await harness.post("/api/v1/lifecycle/status", {"worker_id": "w2"})
    assert status["data"]["server"]["sessions"] == 1
    assert len(status["data"]["sessions"]) == 1


async def test_tools_lists_every_tool_with_its_schema(harness: Harness) -> None:
    response = await harness.client.get("/tools")
    tools = {t["name"]: t for t in response.json()["data"]["tools"]}
    assert set(tools) >= {"bash:run", "bash:write_file", "bash:read_file", "code:execute"}
    run = tools["bash:run"]["parameters"]
    assert run["required"] == ["command"]
    assert set(run["properties"]) == {"command", "timeout", "cwd", "env"}
    assert tools["code:execute"]["parameters"]["properties"]["language"]["enum"] == [
        "python",
        "bash",
    ]


async def test_health_reports_docker_state(harness: Harness) -> None:
    data = (await harness.client.get("/health")).json()["data"]
    assert (data["status"], data["docker"]) == ("ok", "ok")
    harness.runtime.docker_up = False
    data = (await harness.client.get("/api/v1/health")).json()["data"]
    assert (data["status"], data["docker"]) == ("degraded", "unreachable")
    ready = await harness.client.get("/ready")
    assert (ready.status_code, ready.json()["code"]) == (502, ErrorCode.BACKEND_ERROR)


async def test_warmup_builds_missing_images_and_reports_them(harness: Harness) -> None:
    harness.runtime.images.clear()
    harness.runtime.images.add("debian:bookworm-slim")
    status = (await harness.client.get("/warmup/status")).json()["data"]["resources"]
    assert status["bash"]["state"] == "missing"
    envelope = await harness.post("/warmup", {"backends": ["bash"], "wait": True})
    assert envelope["data"]["resources"]["bash"]["state"] == "ready"
    assert "sandbox/shell:latest" in harness.runtime.images
    bad = await harness.post("/warmup", {"resources": ["bash", "gpu"]})
    assert bad["data"]["field"] == "resources.1"


async def test_shutdown_destroys_every_session(harness: Harness) -> None:
    await harness.post("/session/create", {"worker_id": "w1", "resource_type": "bash"})
    envelope = await harness.post("/api/v1/server/shutdown")
    assert envelope["data"]["destroyed"] == 1
    assert harness.runtime.containers == {}


async def test_stopping_the_server_destroys_sessions_unless_told_to_keep_them() -> None:
    runtime = FakeRuntime()
    h = await open_harness(make_settings(keep_sessions_on_shutdown=True), runtime)
    async with h.app.router.lifespan_context(h.app), h.client:
        await h.post("/session/create", {"worker_id": "w1", "resource_type": "bash"})
    assert len(runtime.running()) == 1, "kept for the next start"

    h = await open_harness(make_settings(), runtime)
    async with h.app.router.lifespan_context(h.app), h.client:
        # The adoption runs in the background; a list answers from the table as it stands.
        await h.app.state.services.sessions.wait_for_recovery()
        listed = await h.post("/session/list", {"worker_id": "w1"})
        assert listed["data"]["count"] == 1, "adopted at start"
        envelope = await h.post(
            "/execute", {"worker_id": "w1", "action": "bash:run", "params": {"command": "x"}}
        )
        assert envelope["code"] == 0
    assert runtime.containers == {}


async def test_the_server_starts_without_docker_and_adopts_once_it_answers() -> None:
    runtime = FakeRuntime()
    h = await open_harness(make_settings(keep_sessions_on_shutdown=True), runtime)
    async with h.app.router.lifespan_context(h.app), h.client:
        await h.post("/session/create", {"worker_id": "w1", "resource_type": "bash"})
    runtime.docker_up = False
    h = await open_harness(make_settings(sweep_interval_s=0.05), runtime)
    async with h.app.router.lifespan_context(h.app), h.client:
        health = (await h.client.get("/health")).json()["data"]
        assert health["docker"] == "unreachable"
        assert (await h.post("/session/list", {}))["data"]["count"] == 0
        runtime.docker_up = True
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if (await h.post("/session/list", {}))["data"]["count"] == 1:
                break
            await asyncio.sleep(0.05)
        assert (await h.post("/session/list", {}))["data"]["count"] == 1


async def test_start_removes_orphans_and_keeps_other_servers_containers() -> None:
    runtime = FakeRuntime()
    h = await open_harness(make_settings(keep_sessions_on_shutdown=True), runtime)
    async with h.app.router.lifespan_context(h.app), h.client:
        await h.post("/session/create", {"worker_id": "w1", "resource_type": "bash"})
        await h.post("/session/create", {"worker_id": "w2", "resource_type": "bash"})
    dead, alive = sorted(runtime.containers)
    runtime.kill(dead)
    foreign = await runtime.start(
        dataclasses.replace(
            runtime.specs[alive], labels={"sandbox.managed": "1", "sandbox.server": "other"}
        )
    )
    h = await open_harness(make_settings(), runtime)
    async with h.app.router.lifespan_context(h.app), h.client:
        await h.app.state.services.sessions.wait_for_recovery()  # it runs in the background
        assert set(runtime.containers) == {alive, foreign.id}
    assert set(runtime.containers) == {foreign.id}


async def test_api_key_guards_everything_but_health() -> None:
    h = await open_harness(make_settings(api_key="s3cret"))
    async with h.app.router.lifespan_context(h.app), h.client:
        assert (await h.client.get("/health")).status_code == 200
        denied = await h.client.get("/tools")
        assert denied.status_code == 401
        assert "Authorization" in denied.json()["message"]
        wrong = await h.client.get("/tools", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        allowed = await h.client.get("/tools", headers={"Authorization": "Bearer s3cret"})
        assert allowed.status_code == 200


def _service_containers(runtime: FakeRuntime) -> list[str]:
    return [c.id for c in runtime.running() if c.labels.get("sandbox.service") == "rag"]


async def test_rag_sessions_share_one_service_container(harness: Harness) -> None:
    harness.runtime.images.add("sandbox/rag:latest")
    a = await harness.post("/session/create", {"worker_id": "a", "resource_type": "rag"})
    b = await harness.post("/session/create", {"worker_id": "b", "resource_type": "rag"})
    assert a["code"] == b["code"] == 0
    (service,) = _service_containers(harness.runtime)
    assert set(harness.agents.rag_sessions) == {a["data"]["session_id"], b["data"]["session_id"]}
    found = await harness.post(
        "/execute", {"worker_id": "a", "action": "rag:search", "params": {"query": "q"}}
    )
    assert found["code"] == 0, found
    assert found["data"]["echo"] == {
        "query": "q",
        "top_k": 5,
        "collection": "all",
        "session": a["data"]["session_id"],
    }
    await harness.post("/session/destroy", {"worker_id": "a", "resource_type": "rag"})
    assert set(harness.agents.rag_sessions) == {b["data"]["session_id"]}
    assert _service_containers(harness.runtime) == [service], "the service outlives sessions"


async def test_rag_bad_params_name_the_field(harness: Harness) -> None:
    body = {"worker_id": "a", "action": "rag:search"}
    for params, field in [
        ({"query": ""}, "params.query"),
        ({"query": "q", "top_k": 0}, "params.top_k"),
        ({"query": "q", "top_k": 1000}, "params.top_k"),
        ({"query": "q", "collection": "mine"}, "params.collection"),
    ]:
        envelope = await harness.post("/execute", {**body, "params": params})
        assert envelope["data"]["field"] == field, envelope
    index = {"worker_id": "a", "action": "rag:index"}
    envelope = await harness.post(
        "/execute", {**index, "params": {"documents": [{"id": "1", "text": "ok"}, {"id": "2"}]}}
    )
    assert envelope["data"]["field"] == "params.documents.1.text"
    assert harness.runtime.containers == {}, "bad input starts nothing"


async def test_a_dead_rag_service_is_2001_then_replaced_keeping_the_session(
    harness: Harness,
) -> None:
    harness.runtime.images.add("sandbox/rag:latest")
    body = {"worker_id": "a", "action": "rag:search", "params": {"query": "q"}}
    first = await harness.post("/execute", body)
    (service,) = _service_containers(harness.runtime)
    harness.runtime.kill(service)
    harness.agents.rag_sessions.clear()
    dead = await harness.post("/execute", body)
    assert dead["code"] == ErrorCode.BACKEND_ERROR
    assert "service container is gone" in dead["message"]
    again = await harness.post("/execute", body)
    assert again["code"] == 0
    assert again["meta"]["session_id"] == first["meta"]["session_id"]
    assert _service_containers(harness.runtime) not in ([], [service])
    assert list(harness.agents.rag_sessions) == [first["meta"]["session_id"]], "re-opened"


async def test_rag_service_and_sessions_are_adopted_and_removed_at_shutdown() -> None:
    runtime = FakeRuntime()
    runtime.images.add("sandbox/rag:latest")
    h = await open_harness(make_settings(keep_sessions_on_shutdown=True), runtime)
    async with h.app.router.lifespan_context(h.app), h.client:
        created = await h.post("/session/create", {"worker_id": "a", "resource_type": "rag"})
    held = dict(h.agents.rag_sessions)
    assert len(_service_containers(runtime)) == 1

    h = await open_harness(make_settings(), runtime)
    h.agents.rag_sessions.update(held)  # the service's index survived
    async with h.app.router.lifespan_context(h.app), h.client:
        await h.app.state.services.sessions.wait_for_recovery()  # adoption: in the background
        listed = await h.post("/session/list", {"worker_id": "a"})
        assert [s["session_id"] for s in listed["data"]["sessions"]] == [
            created["data"]["session_id"]
        ]
    assert runtime.containers == {}
    assert h.agents.rag_sessions == {}


async def test_a_search_during_indexing_waits_for_the_index(harness: Harness) -> None:
    harness.runtime.images.add("sandbox/rag:latest")
    harness.agents.rag_indexing = 1
    found = await harness.post(
        "/execute", {"worker_id": "a", "action": "rag:search", "params": {"query": "q"}}
    )
    assert found["code"] == 0, found
    assert harness.agents.calls["rag.search"] == 2, "refused once, answered once ready"


async def test_an_index_slower_than_the_timeout_is_2002(harness: Harness) -> None:
    harness.runtime.images.add("sandbox/rag:latest")
    harness.agents.rag_indexing = 10**6
    slow = await harness.post(
        "/execute",
        {"worker_id": "a", "action": "rag:search", "params": {"query": "q"}, "timeout": 0.3},
    )
    assert slow["code"] == ErrorCode.TIMEOUT, slow
    assert "still indexing" in slow["message"]
