"""A session whose node is gone (a swarm node that went down) is lost: 1003, then fresh."""

from __future__ import annotations

from dataclasses import replace

from sandbox.errors import ErrorCode

from .conftest import Harness


async def test_a_session_on_a_node_that_is_down_is_1003_then_created_afresh(
    harness: Harness,
) -> None:
    body = {"worker_id": "w1", "action": "bash:run", "params": {"command": "true"}}
    first = await harness.post("/execute", body)
    (container,) = harness.runtime.containers
    old = harness.runtime.containers[container]
    harness.runtime.containers[container] = replace(
        old, status="lost (its node is down)", lost=True
    )
    lost = await harness.post("/execute", body)
    assert (lost["code"], lost["_status"]) == (ErrorCode.SESSION_ERROR, 409)
    assert "lost with its node" in lost["message"]
    assert container not in harness.runtime.containers  # its service is removed
    fresh = await harness.post("/execute", body)
    assert fresh["code"] == 0
    assert fresh["meta"]["session_id"] != first["meta"]["session_id"]
