"""The server-wide memory budget: what all its containers' memory cgroups may add up to.

A session's cgroup holds its memory limit plus its disk quota (tmpfs is RAM), so
the default session (1g + 2g) counts 3 GiB against the budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from sandbox.config import Settings, default_memory_budget, host_memory_bytes
from sandbox.errors import ErrorCode

from .conftest import Harness, make_settings, open_harness

GIB = 1024**3


@pytest.fixture
async def seven_gib() -> AsyncIterator[Harness]:
    """Room for two default sessions (3 GiB each) and 1 GiB more."""
    h = await open_harness(make_settings(memory_budget="7g"))
    async with h.app.router.lifespan_context(h.app), h.client:
        yield h


def _create(worker: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"worker_id": worker, "resource_type": "bash", "config": config or {}}


async def test_a_cold_start_past_the_memory_budget_is_1003_naming_the_setting(
    seven_gib: Harness,
) -> None:
    for worker in ("a", "b"):
        assert (await seven_gib.post("/session/create", _create(worker)))["code"] == 0
    refused = await seven_gib.post("/session/create", _create("c"))
    assert (refused["code"], refused["_status"]) == (ErrorCode.SESSION_ERROR, 409)
    assert "memory_budget" in refused["message"]
    assert "7.00 GiB" in refused["message"]
    assert len(seven_gib.runtime.running()) == 2, "nothing past the budget reaches Docker"
    # A session asking for less memory and disk fits in the last GiB.
    small = await seven_gib.post(
        "/session/create", _create("c", {"memory": "512m", "disk": "512m"})
    )
    assert small["code"] == 0, small
    await seven_gib.post("/session/destroy", {"worker_id": "a"})
    assert (await seven_gib.post("/session/create", _create("d")))["code"] == 0, "room again"


async def test_an_auto_created_session_past_the_memory_budget_is_1003(seven_gib: Harness) -> None:
    await seven_gib.post("/session/create", _create("a", {"memory": "3g", "disk": "2g"}))
    envelope = await seven_gib.post(
        "/execute", {"worker_id": "b", "action": "bash:run", "params": {"command": "x"}}
    )
    assert envelope["code"] == ErrorCode.SESSION_ERROR
    assert "memory_budget" in envelope["message"]
    assert seven_gib.agents.calls["bash.run"] == 0


async def test_pools_do_not_fill_past_the_memory_budget(seven_gib: Harness) -> None:
    envelope = await seven_gib.post("/warmup", {"resources": ["bash"], "pool_size": 4})
    assert envelope["code"] == 0, envelope
    for _ in range(100):
        await asyncio.sleep(0.01)
    assert len(seven_gib.runtime.running()) == 2, "two 3 GiB members fit in 7 GiB"
    status = (await seven_gib.client.get("/warmup/status")).json()["data"]["resources"]["bash"]
    assert "memory_budget" in status["pools"][0]["last_error"]
    # The members count against sessions too: only 1 GiB is left for a cold start.
    cold = await seven_gib.post("/session/create", _create("a", {"memory": "2g"}))
    assert "memory_budget" in cold["message"]


async def test_a_shared_service_counts_against_the_memory_budget() -> None:
    # The rag service's limits are 2g: with it running, one 3 GiB session fits in 5g, not two.
    h = await open_harness(make_settings(memory_budget="5g"))
    h.runtime.images.add("sandbox/rag:latest")
    async with h.app.router.lifespan_context(h.app), h.client:
        rag = await h.post("/session/create", {"worker_id": "r", "resource_type": "rag"})
        assert rag["code"] == 0, rag
        assert (await h.post("/session/create", _create("a")))["code"] == 0
        refused = await h.post("/session/create", _create("b"))
        assert "memory_budget" in refused["message"]


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ("2g", "below one session's default memory plus disk"),
        ("lots", "not a size"),
        (True, "memory_budget"),
    ],
)
def test_a_bad_memory_budget_is_refused_at_load(budget: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings.model_validate({"server_id": "x", "memory_budget": budget})


def test_a_budget_may_be_a_size_or_a_byte_count() -> None:
    assert Settings(server_id="x", memory_budget="20g").memory_budget_bytes() == 20 * GIB
    assert (
        Settings.model_validate({"server_id": "x", "memory_budget": 20 * GIB}).memory_budget_bytes()
        == 20 * GIB
    )
    small = Settings.model_validate(
        {"server_id": "x", "memory_budget": "1g", "limits": {"memory": "256m", "disk": "256m"}}
    )
    assert small.memory_budget_bytes() == GIB


@pytest.mark.parametrize(
    ("total", "budget"),
    [
        (24 * GIB, 4 * (24 * GIB - (24 * GIB) // 10)),  # 10% is over 2 GiB; 4x overcommit
        (8 * GIB, 4 * 6 * GIB),  # 2 GiB is over 10%
        (2 * GIB + GIB // 2, 3 * GIB),  # never below one default session
        (None, 4 * 14 * GIB),  # MemTotal unknown: 16 GiB assumed
    ],
)
def test_the_default_budget_leaves_the_host_a_reserve(total: int | None, budget: int) -> None:
    assert default_memory_budget(total, one_session=3 * GIB) == budget


def test_the_default_budget_is_this_hosts_memory_less_the_reserve() -> None:
    total = host_memory_bytes()
    assert total is not None
    assert total > 0
    settings = Settings(server_id="x")
    assert settings.memory_budget_bytes() == default_memory_budget(total, 3 * GIB)
