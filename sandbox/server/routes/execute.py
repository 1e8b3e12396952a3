"""Tool calls: one at a time or in batches."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ...errors import SandboxError
from ...protocol import BatchAction, BatchRequest, BatchResult, Envelope, ExecuteRequest
from ..deps import Services, ServicesDep, WorkerHeader, worker_of
from ..envelope import failure, new_meta, respond, success

router = APIRouter(tags=["execute"])


async def run_action(
    services: Services,
    worker_id: str,
    action: str,
    params: dict[str, Any],
    timeout: float | None,
) -> Envelope:
    """Run one tool and wrap its result, or its error, in an envelope."""
    started = time.perf_counter()
    meta = new_meta()
    try:
        result = await services.sessions.execute(worker_id, action, params, timeout)
    except SandboxError as exc:
        envelope = failure(exc, meta)
        # Errors before the tool resolved (1001) carry the name as the caller wrote it.
        meta.tool = meta.tool or action
        if exc.tool and ":" in exc.tool:
            meta.resource_type = exc.tool.split(":", 1)[0]
    else:
        meta.tool = result.tool.full_name
        meta.resource_type = result.tool.resource_type
        meta.session_id = result.session.session_id
        envelope = success(result.data, meta)
    meta.execution_time_ms = round((time.perf_counter() - started) * 1000, 2)
    return envelope


@router.post("/execute")
async def execute(
    body: ExecuteRequest, services: ServicesDep, x_worker_id: WorkerHeader = None
) -> JSONResponse:
    """Run one tool in the worker's session of its resource type (created on first use)."""
    worker_id = worker_of(body.worker_id, x_worker_id)
    return respond(await run_action(services, worker_id, body.action, body.params, body.timeout))


@router.post("/execute/batch")
async def execute_batch(
    body: BatchRequest, services: ServicesDep, x_worker_id: WorkerHeader = None
) -> JSONResponse:
    """Run several tools: in order (stopping at the first error if asked) or in parallel."""
    worker_id = worker_of(body.worker_id, x_worker_id)
    started = time.perf_counter()

    async def one(item: BatchAction) -> Envelope:
        return await run_action(services, worker_id, item.action, item.params, item.timeout)

    if body.parallel:
        results = list(await asyncio.gather(*(one(item) for item in body.actions)))
    else:
        results = []
        for item in body.actions:
            results.append(await one(item))
            if body.stop_on_error and results[-1].code != 0:
                break
    batch = BatchResult(
        results=results,
        total=len(body.actions),
        executed=len(results),
        success_count=sum(1 for r in results if r.code == 0),
    )
    meta = new_meta(
        tool="batch", execution_time_ms=round((time.perf_counter() - started) * 1000, 2)
    )
    return respond(success(batch.model_dump(), meta))
