"""The ``desktop`` toolset's screen recording: ``vm.start_recording``, ``vm.stop_recording``
and the server's ``vm.recording_read``.

ffmpeg (x11grab, libx264) records the screen as the session user, as every
program of the session runs, under a file-size limit it cannot raise
(``prlimit``, besides ffmpeg's own ``-fs``). It writes to a file the agent made
in a directory of its own (root's, mode 0700, on the session's disk quota)
and handed to it as its stdout: the session can neither plant a link or a FIFO
there nor open the file by name. The video is a fragmented MP4, so what ffmpeg
wrote stays playable even when it is killed. The agent keeps its own
descriptor of the file and reads the video through it, never by path.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidParams, ToolFailed
from ..identity import SessionUser, popen_kwargs, prefer_for_oom
from ..params import Params
from ..tools.desktop_recording import DEFAULT_FPS, DEFAULT_MAX_BYTES, DEFAULT_MAX_SECONDS
from ._desktop_input import Screen

FFMPEG = ("ffmpeg",)
_START_WAIT_S = 5.0
"""How long ffmpeg may take to write its first bytes before start answers."""
_STOP_WAIT_S = 10.0
"""How long ffmpeg may take to finish after SIGINT before it is killed."""
_FSIZE_SLACK = 1 << 20
"""The hard file-size limit past ffmpeg's own ``-fs``, which it may overshoot a little."""
_LOG_TAIL_BYTES = 2000
_POLL_S = 0.02


@dataclass
class _Recording:
    """One recording: ffmpeg, the agent's descriptor of its video, and its bounds."""

    process: subprocess.Popen[bytes]
    directory: str
    video_fd: int
    log_path: str
    fps: float
    max_bytes: int
    max_seconds: float
    started: float
    stopped: float | None = None
    exit_code: int | None = None
    ended_early: bool = False
    """ffmpeg had ended before it was asked to stop (killed, or a cap reached)."""


class RecordingTools:
    """Records the screen with ffmpeg; holds at most one recording at a time.

    Args:
        screen: The desktop's connection (its size).
        directory: Where each recording gets its private directory (the
            session's disk quota).
        env: ffmpeg's environment, DISPLAY included.
        user: Who ffmpeg runs as; None: the agent's own user.
        program: The recorder's command (tests put a stand-in for ffmpeg here).
    """

    def __init__(
        self,
        screen: Screen,
        *,
        directory: str,
        env: Mapping[str, str],
        user: SessionUser | None,
        program: Sequence[str] = FFMPEG,
    ) -> None:
        self._screen = screen
        self._directory = directory
        self._env = dict(env)
        self._user = user
        self._program = list(program)
        self._lock = threading.Lock()
        self._recording: _Recording | None = None

    def handlers(self) -> dict[str, Any]:
        """Each tool's handler, by the tool's own name."""
        return {
            "start_recording": self.start_recording,
            "stop_recording": self.stop_recording,
            "recording_read": self.recording_read,
        }

    def close(self) -> None:
        """Kill a running recording and drop its video."""
        with self._lock:
            recording, self._recording = self._recording, None
        if recording is not None:
            _end(recording, signal.SIGKILL)
            _drop(recording)

    # -- tools ----------------------------------------------------------------------

    def start_recording(self, params: Params) -> dict[str, Any]:
        """``vm.start_recording``: `fps`; the server's `max_bytes` and `max_seconds`."""
        raw = params.raw()
        fps = float(raw.get("fps") or DEFAULT_FPS)
        max_bytes = int(raw.get("max_bytes") or DEFAULT_MAX_BYTES)
        max_seconds = float(raw.get("max_seconds") or DEFAULT_MAX_SECONDS)
        with self._lock:
            current = self._recording
            if current is not None and current.stopped is None:
                return {**_started(current), "already_recording": True}
            if current is not None:
                _drop(current)  # a stopped one the server did not take
                self._recording = None
            self._recording = self._start(fps, max_bytes, max_seconds)
            return _started(self._recording)

    def stop_recording(self, params: Params) -> dict[str, Any]:
        """``vm.stop_recording``: end ffmpeg (SIGINT, so it finishes the video)."""
        with self._lock:
            recording = self._recording
            if recording is None:
                raise InvalidParams(
                    "no recording: start one with vm:start_recording (or a session config "
                    "with recording: true)"
                )
            if recording.stopped is None:
                ended_early = recording.process.poll() is not None
                recording.exit_code = _end(recording, signal.SIGINT)
                recording.stopped = time.monotonic()
                recording.ended_early = ended_early
            return self._summary(recording)

    def recording_read(self, params: Params) -> dict[str, Any]:
        """``vm.recording_read``: `offset`, `length` bytes of the stopped video; `discard`."""
        raw = params.raw()
        offset, length = int(raw.get("offset") or 0), int(raw.get("length") or 0)
        with self._lock:
            recording = self._recording
            if recording is None or recording.stopped is None:
                raise ToolFailed("no stopped recording to read")
            size = os.fstat(recording.video_fd).st_size
            data = os.pread(recording.video_fd, length, offset) if length else b""
            if raw.get("discard"):
                _drop(recording)
                self._recording = None
        return {
            "data": base64.b64encode(data).decode("ascii"),
            "offset": offset,
            "size": size,
            "eof": offset + len(data) >= size,
        }

    # -- ffmpeg -----------------------------------------------------------------------

    def _start(self, fps: float, max_bytes: int, max_seconds: float) -> _Recording:
        # The agent's own directory (root's, 0700 when the agent is root): nothing
        # the session makes can be in it, and the session cannot open what is.
        directory = tempfile.mkdtemp(prefix=".recording-", dir=self._directory)
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            video_fd = os.open(os.path.join(directory, "video.mp4"), flags, 0o600)
            log_path = os.path.join(directory, "ffmpeg.log")
            log_fd = os.open(log_path, flags, 0o600)
        except OSError:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        try:
            process = subprocess.Popen(
                self._argv(fps, max_bytes, max_seconds),
                stdin=subprocess.DEVNULL,
                stdout=video_fd,
                stderr=log_fd,
                cwd="/",
                env=self._env,
                start_new_session=True,
                **popen_kwargs(self._user),
            )
        except OSError as exc:
            os.close(video_fd)
            shutil.rmtree(directory, ignore_errors=True)
            raise ToolFailed(f"cannot start the screen recorder: {exc}") from None
        finally:
            os.close(log_fd)
        prefer_for_oom(process.pid, self._user)
        recording = _Recording(
            process, directory, video_fd, log_path, fps, max_bytes, max_seconds, time.monotonic()
        )
        deadline = time.monotonic() + _START_WAIT_S
        while os.fstat(video_fd).st_size == 0 and process.poll() is None:
            if time.monotonic() > deadline:
                break  # slow, not dead: it records on
            time.sleep(_POLL_S)
        if process.poll() is not None and os.fstat(video_fd).st_size == 0:
            log = _tail(log_path)
            _drop(recording)
            raise ToolFailed(
                f"the screen recorder ended at once (status {process.returncode}): {log}"
            )
        return recording

    def _argv(self, fps: float, max_bytes: int, max_seconds: float) -> list[str]:
        display = self._screen.display
        return [
            # A hard limit ffmpeg (and whatever the session makes of it) cannot raise.
            "prlimit",
            f"--fsize={max_bytes + _FSIZE_SLACK}",
            "--",
            *self._program,
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "x11grab",
            "-draw_mouse",
            "1",
            "-framerate",
            f"{fps:g}",
            "-video_size",
            f"{display.width}x{display.height}",
            "-i",
            self._env.get("DISPLAY", ":0"),
            # H.264 in 4:2:0 wants even sizes; a screen may be odd.
            "-vf",
            "crop=trunc(iw/2)*2:trunc(ih/2)*2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "30",
            "-pix_fmt",
            "yuv420p",
            # A key frame, hence a fragment on disk, every two seconds.
            "-g",
            str(max(1, round(2 * fps))),
            "-t",
            f"{max_seconds:g}",
            "-fs",
            str(max_bytes),
            "-movflags",
            "frag_keyframe+empty_moov+default_base_moof",
            "-f",
            "mp4",
            "pipe:1",
        ]

    def _summary(self, recording: _Recording) -> dict[str, Any]:
        size = os.fstat(recording.video_fd).st_size
        duration = (recording.stopped or time.monotonic()) - recording.started
        data: dict[str, Any] = {
            "recording": False,
            "size": size,
            "duration_s": round(duration, 3),
            "fps": recording.fps,
            "truncated": size >= recording.max_bytes or duration >= recording.max_seconds,
            "exit_code": recording.exit_code,
        }
        if recording.ended_early:
            data["ended_early"] = True
            data["log"] = _tail(recording.log_path)
        return data


def _started(recording: _Recording) -> dict[str, Any]:
    return {"recording": True, "fps": recording.fps}


def _end(recording: _Recording, first: signal.Signals) -> int | None:
    """Signal ffmpeg's group (`first`, then SIGKILL if it lingers); its exit status."""
    process = recording.process
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, first)
        try:
            process.wait(_STOP_WAIT_S if first != signal.SIGKILL else None)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def _drop(recording: _Recording) -> None:
    with contextlib.suppress(OSError):
        os.close(recording.video_fd)
    shutil.rmtree(recording.directory, ignore_errors=True)


def _tail(path: str) -> str:
    """The end of ffmpeg's log (the agent's own file)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
            return log.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""
