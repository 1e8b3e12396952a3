"""Tenants: each API key sees and touches only its own workers' sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from sandbox.config import Settings
from sandbox.errors import ErrorCode
from tests.unit.fakes import FakeRuntime

from .conftest import Harness, make_settings, open_harness

KEYS = {"alpha": "alpha-key-123", "beta": "beta-key-456"}


def auth(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def run(command: str, worker: str = "w1") -> dict[str, Any]:
    return {"worker_id": worker, "action": "bash:run", "params": {"command": command}}


@pytest.fixture
async def tenants() -> AsyncIterator[Harness]:
    h = await open_harness(make_settings(api_keys=KEYS))
    async with h.app.router.lifespan_context(h.app), h.client:
        yield h


async def test_two_tenants_may_use_one_worker_id_without_colliding(tenants: Harness) -> None:
    a = await tenants.post("/execute", run("from-a"), headers=auth("alpha"))
    b = await tenants.post("/execute", run("from-b"), headers=auth("beta"))
    assert a["code"] == b["code"] == 0
    assert a["meta"]["session_id"] != b["meta"]["session_id"]
    assert len(tenants.runtime.running()) == 2, "one container per tenant"
    labels = {c.labels["sandbox.tenant"] for c in tenants.runtime.running()}
    assert labels == {"alpha", "beta"}


async def test_a_tenant_lists_only_its_own_sessions(tenants: Harness) -> None:
    await tenants.post("/execute", run("x", worker="a1"), headers=auth("alpha"))
    await tenants.post("/execute", run("x", worker="shared"), headers=auth("alpha"))
    await tenants.post("/execute", run("x", worker="shared"), headers=auth("beta"))

    every = await tenants.post("/session/list", {}, headers=auth("beta"))
    assert every["data"]["count"] == 1
    assert every["data"]["sessions"][0]["worker_id"] == "shared"
    mine = await tenants.post("/session/list", {"worker_id": "a1"}, headers=auth("beta"))
    assert mine["data"]["count"] == 0, "beta must not see alpha's worker a1"
    alpha = await tenants.post("/session/list", {}, headers=auth("alpha"))
    assert sorted(s["worker_id"] for s in alpha["data"]["sessions"]) == ["a1", "shared"]
    status = await tenants.post("/lifecycle/status", {"worker_id": "a1"}, headers=auth("beta"))
    assert status["data"]["sessions"] == []


async def test_a_tenant_cannot_touch_another_tenants_session(tenants: Harness) -> None:
    created = await tenants.post(
        "/session/create", {"worker_id": "w1", "resource_type": "bash"}, headers=auth("alpha")
    )
    alpha_session = created["data"]["session_id"]
    for path, body in [
        ("/session/destroy", {"worker_id": "w1"}),
        ("/session/destroy", {"worker_id": "w1", "resource_type": "bash"}),
        ("/session/refresh", {"worker_id": "w1"}),
    ]:
        envelope = await tenants.post(path, body, headers=auth("beta"))
        assert envelope["code"] == ErrorCode.SESSION_ERROR, (path, envelope)
    gone = await tenants.post("/worker/disconnect", {"worker_id": "w1"}, headers=auth("beta"))
    assert gone["data"]["destroyed"] == []
    # beta's call under the same worker id runs in a session of beta's own.
    ran = await tenants.post("/execute", run("b"), headers=auth("beta"))
    assert ran["meta"]["session_id"] != alpha_session
    batch = await tenants.post(
        "/execute/batch",
        {"worker_id": "w1", "actions": [{"action": "bash:run", "params": {"command": "b"}}]},
        headers=auth("beta"),
    )
    assert batch["data"]["results"][0]["meta"]["session_id"] != alpha_session
    listed = await tenants.post("/session/list", {"worker_id": "w1"}, headers=auth("alpha"))
    assert [s["session_id"] for s in listed["data"]["sessions"]] == [alpha_session]
    assert alpha_session in {c.labels["sandbox.session"] for c in tenants.runtime.running()}


async def test_a_wrong_or_missing_key_is_401_and_no_tenant(tenants: Harness) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        envelope = await tenants.post("/session/list", {}, headers=headers)
        assert envelope["_status"] == 401
    assert tenants.runtime.containers == {}


async def test_the_single_api_key_is_the_default_tenant_beside_named_ones() -> None:
    h = await open_harness(make_settings(api_key="solo-key-789", api_keys=KEYS))
    async with h.app.router.lifespan_context(h.app), h.client:
        solo = {"Authorization": "Bearer solo-key-789"}
        assert (await h.post("/execute", run("x"), headers=solo))["code"] == 0
        assert (await h.post("/execute", run("x"), headers=auth("alpha")))["code"] == 0
        assert (await h.post("/session/list", {}, headers=solo))["data"]["count"] == 1
        tenants = sorted(c.labels["sandbox.tenant"] for c in h.runtime.running())
        assert tenants == ["alpha", "default"]


async def test_the_tenant_survives_a_restart() -> None:
    runtime = FakeRuntime()
    settings = make_settings(api_keys=KEYS, keep_sessions_on_shutdown=True)
    first = await open_harness(settings, runtime)
    async with first.app.router.lifespan_context(first.app), first.client:
        await first.post("/execute", run("a"), headers=auth("alpha"))
        await first.post("/execute", run("b"), headers=auth("beta"))
        before = await first.post("/session/list", {}, headers=auth("alpha"))
    second = await open_harness(settings, runtime)
    async with second.app.router.lifespan_context(second.app), second.client:
        await second.app.state.services.sessions.wait_for_recovery()
        alpha = await second.post("/session/list", {}, headers=auth("alpha"))
        beta = await second.post("/session/list", {}, headers=auth("beta"))
        assert [s["session_id"] for s in alpha["data"]["sessions"]] == [
            s["session_id"] for s in before["data"]["sessions"]
        ]
        assert beta["data"]["count"] == 1
        assert (
            beta["data"]["sessions"][0]["session_id"] != alpha["data"]["sessions"][0]["session_id"]
        )


async def test_without_keys_everyone_is_one_tenant(harness: Harness) -> None:
    await harness.post("/execute", run("x"))
    listed = await harness.post("/session/list", {})
    assert listed["data"]["count"] == 1
    (container,) = harness.runtime.running()
    assert container.labels["sandbox.tenant"] == "default"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"api_key": "k-1", "api_keys": {"default": "k-2"}}, "api_key's tenant"),
        ({"api_keys": {"a": "same", "b": "same"}}, "share one key"),
        ({"api_keys": {"a b": "k-1"}}, "tenant name"),
        ({"api_keys": {"a": ""}}, "may not be empty"),
        ({"admin_tenants": ["root user"]}, "admin_tenants"),
    ],
)
def test_bad_tenant_settings_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(server_id="x", **overrides)


def test_settings_never_show_the_tenant_keys() -> None:
    settings = Settings.model_validate({"server_id": "x", "api_keys": KEYS})
    shown = repr(settings) + str(settings.model_dump())
    assert not any(key in shown for key in KEYS.values())


async def test_a_claimed_pool_containers_tenant_survives_a_restart() -> None:
    runtime = FakeRuntime()
    settings = make_settings(api_keys=KEYS, keep_sessions_on_shutdown=True, admin_tenants=["alpha"])
    first = await open_harness(settings, runtime)
    async with first.app.router.lifespan_context(first.app), first.client:
        warm = {"resources": ["bash"], "pool_size": 1, "wait": True}
        assert (await first.post("/warmup", warm, headers=auth("alpha")))["code"] == 0
        pooled = {c.id for c in runtime.running()}
        created = await first.post(
            "/session/create", {"worker_id": "w1", "resource_type": "bash"}, headers=auth("beta")
        )
        listed = await first.post("/session/list", {}, headers=auth("beta"))
        assert listed["data"]["sessions"][0]["container_id"] in pooled, "claimed from the pool"
    second = await open_harness(settings, runtime)
    second.agents.meta = first.agents.meta  # what the agents hold outlives the server
    async with second.app.router.lifespan_context(second.app), second.client:
        await second.app.state.services.sessions.wait_for_recovery()
        beta = await second.post("/session/list", {}, headers=auth("beta"))
        alpha = await second.post("/session/list", {}, headers=auth("alpha"))
        assert [s["session_id"] for s in beta["data"]["sessions"]] == [
            created["data"]["session_id"]
        ]
        assert alpha["data"]["count"] == 0


async def test_session_ids_tell_nothing_of_another_tenants_worker(tenants: Harness) -> None:
    for _ in range(3):  # alpha's w1 opens and closes three sessions
        await tenants.post("/execute", run("x"), headers=auth("alpha"))
        await tenants.post("/session/destroy", {"worker_id": "w1"}, headers=auth("alpha"))
    beta = await tenants.post("/execute", run("x"), headers=auth("beta"))
    assert beta["meta"]["session_id"].startswith("bash_w1_001_"), "beta's first, not the 4th"


def refused_as_not_operator(envelope: dict[str, Any]) -> bool:
    return (
        envelope["_status"] == 403
        and envelope["code"] == ErrorCode.INVALID_PARAMS
        and envelope["data"]["field"] == "Authorization"
        and "admin_tenants" in envelope["message"]
    )


async def test_only_an_operator_tenant_may_shut_the_server_down() -> None:
    h = await open_harness(make_settings(api_keys=KEYS, admin_tenants=["alpha"]))
    async with h.app.router.lifespan_context(h.app), h.client:
        await h.post("/execute", run("a"), headers=auth("alpha"))
        for path in ("/shutdown", "/server/shutdown", "/api/v1/server/shutdown"):
            refused = await h.post(path, {}, headers=auth("beta"))
            assert refused_as_not_operator(refused), (path, refused)
        assert len(h.runtime.running()) == 1, "alpha's session survives beta's attempts"
        done = await h.post("/shutdown", {}, headers=auth("alpha"))
        assert done["code"] == 0
        assert done["data"]["destroyed"] == 1
        assert h.runtime.running() == []


async def test_only_an_operator_tenant_may_set_pool_sizes(tenants: Harness) -> None:
    # KEYS has no `default` tenant, and admin_tenants is ["default"]: nobody is an operator.
    for pool_size in (3, {"bash": 3}, 0):
        body = {"resources": ["bash"], "pool_size": pool_size}
        refused = await tenants.post("/warmup", body, headers=auth("beta"))
        assert refused_as_not_operator(refused), (pool_size, refused)
    status = (await tenants.client.get("/warmup/status", headers=auth("beta"))).json()
    assert "pools" not in status["data"]["resources"]["bash"]
    plain = await tenants.post("/warmup", {"resources": ["bash"]}, headers=auth("beta"))
    assert plain["code"] == 0, "warming images and services stays open to every tenant"


async def test_api_keys_tenant_is_the_default_operator() -> None:
    h = await open_harness(make_settings(api_key="root-key-789", api_keys=KEYS))
    async with h.app.router.lifespan_context(h.app), h.client:
        root = {"Authorization": "Bearer root-key-789"}
        body = {"resources": ["bash"], "pool_size": 1, "wait": True}
        assert refused_as_not_operator(await h.post("/warmup", body, headers=auth("alpha")))
        assert (await h.post("/warmup", body, headers=root))["code"] == 0
        assert len(h.runtime.running()) == 1, "the operator's pool member"
