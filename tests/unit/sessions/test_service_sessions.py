"""The shared-service protocol: owners round-trip through the service's records, and
a service's list of sessions adopts only what this server could have opened."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.config import DEFAULT_TENANT
from sandbox.sessions.service_sessions import owner_from_service, service_owner
from sandbox.sessions.table import Session
from tests.unit.server.conftest import make_settings, open_harness


@pytest.mark.parametrize(("tenant", "recorded"), [(DEFAULT_TENANT, "w.1"), ("acme", "acme/w.1")])
def test_the_owner_a_service_records_splits_back_into_tenant_and_worker(
    tenant: str, recorded: str
) -> None:
    session = Session("rag_w.1_001_0a0b0c0d", "n", "w.1", "rag", {}, "t", 0.0, 0.0, 0.0)
    session.tenant = tenant
    assert service_owner(session) == recorded
    assert owner_from_service(recorded) == (tenant, "w.1")


async def test_a_service_listing_adopts_only_sessions_this_server_could_have_opened() -> None:
    h = await open_harness(make_settings())
    h.runtime.images.add("sandbox/rag:latest")

    async def listing(params: dict[str, Any]) -> dict[str, Any]:
        return {
            "sessions": [
                {"session": "rag_old_003_0a0b0c0d", "worker": "acme/old", "created_at": 5.0},
                {"session": "bash_x_001_0a0b0c0d", "worker": "x"},  # not a rag session
                {"session": "rag_y_001_0a0b0c0d", "worker": "bad worker"},
                {"session": "../../etc", "worker": "z"},
                {"session": "rag_z_001_0a0b0c0d", "worker": "z", "created_at": "soon"},
                "not an entry",
                7,
            ]
        }

    h.agents.handlers["rag.sessions"] = listing
    async with h.app.router.lifespan_context(h.app), h.client:
        created = await h.post("/session/create", {"worker_id": "a", "resource_type": "rag"})
        assert created["code"] == 0, created
        manager = h.app.state.services.sessions
        adopted = {(s.tenant, s.worker_id, s.session_id) for s in manager.sessions()}
        assert adopted == {
            (DEFAULT_TENANT, "a", created["data"]["session_id"]),
            ("acme", "old", "rag_old_003_0a0b0c0d"),
            (DEFAULT_TENANT, "z", "rag_z_001_0a0b0c0d"),
        }
        (old,) = manager.sessions("old", tenant="acme")
        assert old.created_at == 5.0
