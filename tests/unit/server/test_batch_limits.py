"""Batch fan-out and response size caps."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sandbox.errors import ErrorCode

from .conftest import make_settings, open_harness


def _actions(count: int) -> list[dict[str, Any]]:
    return [{"action": "bash:run", "params": {"command": str(i)}} for i in range(count)]


async def test_parallel_batches_run_at_most_batch_concurrency_at_once() -> None:
    h = await open_harness(make_settings(batch_concurrency=2))
    running = peak = 0

    async def slow(params: dict[str, Any]) -> dict[str, Any]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return {"stdout": params["command"]}

    async with h.app.router.lifespan_context(h.app), h.client:
        h.agents.handlers["bash.run"] = slow
        body = {"worker_id": "w1", "actions": _actions(6), "parallel": True}
        envelope = await h.post("/execute/batch", body)
        assert envelope["data"]["success_count"] == 6
        assert peak == 2


async def _big_output(params: dict[str, Any]) -> dict[str, Any]:
    return {"stdout": params["command"] + "x" * 700}


async def test_results_past_the_byte_cap_are_errors_and_the_rest_do_not_run() -> None:
    h = await open_harness(make_settings(batch_max_response_bytes=2048))
    async with h.app.router.lifespan_context(h.app), h.client:
        h.agents.handlers["bash.run"] = _big_output
        body = {"worker_id": "w1", "actions": _actions(5), "stop_on_error": False}
        response = await h.client.post("/execute/batch", json=body)
        assert len(response.content) < 2048 + 4096, "the response stays near the cap"
        results = response.json()["data"]["results"]
        codes = [r["code"] for r in results]
        assert codes[:2] == [0, 0]
        assert set(codes[2:]) == {ErrorCode.INVALID_PARAMS}
        assert "batch_max_response_bytes" in results[2]["message"]
        assert results[2]["data"]["ran"] is True, "the third ran; its result did not fit"
        assert [r["data"]["ran"] for r in results[3:]] == [False, False]
        assert h.agents.calls["bash.run"] == 3


async def test_a_sequential_batch_stops_at_the_cap_when_asked_to_stop_on_errors() -> None:
    h = await open_harness(make_settings(batch_max_response_bytes=2048))
    async with h.app.router.lifespan_context(h.app), h.client:
        h.agents.handlers["bash.run"] = _big_output
        envelope = await h.post("/execute/batch", {"worker_id": "w1", "actions": _actions(5)})
        data = envelope["data"]
        assert (data["total"], data["executed"], data["success_count"]) == (5, 3, 2)


async def test_a_parallel_batch_keeps_within_the_cap() -> None:
    h = await open_harness(make_settings(batch_max_response_bytes=4096))
    async with h.app.router.lifespan_context(h.app), h.client:
        h.agents.handlers["bash.run"] = _big_output
        body = {"worker_id": "w1", "actions": _actions(20), "parallel": True}
        response = await h.client.post("/execute/batch", json=body)
        results = response.json()["data"]["results"]
        kept = [r for r in results if r["code"] == 0]
        assert 1 <= len(kept) < 20
        assert sum(len(json.dumps(r, separators=(",", ":"))) for r in kept) <= 4096
        assert len(results) == 20, "every action has a result, dropped ones as errors"
