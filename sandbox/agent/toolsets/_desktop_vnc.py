"""The ``desktop`` toolset's ``vnc`` stream: the screen over RFB for the ``/ui`` live view.

Nothing runs until a viewer connects: a cold start and an idle session are as
without it. Each viewer (``GET /stream/vnc``, see `handler`) gets an x11vnc of
its own in inetd mode, which speaks RFB on its standard input and output; the
agent hands it the upgraded connection itself, so no byte of the view passes
through the agent, and x11vnc ends when the connection does (or after
`max_seconds`, when the agent kills it).

x11vnc runs as the session user, like Xvfb, whose screen it reads, and not as
the agent: the session can see its own screen anyway, and whatever it does to
an x11vnc of its own uid (trace it, replace it) gains it nothing the agent
holds. It also gains no way to send input past the viewer's wishes: the
server's bridge, not this x11vnc, is what drops a view-only viewer's input
(`sandbox/server/rfb.py`); ``-viewonly`` here is the second lock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Mapping, Sequence

from ..errors import InvalidParams, ToolFailed, Unavailable
from ..identity import SessionUser, popen_kwargs, prefer_for_oom
from ..tools.desktop_vnc import MAX_SECONDS, MAX_VIEWERS

X11VNC = ("x11vnc",)


class VncViewers:
    """Starts one x11vnc per viewer on the desktop's display, at most `max_viewers`.

    Args:
        env: x11vnc's environment, DISPLAY included.
        user: Who x11vnc runs as; None: the agent's own user.
        program: The VNC server's command (tests put a stand-in here).
        max_viewers: Most viewers at once.
    """

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        user: SessionUser | None,
        program: Sequence[str] = X11VNC,
        max_viewers: int = MAX_VIEWERS,
    ) -> None:
        self._env = dict(env)
        self._user = user
        self._program = list(program)
        self._max_viewers = max_viewers
        self._slots = threading.BoundedSemaphore(max_viewers)
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._closed = False

    def open(self, query: Mapping[str, str]) -> _Viewer:
        """Reserve a viewer: `view_only` (``1``, the default, or ``0``), `max_seconds`.

        Raises:
            InvalidParams: A field is malformed.
            Unavailable: `max_viewers` viewers watch already.
        """
        view_only = query.get("view_only", "1")
        if view_only not in ("0", "1"):
            raise InvalidParams("view_only: must be 0 or 1", field="view_only")
        try:
            max_seconds = float(query.get("max_seconds", MAX_SECONDS))
        except ValueError:
            max_seconds = -1.0
        if not 0 < max_seconds <= MAX_SECONDS:
            raise InvalidParams(
                f"max_seconds: must be a number in (0, {MAX_SECONDS:g}]", field="max_seconds"
            )
        if self._closed or not self._slots.acquire(blocking=False):
            raise Unavailable(f"{self._max_viewers} viewers already watch this screen")
        return _Viewer(self, view_only == "1", max_seconds)

    def argv(self, view_only: bool) -> list[str]:
        """x11vnc's command line: RFB on stdin/stdout, no password (the server
        authenticates viewers), no rc file, no remote control, no commands."""
        argv = [
            *self._program,
            "-inetd",
            "-display",
            self._env.get("DISPLAY", ":0"),
            "-nopw",
            "-norc",
            "-noremote",
            "-nocmds",
            "-nolookup",
            "-noxrecord",
            "-nowf",
            "-ncache",
            "0",
            "-quiet",
        ]
        return [*argv, "-viewonly"] if view_only else argv

    def serve(self, connection: socket.socket, view_only: bool, max_seconds: float) -> None:
        """Run x11vnc on `connection` until it ends, or kill it after `max_seconds`."""
        connection.setblocking(True)  # x11vnc gets the very descriptor
        try:
            process = subprocess.Popen(
                self.argv(view_only),
                stdin=connection.fileno(),
                stdout=connection.fileno(),
                stderr=subprocess.DEVNULL,
                cwd="/",
                env=self._env,
                start_new_session=True,
                **popen_kwargs(self._user),
            )
        except OSError as exc:
            raise ToolFailed(f"cannot start the VNC server: {exc}") from None
        with self._lock:
            self._running.add(process)
        prefer_for_oom(process.pid, self._user)
        try:
            process.wait(max_seconds)
        except subprocess.TimeoutExpired:
            pass
        finally:
            _kill(process)
            with self._lock:
                self._running.discard(process)

    def release(self) -> None:
        """Free one viewer's place."""
        self._slots.release()

    def close(self) -> None:
        """Kill every x11vnc and refuse new viewers."""
        self._closed = True
        with self._lock:
            running = list(self._running)
        for process in running:
            _kill(process)


class _Viewer:
    """One reserved viewer (a `registry.Stream`)."""

    def __init__(self, viewers: VncViewers, view_only: bool, max_seconds: float) -> None:
        self._viewers = viewers
        self.view_only = view_only
        self.max_seconds = max_seconds
        self._released = False

    def run(self, connection: socket.socket) -> None:
        self._viewers.serve(connection, self.view_only, self.max_seconds)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._viewers.release()


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill x11vnc's process group (whatever it started too) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
