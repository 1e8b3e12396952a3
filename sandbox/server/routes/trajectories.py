"""Trajectories: the recorded tool calls of a session, listed, exported, deleted.

A trajectory is one session of one worker. A tenant sees only its own workers'
trajectories and the images they show; another tenant's trajectory is answered
exactly like one that does not exist. The store is read in the thread pool
(these handlers are plain functions), never on the event loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse

from ...errors import InvalidParams, SessionError, ToolNotFound
from ...protocol import WORKER_ID_PATTERN
from ...recording import Recorder
from ..deps import Services, ServicesDep, TenantDep
from ..envelope import new_meta, respond, success
from ..files import open_file_response

router = APIRouter(prefix="/trajectories", tags=["trajectories"])

_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}


def _recorder(services: Services) -> Recorder:
    if services.recorder is None:
        raise SessionError("this server keeps no recordings")
    return services.recorder


def _unknown(session_id: str) -> ToolNotFound:
    return ToolNotFound(
        f"no trajectory {session_id!r}: GET /trajectories lists this API key's recorded "
        "sessions (a session is recorded with the server setting `recording` or its "
        "config `record: true`)",
        session_id=session_id,
    )


@router.get("")
def list_trajectories(
    services: ServicesDep,
    tenant: TenantDep,
    worker_id: Annotated[str | None, Query(pattern=WORKER_ID_PATTERN)] = None,
    session_id: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[float | None, Query(description="Active at or after (epoch s).")] = None,
    until: Annotated[float | None, Query(description="Started at or before (epoch s).")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> JSONResponse:
    """List this API key's recorded trajectories, most recently active first."""
    found = _recorder(services).find(
        tenant, worker_id=worker_id, session_id=session_id, since=since, until=until, limit=limit
    )
    data = {"trajectories": [t.as_dict() for t in found], "count": len(found)}
    return respond(success(data, new_meta(tool="trajectories")))


@router.get("/images/{sha256}", response_class=StreamingResponse)
def get_trajectory_image(
    sha256: str, services: ServicesDep, tenant: TenantDep
) -> StreamingResponse:
    """One recorded image, by the SHA-256 its steps reference it by."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise InvalidParams("sha256: must be 64 lower-case hex digits", field="sha256")
    path = _recorder(services).image(tenant, sha256)
    response = None
    if path is not None:
        media_type = _MEDIA_TYPES.get(path.suffix.lstrip("."), "application/octet-stream")
        response = open_file_response(path, media_type=media_type)
    if response is None:  # never stored, or pruned since it was found
        raise ToolNotFound(f"no recorded image {sha256} in this API key's trajectories")
    return response


@router.get("/{session_id}", response_class=StreamingResponse)
def get_trajectory(
    session_id: str,
    services: ServicesDep,
    tenant: TenantDep,
    images: Literal["ref", "inline"] = "ref",
) -> StreamingResponse:
    """One trajectory as JSONL: one step a line, images as references or inline base64."""
    lines = _recorder(services).lines(tenant, session_id, inline=images == "inline")
    if lines is None:
        raise _unknown(session_id)
    return StreamingResponse(
        _jsonl(lines),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{session_id}.jsonl"'},
    )


def _jsonl(lines: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for line in lines:
        yield json.dumps(line, separators=(",", ":")).encode() + b"\n"


@router.delete("/{session_id}")
def delete_trajectory(session_id: str, services: ServicesDep, tenant: TenantDep) -> JSONResponse:
    """Delete one trajectory and the images no other trajectory shows."""
    if not _recorder(services).delete(tenant, session_id):
        raise _unknown(session_id)
    return respond(success({"deleted": session_id}, new_meta(tool="trajectories")))
