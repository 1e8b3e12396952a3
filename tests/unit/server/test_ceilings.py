"""Operator ceilings on session configs and the server-wide pid budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sandbox.config import Settings
from sandbox.errors import ErrorCode

from .conftest import Harness, make_settings, open_harness

CEILINGS = {"memory": "2g", "cpus": 2, "pids": 512, "disk": "4g"}


@pytest.fixture
async def capped() -> AsyncIterator[Harness]:
    h = await open_harness(make_settings(ceilings=CEILINGS, pid_budget=1000))
    async with h.app.router.lifespan_context(h.app), h.client:
        yield h


def _create(config: dict[str, Any], worker: str = "w1") -> dict[str, Any]:
    return {"worker_id": worker, "resource_type": "bash", "config": config}


@pytest.mark.parametrize(
    ("config", "field", "ceiling"),
    [
        ({"memory": "1000g"}, "config.memory", "2g"),
        ({"memory": 3 * 1024**3}, "config.memory", "2g"),
        ({"cpus": 64}, "config.cpus", "2"),
        ({"cpus": 2.5}, "config.cpus", "2"),
        ({"cpus": 1e300}, "config.cpus", "2"),
        ({"pids": 10**12}, "config.pids", "512"),
        ({"memory": "99999999g"}, "config.memory", "2g"),
        ({"pids": 100_000}, "config.pids", "512"),
        ({"pids": 513}, "config.pids", "512"),
        ({"disk": "5g"}, "config.disk", "4g"),
    ],
)
async def test_a_config_over_a_ceiling_is_1002_naming_the_field_and_the_ceiling(
    capped: Harness, config: dict[str, Any], field: str, ceiling: str
) -> None:
    envelope = await capped.post("/session/create", _create(config))
    assert (envelope["code"], envelope["_status"]) == (ErrorCode.INVALID_PARAMS, 400)
    assert envelope["data"]["field"] == field
    assert envelope["message"].startswith(f"{field}: ")
    assert f"ceiling of {ceiling}" in envelope["message"]
    assert f"ceilings.{field.split('.')[1]}" in envelope["message"]
    assert capped.runtime.containers == {}, "nothing over a ceiling may reach Docker"


@pytest.mark.parametrize("cpus", [1e-10, 0.001, 0.0099, 0, -1])
async def test_a_cpu_share_too_small_to_be_a_limit_is_1002(capped: Harness, cpus: float) -> None:
    # NanoCpus rounds 1e-10 cores to 0, which Docker reads as no CPU limit at all.
    envelope = await capped.post("/session/create", _create({"cpus": cpus}))
    assert (envelope["code"], envelope["data"]["field"]) == (
        ErrorCode.INVALID_PARAMS,
        "config.cpus",
    )
    assert "0.01" in envelope["message"]
    assert capped.runtime.containers == {}, "nothing below the floor may reach Docker"


@pytest.mark.parametrize("setting", ["limits", "ceilings"])
def test_settings_refuse_a_cpu_share_below_a_hundredth(setting: str) -> None:
    with pytest.raises(ValidationError, match=f"{setting}.cpus"):
        Settings.model_validate({"server_id": "x", setting: {"cpus": 0.001}})


async def test_a_config_at_the_ceilings_is_applied(capped: Harness) -> None:
    envelope = await capped.post("/session/create", _create(CEILINGS))
    assert envelope["code"] == 0, envelope
    (spec,) = capped.runtime.specs.values()
    # The disk quota is tmpfs, charged to the container's memory: memory + disk.
    assert spec.memory_bytes == (2 + 4) * 1024**3
    assert spec.nano_cpus == 2 * 10**9
    assert spec.pids_limit == 512


async def test_network_is_refused_unless_the_operator_allows_it(harness: Harness) -> None:
    envelope = await harness.post("/session/create", _create({"network": True}))
    assert (envelope["code"], envelope["data"]["field"]) == (
        ErrorCode.INVALID_PARAMS,
        "config.network",
    )
    assert "ceilings.allow_network" in envelope["message"]
    assert harness.runtime.containers == {}
    # A tool call cannot smuggle it in either: auto-created sessions use defaults.
    ran = await harness.post(
        "/execute", {"worker_id": "w1", "action": "bash:run", "params": {"command": "x"}}
    )
    assert ran["code"] == 0
    (spec,) = harness.runtime.specs.values()
    assert spec.network is False


async def test_network_is_given_where_the_operator_allows_it() -> None:
    h = await open_harness(make_settings(ceilings={"allow_network": True}))
    async with h.app.router.lifespan_context(h.app), h.client:
        envelope = await h.post("/session/create", _create({"network": True}))
        assert envelope["code"] == 0, envelope
        assert envelope["data"]["config_applied"]["network"] is True
        (spec,) = h.runtime.specs.values()
        assert spec.network is True


def test_server_defaults_must_fit_under_the_ceilings() -> None:
    with pytest.raises(ValidationError, match=r"limits\.memory: .*ceiling of 1g"):
        Settings.model_validate(
            {"server_id": "x", "limits": {"memory": "2g"}, "ceilings": {"memory": "1g"}}
        )
    with pytest.raises(ValidationError, match=r"limits\.pids"):
        Settings.model_validate(
            {"server_id": "x", "limits": {"pids": 512}, "ceilings": {"pids": 256}}
        )


def test_a_pid_budget_below_one_sessions_pids_is_refused() -> None:
    with pytest.raises(ValidationError, match="pid_budget: 100 is below"):
        Settings(server_id="x", pid_budget=100)


def test_default_ceilings_suit_a_shared_host() -> None:
    settings = Settings(server_id="x")
    assert settings.ceilings.allow_network is False
    assert settings.ceilings.memory == "8g"
    assert settings.ceilings.pids == 4096
    assert settings.ceilings.disk == "10g"
    assert settings.ceilings.cpus >= 1
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert settings.pid_budget == pid_max // 2, "half of pid_max stays for the host"


async def test_a_cold_start_past_the_pid_budget_is_1003_naming_the_setting(
    capped: Harness,
) -> None:
    # 1000 pids in all: one 512-pid session fits, a second does not.
    first = await capped.post("/session/create", _create({}, worker="a"))
    assert first["code"] == 0, first
    second = await capped.post("/session/create", _create({}, worker="b"))
    assert (second["code"], second["_status"]) == (ErrorCode.SESSION_ERROR, 409)
    assert "pid_budget" in second["message"]
    assert "1000" in second["message"]
    assert len(capped.runtime.running()) == 1
    # A smaller ask fits beside it, and after a destroy the full ask does too.
    small = await capped.post("/session/create", _create({"pids": 128}, worker="b"))
    assert small["code"] == 0, small
    await capped.post("/session/destroy", {"worker_id": "a"})
    again = await capped.post("/session/create", _create({}, worker="c"))
    assert again["code"] == 0, again


async def test_an_auto_created_session_past_the_pid_budget_is_1003(capped: Harness) -> None:
    await capped.post("/session/create", _create({"pids": 500}, worker="a"))
    envelope = await capped.post(
        "/execute", {"worker_id": "b", "action": "bash:run", "params": {"command": "x"}}
    )
    assert envelope["code"] == ErrorCode.SESSION_ERROR
    assert "pid_budget" in envelope["message"]
    assert capped.agents.calls["bash.run"] == 0


async def test_pools_do_not_fill_past_the_pid_budget() -> None:
    h = await open_harness(make_settings(pid_budget=1100))
    async with h.app.router.lifespan_context(h.app), h.client:
        envelope = await h.post("/warmup", {"resources": ["bash"], "pool_size": 4})
        assert envelope["code"] == 0, envelope
        for _ in range(100):
            await asyncio.sleep(0.01)
        # Two 512-pid members fit in 1100; the other two never start.
        assert len(h.runtime.running()) == 2
        status = (await h.client.get("/warmup/status")).json()["data"]["resources"]["bash"]
        assert "pid_budget" in status["pools"][0]["last_error"]
