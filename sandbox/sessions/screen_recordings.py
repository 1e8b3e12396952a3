"""Screen recordings of ``vm`` sessions: started with the session, copied out at the end.

A session created with ``recording: true`` starts recording (``vm.start_recording``)
once its setup steps ran, as AgentFlow starts it after setup. When a recording
stops (``vm:stop_recording``) or its session is destroyed, the server copies the
video out of the container into the `VideoStore`, where it outlives the
session. The container is hostile: the video is read through the agent's own
descriptor of the file (never a path the session could replace with a link),
in chunks, at most ``screen_recording.max_bytes`` plus a slack and within
``copy_timeout_s`` in all; what is past either bound is left behind and the
video is kept as ``complete: false``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from typing import Any

from ..agent.tools.desktop_recording import MAX_READ_BYTES
from ..config import ScreenRecordingSettings
from ..errors import BackendError, SandboxError, SessionError
from ..recording.videos import Video, VideoStore
from ..runtime.agent import AgentClient
from .table import Session

log = logging.getLogger(__name__)

START = "start_recording"
STOP = "stop_recording"
_READ = "recording_read"
_SLACK_BYTES = 1 << 20
"""What a video may exceed ``max_bytes`` by (ffmpeg's last fragment; the agent's limit)."""
_CALL_TIMEOUT_S = 20.0
"""How long starting or stopping ffmpeg may take (it waits 10 s for ffmpeg to end)."""
_DISCARD_TIMEOUT_S = 5.0


def abandoned_after_s(settings: ScreenRecordingSettings) -> float:
    """How long the store's files of a copy stay unchanged before the copy is dead:
    longer than the copy and the discard after it may take, with a minute to spare."""
    return settings.copy_timeout_s + _DISCARD_TIMEOUT_S + 60.0


class ScreenRecordings:
    """Starts, stops and keeps the screen recordings of sessions.

    Args:
        settings: The bounds and defaults (``screen_recording``).
        agents: Calls the sessions' agents.
        store: Where the videos are kept.
    """

    def __init__(
        self, settings: ScreenRecordingSettings, agents: AgentClient, store: VideoStore
    ) -> None:
        self._settings = settings
        self._agents = agents
        self.store = store
        self._recording: set[str] = set()
        """Ids of the sessions that record now (or may: adopted after a restart)."""

    def fill_in(self, tool: str, args: dict[str, Any]) -> None:
        """Add the server's bounds (and default rate) to a ``start_recording`` call."""
        if tool != START:
            return
        if args.get("fps") is None:
            args["fps"] = self._settings.fps
        args["max_bytes"] = self._settings.max_bytes
        args["max_seconds"] = self._settings.max_seconds

    async def start(self, session: Session) -> None:
        """Start recording a new session whose config asks for it.

        Raises:
            SessionError: The recorder did not start (the create fails).
        """
        if not session.config.get("recording"):
            return
        args: dict[str, Any] = {}
        self.fill_in(START, args)
        try:
            await self._call(session, START, args, _CALL_TIMEOUT_S)
        except SandboxError as exc:
            raise SessionError(
                f"config.recording: the screen recorder did not start: {exc.message}",
                session_id=session.session_id,
                data={"field": "config.recording"},
            ) from None
        self.started(session)

    def started(self, session: Session) -> None:
        """Note that `session` records now (its start_recording answered).

        Crash recovery notes every adopted session that could record: an earlier
        run of the server may have started a recording there, and its video is
        collected when the session goes all the same.
        """
        self._recording.add(session.session_id)

    async def stopped(self, session: Session, answer: dict[str, Any]) -> dict[str, Any]:
        """`answer` of a ``stop_recording`` with the kept video's id and size."""
        video = await self._copy_out(session, answer)
        answer["recording_id"] = video.recording_id
        answer["kept_bytes"] = video.size
        answer["complete"] = video.complete
        return answer

    async def collect(self, session: Session) -> None:
        """Stop and keep a recording `session` runs, before its container goes.

        Failures are logged: the session is destroyed all the same.
        """
        if session.session_id not in self._recording and not session.config.get("recording"):
            return
        try:
            answer = await self._call(session, STOP, {}, _CALL_TIMEOUT_S)
            await self._copy_out(session, answer)
        except SandboxError as exc:
            # No recording to stop (stopped and kept already) is the usual case.
            log.info("no screen recording kept of %s: %s", session.session_id, exc.message)
        finally:
            self._recording.discard(session.session_id)

    async def _copy_out(self, session: Session, answer: dict[str, Any]) -> Video:
        """Read the stopped video from the agent, bounded, into the store."""
        self._recording.discard(session.session_id)
        limit = self._settings.max_bytes + _SLACK_BYTES
        deadline = time.monotonic() + self._settings.copy_timeout_s
        complete = False
        copied = 0
        async with self.store.writing(session.session_id) as (recording_id, file):
            try:
                while copied < limit:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    length = min(MAX_READ_BYTES, limit - copied)
                    try:
                        chunk = await self._call(
                            session, _READ, {"offset": copied, "length": length}, remaining
                        )
                        data = _decoded(chunk.get("data"), length)
                    except SandboxError as exc:
                        if not copied:
                            raise
                        # What came is kept (complete: false), as past a bound.
                        log.warning(
                            "copying the video of %s stopped at %d bytes: %s",
                            session.session_id,
                            copied,
                            exc.message,
                        )
                        break
                    await asyncio.to_thread(file.write, data)
                    copied += len(data)
                    if chunk.get("eof") is True or not data:
                        complete = chunk.get("eof") is True
                        break
            finally:
                # Free the session's disk quota either way.
                try:
                    await self._call(
                        session, _READ, {"length": 0, "discard": True}, _DISCARD_TIMEOUT_S
                    )
                except SandboxError:
                    log.warning("could not discard the video in %s", session.session_id)
        fps = answer.get("fps")
        stopped_at = time.time()
        video = Video(
            recording_id=recording_id,
            session_id=session.session_id,
            worker_id=session.worker_id,
            tenant=session.tenant,
            started_at=stopped_at - self._duration(answer),
            stopped_at=stopped_at,
            size=copied,
            fps=float(fps) if isinstance(fps, (int, float)) else self._settings.fps,
            complete=complete,
            truncated=answer.get("truncated") is True,
        )
        await asyncio.to_thread(self.store.keep, video)
        log.info("kept screen recording %s (%d bytes)", recording_id, copied)
        return video

    def _duration(self, answer: dict[str, Any]) -> float:
        """How long the recording ran, as its agent says, within what it could have."""
        duration = answer.get("duration_s")
        if not isinstance(duration, (int, float)) or not 0 <= duration < float("inf"):
            return 0.0
        return min(float(duration), self._settings.max_seconds)

    async def _call(
        self, session: Session, tool: str, args: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        if session.agent_url is None:
            raise SessionError("the session has no container")
        return await self._agents.call(
            session.agent_url, session.token, f"{session.resource_type}.{tool}", args, timeout
        )


def _decoded(value: Any, most: int) -> bytes:
    """The chunk's bytes; more than asked, or not base64, is the agent's fault."""
    if not isinstance(value, str) or len(value) > 4 * -(-most // 3):
        raise BackendError("the agent sent a bad chunk of the video")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BackendError("the agent sent a chunk of the video that is not base64") from None
