"""Warming a shared service (rag): every failure is reported, whatever raised it, a
later warmup tries again, and waiting on a busy service ends at its deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sandbox.runtime.docker import ContainerRecord, ContainerSpec
from sandbox.server.routes.system import _wait_for_services

from .conftest import Harness

# Guards against a hang, not a timing assert: far beyond what each step needs.
_GUARD_S = 10.0


async def _warm_rag(harness: Harness) -> dict[str, Any]:
    return await asyncio.wait_for(
        harness.post("/warmup", {"resources": ["rag"], "wait": True}), _GUARD_S
    )


async def test_a_warmup_that_fails_with_an_unexpected_error_says_so_and_is_retried(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.runtime.images.add("sandbox/rag:latest")
    started = harness.runtime.start

    async def broken(spec: ContainerSpec) -> ContainerRecord:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(harness.runtime, "start", broken)
    failed = await _warm_rag(harness)
    assert failed["code"] == 2001, failed
    assert failed["message"] == "warmup failed for rag"
    service = failed["data"]["resources"]["rag"]["service"]
    assert service["state"] == "failed"
    assert "disk on fire" in service["error"]
    status = (await harness.client.get("/warmup/status")).json()["data"]
    assert status["resources"]["rag"]["service"] == service, "the failure stays reported"

    monkeypatch.setattr(harness.runtime, "start", started)
    warmed = await _warm_rag(harness)
    assert warmed["code"] == 0, warmed
    assert warmed["data"]["resources"]["rag"]["service"] == {"state": "ready"}


async def test_the_service_report_keeps_the_fields_the_service_sent(harness: Harness) -> None:
    harness.runtime.images.add("sandbox/rag:latest")

    async def detailed(params: dict[str, Any]) -> dict[str, Any]:
        return {"state": "ready", "documents": 3, "error": None, "progress": {"done": 3}}

    harness.agents.handlers["rag.status"] = detailed
    warmed = await _warm_rag(harness)
    assert warmed["data"]["resources"]["rag"]["service"] == {
        "state": "ready",
        "documents": 3,
        "error": None,
        "progress": {"done": 3},
    }


async def test_a_service_with_a_malformed_status_is_unreachable_not_a_crash(
    harness: Harness,
) -> None:
    harness.runtime.images.add("sandbox/rag:latest")

    async def garbled(params: dict[str, Any]) -> dict[str, Any]:
        return {"state": "on fire"}

    harness.agents.handlers["rag.status"] = garbled
    warmed = await _warm_rag(harness)
    assert warmed["code"] == 0
    service = warmed["data"]["resources"]["rag"]["service"]
    assert service == {"state": "unreachable", "error": "the service sent a malformed status"}


async def test_waiting_on_a_service_that_never_finishes_indexing_ends(harness: Harness) -> None:
    harness.runtime.images.add("sandbox/rag:latest")
    harness.agents.rag_indexing = 10**9  # indexing for ever
    created = await harness.post("/session/create", {"worker_id": "a", "resource_type": "rag"})
    assert created["code"] == 0, created
    services = harness.app.state.services
    await asyncio.wait_for(_wait_for_services(services, ["rag"], timeout=0.3), _GUARD_S)
    status = await services.sessions.service_status("rag")
    assert status is not None
    assert status.state.value == "indexing"
