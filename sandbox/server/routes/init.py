"""AgentFlow's ``/init`` endpoints: opening sessions under their names.

``/init/resource`` is `/session/create` with the config in ``init_config``;
``/init/batch`` opens several resource types at once and reports each.
AgentFlow's ``/init/from-config`` returns any JSON file of the server host the
caller names; ours answers only for the file the server was started with, and
with the settings it made of it (secrets masked), never another file's bytes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ...errors import InvalidParams, SandboxError
from ...protocol import InitBatchRequest, InitFromConfigRequest, InitResourceRequest
from ..context import note_session
from ..deps import ServicesDep, TenantDep, WorkerHeader, worker_of
from ..envelope import new_meta, respond, success
from .sessions import opened

router = APIRouter(prefix="/init", tags=["sessions"])


@router.post("/resource")
async def init_resource(
    body: InitResourceRequest,
    services: ServicesDep,
    tenant: TenantDep,
    x_worker_id: WorkerHeader = None,
) -> JSONResponse:
    """Open the worker's session of a resource type (as `/session/create`)."""
    worker_id = worker_of(body.worker_id, x_worker_id)
    session, created = await services.sessions.create(
        worker_id, body.resource_type, body.init_config, tenant=tenant
    )
    note_session(session.session_id)
    meta = new_meta(resource_type=session.resource_type, session_id=session.session_id)
    return respond(success(opened(session, created), meta))


@router.post("/batch")
async def init_batch(
    body: InitBatchRequest,
    services: ServicesDep,
    tenant: TenantDep,
    x_worker_id: WorkerHeader = None,
) -> JSONResponse:
    """Open several of the worker's sessions at once; each reports its own outcome."""
    worker_id = worker_of(body.worker_id, x_worker_id)

    async def open_one(resource: str, config: dict[str, Any]) -> dict[str, Any]:
        if isinstance(config.get("content"), dict):
            config = config["content"]
        try:
            session, created = await services.sessions.create(
                worker_id, resource, config, tenant=tenant
            )
        except SandboxError as exc:
            return {"status": "error", "code": int(exc.code), "message": exc.message}
        note_session(session.session_id)
        return {**opened(session, created), "status": "success", "code": 0}

    resources = list(body.resource_configs)
    outcomes = await asyncio.gather(
        *(open_one(resource, body.resource_configs[resource]) for resource in resources)
    )
    results = dict(zip(resources, outcomes, strict=True))
    succeeded = sum(1 for outcome in outcomes if outcome["status"] == "success")
    data = {
        "worker_id": worker_id,
        "results": results,
        "total": len(results),
        "success_count": succeeded,
    }
    return respond(success(data))


@router.post("/from-config")
async def init_from_config(body: InitFromConfigRequest, services: ServicesDep) -> JSONResponse:
    """The settings the server made of its config file, with `override_params` laid over
    them (in the answer only); any other path is 1002."""
    started_with = services.settings.config_file
    if started_with is None or Path(body.config_path).resolve() != started_with.resolve():
        raise InvalidParams(
            "config_path: the server reads only the config file it was started with",
            field="config_path",
        )
    config = services.settings.model_dump(mode="json")  # SecretStr dumps as '**********'
    for key, value in body.override_params.items():
        if isinstance(config.get(key), dict) and isinstance(value, dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return respond(success({"config_loaded": body.config_path, "config": config}))
