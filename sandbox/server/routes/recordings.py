"""Screen recordings: the videos of ``vm`` sessions, listed, downloaded, deleted.

A video is kept when its recording stops (``vm:stop_recording``) or its session
ends, and outlives the session. A tenant sees only its own workers' videos;
another tenant's is answered exactly like one that does not exist. The store
is read in the thread pool (these handlers are plain functions).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, StreamingResponse

from ...errors import ToolNotFound
from ...protocol import WORKER_ID_PATTERN
from ...recording.videos import RECORDING_ID_PATTERN
from ..deps import ServicesDep, TenantDep
from ..envelope import new_meta, respond, success
from ..files import open_file_response

router = APIRouter(prefix="/recordings", tags=["recordings"])

RecordingId = Annotated[
    str, Path(pattern=RECORDING_ID_PATTERN, description="A recording id, or a session id.")
]


def _unknown(recording_id: str) -> ToolNotFound:
    return ToolNotFound(
        f"no recording {recording_id!r}: GET /recordings lists this API key's screen "
        "recordings (a vm session records with config recording: true or vm:start_recording)"
    )


@router.get("")
def list_recordings(
    services: ServicesDep,
    tenant: TenantDep,
    worker_id: Annotated[str | None, Query(pattern=WORKER_ID_PATTERN)] = None,
    session_id: Annotated[str | None, Query(max_length=200)] = None,
) -> JSONResponse:
    """List this API key's screen recordings, newest first."""
    found = services.sessions.videos.find(tenant, worker_id=worker_id, session_id=session_id)
    data = {"recordings": [video.as_dict() for video in found], "count": len(found)}
    return respond(success(data, new_meta(tool="recordings")))


@router.get("/{recording_id}", response_class=StreamingResponse)
def get_recording(
    recording_id: RecordingId, services: ServicesDep, tenant: TenantDep
) -> StreamingResponse:
    """One recording's MP4 video (a session id gives that session's latest)."""
    found = services.sessions.videos.get(tenant, recording_id)
    if found is None:
        raise _unknown(recording_id)
    video, path = found
    response = open_file_response(
        path,
        media_type="video/mp4",
        headers={
            "Content-Disposition": f'attachment; filename="{video.recording_id}.mp4"',
            "X-Recording-ID": video.recording_id,
        },
    )
    if response is None:  # deleted since it was listed
        raise _unknown(recording_id)
    return response


@router.delete("/{recording_id}")
def delete_recording(
    recording_id: RecordingId, services: ServicesDep, tenant: TenantDep
) -> JSONResponse:
    """Delete one recording's video."""
    if not services.sessions.videos.delete(tenant, recording_id):
        raise _unknown(recording_id)
    return respond(success({"deleted": recording_id}, new_meta(tool="recordings")))
