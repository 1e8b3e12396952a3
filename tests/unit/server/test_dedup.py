"""X-Request-ID de-duplication: after authentication, per caller, bounded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from sandbox.errors import ErrorCode
from sandbox.server.dedup import RequestDeduplication

from .conftest import Harness, make_settings, open_harness

KEYS = {"alpha": "alpha-key-123", "beta": "beta-key-456"}
ALPHA = {"Authorization": "Bearer alpha-key-123"}
BETA = {"Authorization": "Bearer beta-key-456"}


def run(command: str, worker: str = "w1") -> dict[str, Any]:
    return {"worker_id": worker, "action": "bash:run", "params": {"command": command}}


@pytest.fixture
async def keyed() -> AsyncIterator[Harness]:
    h = await open_harness(make_settings(api_keys=KEYS))
    async with h.app.router.lifespan_context(h.app), h.client:
        yield h


async def test_a_request_without_the_key_never_gets_a_cached_response(keyed: Harness) -> None:
    first = await keyed.post("/execute", run("secret"), headers={**ALPHA, "X-Request-ID": "r1"})
    assert first["data"]["stdout"] == "secret\n"
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        stolen = await keyed.post(
            "/execute", run("secret"), headers={**headers, "X-Request-ID": "r1"}
        )
        assert stolen["_status"] == 401
        assert "secret" not in json.dumps(stolen), "someone else's output"


async def test_an_unauthenticated_request_leaves_nothing_in_the_cache(keyed: Harness) -> None:
    denied = await keyed.post("/execute", run("x"), headers={"X-Request-ID": "r2"})
    assert denied["_status"] == 401
    allowed = await keyed.post("/execute", run("x"), headers={**ALPHA, "X-Request-ID": "r2"})
    assert (allowed["_status"], allowed["code"]) == (200, 0), "not the replayed 401"


async def test_another_tenant_reusing_an_id_runs_its_own_request(keyed: Harness) -> None:
    a = await keyed.post("/execute", run("a"), headers={**ALPHA, "X-Request-ID": "same"})
    b = await keyed.post("/execute", run("a"), headers={**BETA, "X-Request-ID": "same"})
    assert a["meta"]["session_id"] != b["meta"]["session_id"]
    assert keyed.agents.calls["bash.run"] == 2


async def test_another_worker_reusing_an_id_runs_its_own_request(harness: Harness) -> None:
    headers = {"X-Request-ID": "same"}
    await harness.post("/execute", run("a", worker="w1"), headers=headers)
    other = await harness.post("/execute", run("a", worker="w2"), headers=headers)
    assert other["code"] == 0
    assert "_w2_" in other["meta"]["session_id"]
    assert harness.agents.calls["bash.run"] == 2


async def test_a_reused_id_with_a_different_body_is_1002(harness: Harness) -> None:
    headers = {"X-Request-ID": "r3"}
    first = await harness.post("/execute", run("rm -rf /tmp/x"), headers=headers)
    assert first["code"] == 0
    other = await harness.post("/execute", run("echo different"), headers=headers)
    assert (other["code"], other["_status"]) == (ErrorCode.INVALID_PARAMS, 400)
    assert other["data"]["field"] == "X-Request-ID"
    assert "different body" in other["message"]
    assert harness.agents.calls["bash.run"] == 1, "neither ran again nor replayed"
    again = await harness.post("/execute", run("rm -rf /tmp/x"), headers=headers)
    assert again["data"] == first["data"]


async def test_a_different_body_is_refused_while_the_first_still_runs(harness: Harness) -> None:
    gate = asyncio.Event()

    async def held(params: dict[str, Any]) -> dict[str, Any]:
        await gate.wait()
        return {"stdout": params["command"]}

    harness.agents.handlers["bash.run"] = held
    headers = {"X-Request-ID": "r4"}
    first = asyncio.create_task(harness.post("/execute", run("one"), headers=headers))
    await asyncio.sleep(0.05)
    other = await harness.post("/execute", run("two"), headers=headers)
    assert other["code"] == ErrorCode.INVALID_PARAMS
    gate.set()
    assert (await first)["data"]["stdout"] == "one"


class _SlowApp:
    """A toy ASGI app answering `size` bytes once its gate opens; counts its runs."""

    def __init__(self, size: int = 10) -> None:
        self.runs = 0
        self.size = size
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        self.runs += 1
        await self.gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * self.size})


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def _post(client: httpx.AsyncClient, request_id: str, caller: str = "t") -> httpx.Response:
    headers = {"X-Request-ID": request_id, "X-Caller": caller}
    return await client.post("/p", content=b"{}", headers=headers)


def _caller(scope: Scope) -> str:
    caller: bytes = dict(scope["headers"])[b"x-caller"]
    return caller.decode()


async def test_past_the_entry_bound_requests_run_uncached_while_others_run() -> None:
    inner = _SlowApp()
    app = RequestDeduplication(inner, identify=_caller, max_entries=2)
    async with _client(app) as client:
        inner.gate.clear()
        slow = [asyncio.create_task(_post(client, f"slow-{i}", f"c{i}")) for i in range(2)]
        await asyncio.sleep(0.05)
        # Both slots hold running requests: a new id is not remembered.
        flood = asyncio.create_task(_post(client, "flood"))
        await asyncio.sleep(0.05)
        inner.gate.set()
        await asyncio.gather(*slow, flood)
        runs = inner.runs
        await _post(client, "flood")
        assert inner.runs == runs + 1, "the id past the bound was not kept"
        # Now that the slow ones finished, the retry took the oldest one's slot.
        replay = await _post(client, "slow-1", "c1")
        assert replay.headers["x-request-replayed"] == "1"
        assert (await _post(client, "flood")).headers["x-request-replayed"] == "1"
        assert inner.runs == runs + 1


async def test_a_response_over_the_byte_bound_is_not_kept() -> None:
    inner = _SlowApp(size=4096)
    app = RequestDeduplication(inner, identify=lambda scope: "t", max_bytes=1024)
    async with _client(app) as client:
        assert len((await _post(client, "big")).content) == 4096
        await _post(client, "big")
        assert inner.runs == 2, "a response that cannot be kept is not replayed"
        inner.size = 100
        await _post(client, "small")
        await _post(client, "small")
        assert inner.runs == 3, "a response within the bound is replayed"


async def test_old_responses_make_room_for_new_ones() -> None:
    inner = _SlowApp(size=600)
    app = RequestDeduplication(inner, identify=lambda scope: "t", max_bytes=1000)
    async with _client(app) as client:
        await _post(client, "a")
        await _post(client, "b")  # 1200 bytes would not fit: "a" goes
        await _post(client, "b")
        assert inner.runs == 2, "b is kept"
        await _post(client, "a")
        assert inner.runs == 3, "a made room for b"


async def test_an_unidentified_caller_bypasses_the_cache() -> None:
    inner = _SlowApp()
    app = RequestDeduplication(inner, identify=lambda scope: None)
    async with _client(app) as client:
        await _post(client, "r")
        await _post(client, "r")
        assert inner.runs == 2


async def test_finished_responses_give_their_slots_to_new_ids() -> None:
    inner = _SlowApp()
    app = RequestDeduplication(inner, identify=lambda scope: "t", max_entries=2)
    async with _client(app) as client:
        for request_id in ("a", "b", "c"):
            await _post(client, request_id)
        await _post(client, "c")
        await _post(client, "b")
        assert inner.runs == 3, "the newest ids are kept past the entry bound"
        await _post(client, "a")
        assert inner.runs == 4, "the oldest made room"


async def test_one_callers_flood_leaves_slots_for_the_others() -> None:
    inner = _SlowApp()
    app = RequestDeduplication(inner, identify=_caller, max_entries=4)
    async with _client(app) as client:
        inner.gate.clear()
        flood = [asyncio.create_task(_post(client, f"f{i}", "flooder")) for i in range(4)]
        await asyncio.sleep(0.05)
        bystander = asyncio.create_task(_post(client, "mine", "bystander"))
        await asyncio.sleep(0.05)
        inner.gate.set()
        await asyncio.gather(*flood, bystander)
        runs = inner.runs
        retried = await _post(client, "mine", "bystander")
        assert retried.headers["x-request-replayed"] == "1", "the bystander kept its slot"
        await _post(client, "f3", "flooder")
        assert inner.runs == runs + 1, "the flooder's requests past half ran uncached"
