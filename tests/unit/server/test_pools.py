"""Warm pools through the API, with Docker and the agents faked."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sandbox.errors import ErrorCode
from tests.unit.fakes import FakeRuntime

from .conftest import Harness, make_settings, open_harness


def pool_containers(runtime: FakeRuntime) -> list[str]:
    return sorted(c.id for c in runtime.running() if "sandbox.pool" in c.labels)


async def fill(harness: Harness, size: int, resource: str = "bash") -> dict[str, Any]:
    envelope = await harness.post(
        "/warmup", {"resources": [resource], "pool_size": size, "wait": True}
    )
    assert envelope["code"] == 0, envelope
    return envelope


async def until(predicate: object, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.01)
    assert predicate(), "condition not reached in time"  # type: ignore[operator]


async def test_warmup_fills_a_pool_and_a_create_claims_from_it(harness: Harness) -> None:
    envelope = await fill(harness, 2)
    (pool,) = envelope["data"]["resources"]["bash"]["pools"]
    assert (pool["target"], pool["ready"], pool["starting"]) == (2, 2, 0)
    pooled = pool_containers(harness.runtime)
    assert len(pooled) == 2

    created = await harness.post("/session/create", {"worker_id": "w1", "resource_type": "bash"})
    assert created["code"] == 0, created
    sessions = await harness.post("/session/list", {"worker_id": "w1"})
    claimed = sessions["data"]["sessions"][0]["container_id"]
    assert claimed in pooled, "the session got a pooled container"
    url = harness.runtime.containers[claimed].agent_url
    meta = harness.agents.meta[str(url)]["claim"]  # signed by the server (see claims.py)
    assert meta["sandbox.session"] == created["data"]["session_id"]
    assert meta["sandbox.worker"] == "w1"

    await until(lambda: len(pool_containers(harness.runtime)) == 3)  # refilled
    status = (await harness.client.get("/warmup/status")).json()["data"]["resources"]["bash"]
    assert status["pools"][0]["hits"] == 1
    run = await harness.post(
        "/execute", {"worker_id": "w1", "action": "bash:run", "params": {"command": "hi"}}
    )
    assert run["code"] == 0
    assert run["meta"]["session_id"] == created["data"]["session_id"]


async def test_a_session_with_another_config_does_not_take_from_the_pool(
    harness: Harness,
) -> None:
    await fill(harness, 1)
    pooled = pool_containers(harness.runtime)
    created = await harness.post(
        "/session/create",
        {"worker_id": "w1", "resource_type": "bash", "config": {"memory": "256m"}},
    )
    assert created["code"] == 0
    assert pool_containers(harness.runtime) == pooled, "the pool was left alone"


async def test_a_dead_pool_member_is_skipped(harness: Harness) -> None:
    await fill(harness, 2)
    first, second = pool_containers(harness.runtime)
    harness.runtime.kill(first)
    created = await harness.post("/session/create", {"worker_id": "w1", "resource_type": "bash"})
    assert created["code"] == 0
    sessions = await harness.post("/session/list", {"worker_id": "w1"})
    assert sessions["data"]["sessions"][0]["container_id"] == second
    await until(lambda: first not in harness.runtime.containers)


async def test_a_burst_beyond_the_pool_all_succeeds(harness: Harness) -> None:
    await fill(harness, 2)
    bodies = [{"worker_id": f"w{i}", "resource_type": "bash"} for i in range(8)]
    results = await asyncio.gather(*(harness.post("/session/create", b) for b in bodies))
    assert [r["code"] for r in results] == [0] * 8
    status = (await harness.client.get("/warmup/status")).json()["data"]["resources"]["bash"]
    pool = status["pools"][0]
    # Refills may land during the burst: at least the two ready ones were claimed.
    assert pool["hits"] + pool["misses"] == 8
    assert pool["hits"] >= 2
    # Back to target: the claimed members (still labelled) plus two ready ones.
    await until(lambda: len(pool_containers(harness.runtime)) == pool["hits"] + 2)


async def test_shutdown_removes_pool_containers() -> None:
    runtime = FakeRuntime()
    h = await open_harness(make_settings(), runtime)
    async with h.app.router.lifespan_context(h.app), h.client:
        await fill(h, 3)
        assert len(pool_containers(runtime)) == 3
    assert runtime.containers == {}


async def test_pools_from_settings_and_adoption_after_a_restart() -> None:
    runtime = FakeRuntime()
    settings = make_settings(
        keep_sessions_on_shutdown=True, pools=[{"resource": "bash", "size": 2}]
    )
    h = await open_harness(settings, runtime)
    meta: dict[str, Any] = {}
    async with h.app.router.lifespan_context(h.app), h.client:
        await until(lambda: len(pool_containers(runtime)) == 2)
        created = await h.post("/session/create", {"worker_id": "w1", "resource_type": "bash"})
        await until(lambda: len(pool_containers(runtime)) == 3)
        meta = dict(h.agents.meta)
    # Pool members go at shutdown; the claimed one is a session and is kept.
    (kept,) = pool_containers(runtime)

    h = await open_harness(make_settings(pools=[{"resource": "bash", "size": 1}]), runtime)
    h.agents.meta.update(meta)  # what the agent of the kept container still holds
    async with h.app.router.lifespan_context(h.app), h.client:
        await h.app.state.services.sessions.wait_for_recovery()  # adoption: in the background
        (session,) = (await h.post("/session/list", {}))["data"]["sessions"]
        assert session["session_id"] == created["data"]["session_id"]
        assert session["container_id"] == kept
        await until(lambda: len(pool_containers(runtime)) == 2)
    assert runtime.containers == {}


async def test_pool_requests_are_validated(harness: Harness) -> None:
    shared = await harness.post("/warmup", {"pool_size": {"rag": 2}})
    assert (shared["code"], shared["data"]["field"]) == (ErrorCode.INVALID_PARAMS, "pool_size.rag")
    unknown = await harness.post("/warmup", {"pool_size": {"gpu": 2}})
    assert unknown["data"]["field"] == "pool_size.gpu"
    huge = await harness.post("/warmup", {"resources": ["bash"], "pool_size": 100_000})
    assert huge["code"] == ErrorCode.INVALID_PARAMS
    assert harness.runtime.running() == []


async def test_session_and_container_caps_are_1003() -> None:
    h = await open_harness(make_settings(max_sessions_per_worker=1, max_containers=2))
    async with h.app.router.lifespan_context(h.app), h.client:
        ok = await h.post("/session/create", {"worker_id": "w1", "resource_type": "bash"})
        assert ok["code"] == 0
        per_worker = await h.post("/session/create", {"worker_id": "w1", "resource_type": "code"})
        assert per_worker["code"] == ErrorCode.SESSION_ERROR
        assert "max_sessions_per_worker" in per_worker["message"]
        assert (await h.post("/session/create", {"worker_id": "w2", "resource_type": "bash"}))[
            "code"
        ] == 0
        full = await h.post("/session/create", {"worker_id": "w3", "resource_type": "bash"})
        assert full["code"] == ErrorCode.SESSION_ERROR
        assert "max_containers" in full["message"]
