"""Session management: create, destroy, list, refresh."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from ...protocol import (
    CreateSessionRequest,
    DestroySessionRequest,
    ListSessionsRequest,
    RefreshSessionRequest,
)
from ...sessions.table import Session
from ..context import note_session
from ..deps import ServicesDep, TenantDep, WorkerHeader, worker_of
from ..envelope import elapsed_ms, new_meta, respond, success

router = APIRouter(prefix="/session", tags=["sessions"])

# Shown in the OpenAPI document; property-based tests start from them too.
_CREATE_EXAMPLES: dict[str, Any] = {
    "bash": {"summary": "A shell", "value": {"worker_id": "w1", "resource_type": "bash"}},
    "limits": {
        "summary": "Code with limits (within the operator's ceilings)",
        "value": {
            "worker_id": "w1",
            "resource_type": "code",
            "config": {"memory": "512m", "cpus": 0.5, "pids": 128},
        },
    },
    "network": {
        "summary": "A shell with network (1002 unless the operator allows network)",
        "value": {"worker_id": "w1", "resource_type": "bash", "config": {"network": True}},
    },
    "vm": {
        "summary": "A desktop",
        "value": {"worker_id": "w1", "resource_type": "vm", "config": {"screen_size": [1024, 768]}},
    },
    "rag": {"summary": "Retrieval", "value": {"worker_id": "w1", "resource_type": "rag"}},
}
_WORKER_EXAMPLES: dict[str, Any] = {
    "one": {"summary": "One resource type", "value": {"worker_id": "w1", "resource_type": "bash"}},
    "all": {"summary": "All the worker's sessions", "value": {"worker_id": "w1"}},
}


def opened(session: Session, created: bool) -> dict[str, Any]:
    """What a create answers about the session it opened (or found)."""
    return {
        "session_id": session.session_id,
        "session_name": session.session_name,
        "resource_type": session.resource_type,
        "status": "created" if created else "exists",
        # AgentFlow's client counts a session as created only when it reads this.
        "session_status": "active",
        "config_applied": session.config,
        "expires_at": session.expires_at,
    }


@router.post("/create")
async def create_session(
    body: Annotated[CreateSessionRequest, Body(openapi_examples=_CREATE_EXAMPLES)],
    services: ServicesDep,
    tenant: TenantDep,
    x_worker_id: WorkerHeader = None,
) -> JSONResponse:
    """Open the worker's session of a resource type; an existing one is returned as is."""
    worker_id = worker_of(body.worker_id, x_worker_id)
    started = time.perf_counter()
    session, created = await services.sessions.create(
        worker_id, body.resource_type, body.config, custom_name=body.custom_name, tenant=tenant
    )
    note_session(session.session_id)
    data = opened(session, created)
    meta = new_meta(
        resource_type=session.resource_type,
        session_id=session.session_id,
        execution_time_ms=elapsed_ms(started),
    )
    return respond(success(data, meta))


@router.post("/destroy")
async def destroy_session(
    body: Annotated[DestroySessionRequest, Body(openapi_examples=_WORKER_EXAMPLES)],
    services: ServicesDep,
    tenant: TenantDep,
    x_worker_id: WorkerHeader = None,
) -> JSONResponse:
    """Destroy one of the worker's sessions, or all of them when no resource type is given."""
    worker_id = worker_of(body.worker_id, x_worker_id)
    destroyed = await services.sessions.destroy(worker_id, body.resource_type, tenant=tenant)
    note_session(*(s.session_id for s in destroyed))
    data = {
        "destroyed": [s.session_id for s in destroyed],
        "count": len(destroyed),
    }
    return respond(success(data, new_meta(resource_type=body.resource_type)))


@router.post("/list")
async def list_sessions(
    body: ListSessionsRequest,
    services: ServicesDep,
    tenant: TenantDep,
    x_worker_id: WorkerHeader = None,
) -> JSONResponse:
    """List the worker's sessions (all the caller's sessions when no worker is named)."""
    worker_id = body.worker_id or x_worker_id
    found = services.sessions.sessions(worker_id, tenant=tenant)
    sessions = [s.info().model_dump() for s in found]
    return respond(success({"sessions": sessions, "count": len(sessions)}))


@router.post("/refresh")
async def refresh_session(
    body: Annotated[RefreshSessionRequest, Body(openapi_examples=_WORKER_EXAMPLES)],
    services: ServicesDep,
    tenant: TenantDep,
    x_worker_id: WorkerHeader = None,
) -> JSONResponse:
    """Push the expiry of one or all of the worker's sessions."""
    worker_id = worker_of(body.worker_id, x_worker_id)
    sessions = services.sessions.refresh(worker_id, body.resource_type, tenant=tenant)
    note_session(*(s.session_id for s in sessions))
    data = {
        "refreshed": [s.session_id for s in sessions],
        "expires_at": max(s.expires_at for s in sessions),
        "ttl_s": services.settings.session_ttl_s,
    }
    return respond(success(data))
