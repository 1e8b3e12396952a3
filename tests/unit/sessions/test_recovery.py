"""Start-up recovery: in the background, bounded per container, trusting no claim it
cannot verify. Docker and the agents are faked; a "hung" agent never answers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from sandbox.server import create_app
from tests.unit.fakes import FakeAgents, FakeRuntime
from tests.unit.server.conftest import Harness, make_settings, open_harness

# Guards against a hang, not timing asserts: each is far beyond what the step needs.
_GUARD_S = 10.0


class HangingAgents(FakeAgents):
    """Fake agents, of which those at `hung` URLs accept calls and never answer."""

    def __init__(self, runtime: FakeRuntime) -> None:
        super().__init__(runtime)
        self.hung: set[str] = set()

    async def call(
        self, url: str, token: str, tool: str, params: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        if url in self.hung:
            await asyncio.Event().wait()
        return await super().call(url, token, tool, params, timeout)

    async def is_ready(self, url: str) -> bool:
        if url in self.hung:
            await asyncio.Event().wait()
        return await super().is_ready(url)


async def _first_run(runtime: FakeRuntime, *workers: str, pooled: bool = False) -> Harness:
    """Sessions of `workers`, left running (keep_sessions_on_shutdown) for a restart."""
    pools = [{"resource": "bash", "size": len(workers)}] if pooled else []
    h = await open_harness(make_settings(keep_sessions_on_shutdown=True, pools=pools), runtime)
    async with h.app.router.lifespan_context(h.app), h.client:
        if pooled:
            # Naming the pool size makes the warm-up wait for the pool to be full,
            # so each session below is a claim, never a cold start.
            body = {"resources": ["bash"], "pool_size": len(workers), "wait": True}
            ready = await h.post("/warmup", body)
            assert ready["code"] == 0
            assert ready["data"]["resources"]["bash"]["pools"][0]["ready"] == len(workers)
        for worker in workers:
            created = await h.post(
                "/session/create", {"worker_id": worker, "resource_type": "bash"}
            )
            assert created["code"] == 0, created
    return h


def _session_container(runtime: FakeRuntime, h: Harness, worker: str) -> str:
    """The container of `worker`'s session: by its labels, or by its pool claim."""
    for record in runtime.running():
        claim = h.agents.meta.get(str(record.agent_url), {}).get("claim", {})
        if worker in (record.labels.get("sandbox.worker"), claim.get("sandbox.worker")):
            return record.id
    raise AssertionError(f"no container of {worker}")


async def test_health_answers_at_once_while_every_old_agent_hangs() -> None:
    runtime = FakeRuntime()
    await _first_run(runtime, "w1", "w2")
    agents = HangingAgents(runtime)
    agents.hung = {str(c.agent_url) for c in runtime.running()}
    app = create_app(make_settings(recovery_timeout_s=0.5), runtime=runtime, agents=agents)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox")
    async with app.router.lifespan_context(app), client:
        health = await asyncio.wait_for(client.get("/health"), _GUARD_S)
        assert health.status_code == 200
        assert health.json()["data"]["recovering"] is True
        await asyncio.wait_for(app.state.services.sessions.wait_for_recovery(), _GUARD_S)
        # A hung agent's container is treated as dead: removed, never adopted.
        assert runtime.running() == []
        health = (await client.get("/health")).json()["data"]
        assert (health["recovering"], health["sessions"]) == (False, 0)
        created = await client.post(
            "/session/create", json={"worker_id": "w1", "resource_type": "bash"}
        )
        assert created.json()["code"] == 0


async def test_a_create_during_recovery_gets_the_adopted_session_not_a_second_one() -> None:
    runtime = FakeRuntime()
    first = await _first_run(runtime, "w1", "w2")
    w1_container = _session_container(runtime, first, "w1")
    agents = HangingAgents(runtime)
    agents.hung = {str(runtime.containers[_session_container(runtime, first, "w2")].agent_url)}
    app = create_app(make_settings(recovery_timeout_s=1.0), runtime=runtime, agents=agents)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox")
    async with app.router.lifespan_context(app), client:
        assert app.state.services.sessions.recovering
        response = await asyncio.wait_for(
            client.post("/session/create", json={"worker_id": "w1", "resource_type": "bash"}),
            _GUARD_S,
        )
        created = response.json()
        assert created["code"] == 0, created
        adopted = runtime.containers[w1_container].labels["sandbox.session"]
        assert created["data"]["session_id"] == adopted
        assert created["data"]["status"] != "created"
        assert {c.id for c in runtime.running()} == {w1_container}, "w2's hung one removed"


async def _forge(
    runtime: FakeRuntime, first: Harness, attacker: str, victim: str, how: str
) -> None:
    """Make the attacker's pool container claim the victim's session."""
    attacker_url = str(runtime.containers[_session_container(runtime, first, attacker)].agent_url)
    victim_url = str(runtime.containers[_session_container(runtime, first, victim)].agent_url)
    victim_meta = first.agents.meta[victim_url]
    if how == "replayed":  # the victim's genuine signed claim, copied over
        first.agents.meta[attacker_url] = dict(victim_meta)
    elif how == "made-up mac":
        first.agents.meta[attacker_url] = {"claim": dict(victim_meta["claim"]), "mac": "0" * 64}
    elif how == "denied":  # no claim at all: an unclaimed pool member, for the next worker
        first.agents.meta[attacker_url] = {}
    else:  # the format from before claims were signed
        first.agents.meta[attacker_url] = dict(victim_meta["claim"])


@pytest.mark.parametrize("how", ["replayed", "made-up mac", "unsigned", "denied"])
async def test_a_forged_claim_is_refused_logged_and_its_container_removed(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = FakeRuntime()
    first = await _first_run(runtime, "victim", "attacker", pooled=True)
    victim = _session_container(runtime, first, "victim")
    attacker = _session_container(runtime, first, "attacker")
    await _forge(runtime, first, "attacker", "victim", how)

    h = await open_harness(make_settings(), runtime)
    h.agents.meta.update(first.agents.meta)  # what the agents still hold
    with caplog.at_level(logging.WARNING, logger="sandbox.sessions.recovery"):
        async with h.app.router.lifespan_context(h.app), h.client:
            await h.app.state.services.sessions.wait_for_recovery()
            (session,) = (await h.post("/session/list", {}))["data"]["sessions"]
            assert (session["worker_id"], session["container_id"]) == ("victim", victim)
            assert attacker not in runtime.containers
            ran = await h.post(
                "/execute",
                {"worker_id": "victim", "action": "bash:run", "params": {"command": "id"}},
            )
            assert ran["code"] == 0
    assert any(
        "forged claim" in r.getMessage() and attacker[:12] in r.getMessage() for r in caplog.records
    )
