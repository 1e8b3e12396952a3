"""Tool calls: one at a time or in batches.

Every answer is bounded: one call's output by the agent reply cap and the output
limit, a batch by `batch_max_response_bytes` (results past it are errors saying
so, and the actions after it do not run) and its parallel fan-out by
`batch_concurrency`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from ...errors import InvalidParams, SandboxError
from ...protocol import BatchAction, BatchRequest, BatchResult, Envelope, ExecuteRequest
from ...recording import Call
from ..context import note_session
from ..deps import Services, ServicesDep, TenantDep, WorkerHeader, worker_of
from ..envelope import elapsed_ms, failure, new_meta, respond, success

log = logging.getLogger(__name__)

router = APIRouter(tags=["execute"])

# Shown in the OpenAPI document; property-based tests start from them too.
_EXECUTE_EXAMPLES: dict[str, Any] = {
    "bash": {
        "summary": "A shell command",
        "value": {"worker_id": "w1", "action": "bash:run", "params": {"command": "ls -l"}},
    },
    "code": {
        "summary": "A Python program, at most 10 s",
        "value": {
            "worker_id": "w1",
            "action": "code:execute",
            "params": {"code": "print(6 * 7)", "language": "python"},
            "timeout": 10,
        },
    },
    "file": {
        "summary": "Write a file",
        "value": {
            "worker_id": "w1",
            "action": "bash:write_file",
            "params": {"path": "notes/a.txt", "content": "hello"},
        },
    },
    "rag": {
        "summary": "Search the shared corpus",
        "value": {
            "worker_id": "w1",
            "action": "rag:search",
            "params": {"query": "json processor", "top_k": 3},
        },
    },
}
_BATCH_EXAMPLES: dict[str, Any] = {
    "sequence": {
        "summary": "Two calls in order, stopping at the first error",
        "value": {
            "worker_id": "w1",
            "actions": [
                {"action": "bash:run", "params": {"command": "cd /tmp"}},
                {"action": "bash:run", "params": {"command": "pwd"}},
            ],
        },
    },
    "parallel": {
        "summary": "Calls in parallel",
        "value": {
            "worker_id": "w1",
            "parallel": True,
            "stop_on_error": False,
            "actions": [
                {"action": "code:execute", "params": {"code": "print(1)"}},
                {"action": "bash:run", "params": {"command": "echo 2"}, "timeout": 5},
            ],
        },
    },
}


async def run_action(
    services: Services,
    worker_id: str,
    action: str,
    params: dict[str, Any],
    timeout: float | None,
    tenant: str,
) -> Envelope:
    """Run one tool and wrap its result, or its error, in an envelope.

    A call that reached a session is timed into the latency histogram, and its
    session named in the request's log lines.
    """
    started = time.perf_counter()
    started_at = time.time()
    meta = new_meta()
    recorded: bool | None = None  # the session's own `record`, where known
    try:
        result = await services.sessions.execute(worker_id, action, params, timeout, tenant=tenant)
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
        meta.warnings = result.warnings or None
        recorded = result.session.config.get("record")
        envelope = success(result.data, meta)
    meta.execution_time_ms = elapsed_ms(started)
    elapsed = meta.execution_time_ms / 1000
    if meta.session_id is not None and meta.tool is not None:
        # Only then is `tool` a canonical name, never a caller's typo.
        services.metrics.observe_call(meta.tool, elapsed)
        note_session(meta.session_id)
        _record(services, tenant, worker_id, action, params, envelope, started_at, recorded)
    log.debug("%r answered %d in %.1f ms", meta.tool, envelope.code, elapsed * 1000)
    return envelope


def _record(
    services: Services,
    tenant: str,
    worker_id: str,
    action: str,
    params: dict[str, Any],
    envelope: Envelope,
    started_at: float,
    recorded: bool | None,
) -> None:
    """Hand the call to the recorder if its session is recorded (only queues it)."""
    recorder, meta = services.recorder, envelope.meta
    if recorder is None or meta.session_id is None or meta.tool is None:
        return
    if recorded is None and envelope.code != 0:  # a failed call: its session says
        recorded = next(
            (
                s.config.get("record")
                for s in services.sessions.sessions(worker_id, tenant=tenant)
                if s.session_id == meta.session_id
            ),
            None,
        )
    if not (services.settings.recording if recorded is None else recorded):
        return
    recorder.submit(
        Call(
            tenant=tenant,
            worker_id=worker_id,
            session_id=meta.session_id,
            resource_type=meta.resource_type or meta.tool.split(":", 1)[0],
            action=action,
            tool=meta.tool,
            params=params,
            code=envelope.code,
            message=envelope.message,
            data=envelope.data,
            started_at=started_at,
            execution_time_ms=meta.execution_time_ms,
            trace_id=meta.trace_id,
        )
    )


@router.post("/execute")
async def execute(
    body: Annotated[ExecuteRequest, Body(openapi_examples=_EXECUTE_EXAMPLES)],
    services: ServicesDep,
    tenant: TenantDep,
    x_worker_id: WorkerHeader = None,
) -> JSONResponse:
    """Run one tool in the worker's session of its resource type (created on first use)."""
    worker_id = worker_of(body.worker_id, x_worker_id)
    return respond(
        await run_action(services, worker_id, body.action, body.params, body.timeout, tenant)
    )


class _ResponseBudget:
    """The bytes a batch's results may still take; results past it become errors."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self.exhausted = False

    def admit(self, envelope: Envelope) -> Envelope:
        """`envelope` if it fits, else an error in its place (and no more fit)."""
        size = len(envelope.model_dump_json())
        if not self.exhausted and self.used + size <= self.max_bytes:
            self.used += size
            return envelope
        self.exhausted = True
        return self.refusal(envelope.meta.tool, envelope.meta.session_id, ran=True)

    def refusal(self, tool: str | None, session_id: str | None, *, ran: bool) -> Envelope:
        """The error standing for a result that did not fit (or an action not run)."""
        what = "its result was dropped" if ran else "it was not run"
        error = InvalidParams(
            f"actions: the batch's results reached the server's {self.max_bytes}-byte "
            f"limit (batch_max_response_bytes), so {what}; split the batch or ask for "
            "less output per action",
            field="actions",
            data={"batch_max_response_bytes": self.max_bytes, "ran": ran},
        )
        return failure(error, new_meta(tool=tool, session_id=session_id))


@router.post("/execute/batch")
async def execute_batch(
    body: Annotated[BatchRequest, Body(openapi_examples=_BATCH_EXAMPLES)],
    services: ServicesDep,
    tenant: TenantDep,
    x_worker_id: WorkerHeader = None,
) -> JSONResponse:
    """Run several tools: in order (stopping at the first error if asked) or in parallel."""
    worker_id = worker_of(body.worker_id, x_worker_id)
    started = time.perf_counter()
    budget = _ResponseBudget(services.settings.batch_max_response_bytes)
    fan_out = asyncio.Semaphore(services.settings.batch_concurrency)

    async def one(item: BatchAction) -> Envelope:
        async with fan_out:
            if budget.exhausted:  # its result could not be returned: do not run it
                return budget.refusal(item.action, None, ran=False)
            envelope = await run_action(
                services, worker_id, item.action, item.params, item.timeout, tenant
            )
            return budget.admit(envelope)

    if body.parallel:
        results = list(await asyncio.gather(*(one(item) for item in body.actions)))
    else:
        results = []
        for item in body.actions:
            results.append(await one(item))
            if body.stop_on_error and results[-1].code != 0:
                break
    # Parallel calls ran in tasks of their own: name their sessions here too.
    note_session(*(result.meta.session_id for result in results))
    batch = BatchResult(
        results=results,
        total=len(body.actions),
        executed=len(results),
        success_count=sum(1 for r in results if r.code == 0),
    )
    meta = new_meta(tool="batch", execution_time_ms=elapsed_ms(started))
    return respond(success(batch.model_dump(), meta))
