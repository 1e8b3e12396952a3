"""The desktop: Xvfb, the window manager, and the agent's connection to them.

Xvfb is started first (by `early` before the agent even loads, in the image),
``-displayfd`` tells when it accepts connections, and the agent connects and
starts the window manager. `Desktop.start` returns then, so ``/health``
answers once the screen can be captured; the window manager needs another
~0.1-0.2 s to take over the screen (it owns the ``WM_S0`` selection then), and
`Desktop.wait_until_managed` makes the tools that need it (input, programs)
wait for that, which in practice they never do: an agent looks first.

When the environment names a session D-Bus (``DBUS_SESSION_BUS_ADDRESS``, a
``unix:path=`` the image sets), `Desktop.start` also starts its
``dbus-daemon`` as the session user, without waiting: `wait_until_managed`
waits for it too, so a program launched through the tools finds the bus. The
bus costs ~2 MB; AT-SPI's bus launcher and registry are D-Bus activated on
it, so they start only when a GTK program or ``vm.accessibility_tree`` first
asks for them, and an idle desktop pays nothing for them.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ..identity import SessionUser, argv_as
from .early import XVFB_ENV, spawn, spawn_xvfb
from .xlib import XDisplay, XUnavailable

DEFAULT_SIZE = (1280, 800)
MIN_SIZE = (320, 240)
MAX_SIZE = (7680, 4320)
_DEFAULT_BACKGROUND = 0x2E4A62
_START_TIMEOUT_S = 15.0
_POLL_S = 0.002
_STOP_GRACE_S = 1.0
SESSION_BUS_ENV = "DBUS_SESSION_BUS_ADDRESS"


class DesktopError(RuntimeError):
    """The desktop could not be started."""


@dataclass(frozen=True)
class DesktopSettings:
    """How the desktop runs, from the container's environment.

    Attributes:
        display: The X display (``DISPLAY``, default ``:0``).
        size: Screen width and height (``SANDBOX_SCREEN_SIZE=WxH``).
        manage: Start Xvfb and the window manager (``SANDBOX_DESKTOP_MANAGE``,
            default on); off, the agent uses a display that is already running.
        window_manager: The window manager's command (``SANDBOX_DESKTOP_WM``,
            default ``openbox``; empty for none).
        background: The root window's colour as 0xRRGGBB.
        started_xvfb: Pid and ``-displayfd`` pipe of an Xvfb `early` started
            (``SANDBOX_DESKTOP_XVFB``), adopted instead of starting one.
    """

    display: str = ":0"
    size: tuple[int, int] = DEFAULT_SIZE
    manage: bool = True
    window_manager: tuple[str, ...] = ("openbox",)
    background: int = _DEFAULT_BACKGROUND
    started_xvfb: tuple[int, int] | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> DesktopSettings:
        """Read the settings from `environ`.

        Raises:
            DesktopError: ``SANDBOX_SCREEN_SIZE`` is malformed or out of bounds.
        """
        raw_size = environ.get("SANDBOX_SCREEN_SIZE", "").strip()
        return cls(
            display=environ.get("DISPLAY") or ":0",
            size=parse_size(raw_size) if raw_size else DEFAULT_SIZE,
            manage=environ.get("SANDBOX_DESKTOP_MANAGE", "1").strip().lower()
            not in ("0", "false", "no", "off"),
            window_manager=tuple(environ.get("SANDBOX_DESKTOP_WM", "openbox").split()),
            started_xvfb=_pid_and_fd(environ.get(XVFB_ENV, "")),
        )


def _pid_and_fd(text: str) -> tuple[int, int] | None:
    pid, _, fd = text.partition(":")
    return (int(pid), int(fd)) if pid.isdigit() and fd.isdigit() else None


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x800"`` -> ``(1280, 800)``, within `MIN_SIZE` and `MAX_SIZE`.

    Raises:
        DesktopError: Not ``WxH`` or out of bounds.
    """
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise DesktopError(f"screen size {text!r} is not WIDTHxHEIGHT, e.g. 1280x800")
    size = (int(width), int(height))
    if not all(
        low <= value <= high for low, value, high in zip(MIN_SIZE, size, MAX_SIZE, strict=True)
    ):
        raise DesktopError(
            f"screen size {text!r} is out of bounds: {MIN_SIZE[0]}..{MAX_SIZE[0]} x "
            f"{MIN_SIZE[1]}..{MAX_SIZE[1]}"
        )
    return size


class Desktop:
    """A running desktop and the connection to it.

    Args:
        settings: What to start.
        env: Environment of Xvfb and the window manager.
        user: Who Xvfb and the window manager run as (None: this process's user).
    """

    def __init__(
        self, settings: DesktopSettings, env: Mapping[str, str], *, user: SessionUser | None = None
    ) -> None:
        self.settings = settings
        self._user = user
        self._env = {key: value for key, value in env.items() if key != XVFB_ENV}
        self._env["DISPLAY"] = settings.display
        self._children: list[_Child] = []
        self._window_manager: _Child | None = None
        self._managed = not (settings.manage and settings.window_manager)
        self._display: XDisplay | None = None
        self._bus_ready_fd: int | None = None
        self._bus_lock = threading.Lock()

    @property
    def display(self) -> XDisplay:
        """The connection (after `start`)."""
        if self._display is None:
            raise RuntimeError("the desktop is not started")
        return self._display

    def start(self) -> None:
        """Start (or adopt) Xvfb, connect, and start the window manager.

        Raises:
            DesktopError: Xvfb did not come up in time, or a program is missing.
        """
        deadline = time.monotonic() + _START_TIMEOUT_S
        try:
            if self.settings.manage:
                self._start_xvfb(deadline)
            self._display = self._connect(deadline)
            if self.settings.manage:
                self._display.set_background(self.settings.background)
                if self.settings.window_manager:
                    self._start_window_manager()
                self._start_session_bus()
        except BaseException:
            self.close()
            raise

    def wait_until_managed(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Return once the window manager has taken over the screen.

        Raises:
            DesktopError: It exited, or did not take over within `timeout`.
        """
        self._wait_for_session_bus(timeout)
        if self._managed:
            return
        wm = self._window_manager
        assert wm is not None
        name = self.settings.window_manager[0]
        deadline = time.monotonic() + timeout
        while self.display.selection_owner("WM_S0") == 0:
            status = wm.exit_status()
            if status is not None:
                raise DesktopError(f"the window manager {name} exited with status {status}")
            if time.monotonic() >= deadline:
                raise DesktopError(f"the window manager {name} did not start in time")
            time.sleep(_POLL_S)
        self._managed = True

    def reconnect(self) -> XDisplay:
        """A new connection in place of a broken one (X lets any client kill another's).

        Raises:
            DesktopError: The display does not answer (Xvfb itself is gone).
        """
        old, self._display = self._display, None
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        try:
            self._display = XDisplay(self.settings.display)
        except XUnavailable as exc:
            # Not restarted: a session that killed its own X server keeps the
            # wreck (as with any program it kills), and says so on every call.
            raise DesktopError(
                f"the X display died and does not come back ({exc}); "
                "open a new session for a working desktop"
            ) from None
        return self._display

    def close(self) -> None:
        """Disconnect and stop what `start` started; safe to call twice."""
        display, self._display = self._display, None
        if display is not None:
            with contextlib.suppress(Exception):
                display.close()
        children, self._children = self._children, []
        for child in reversed(children):
            child.stop()
        ready_fd, self._bus_ready_fd = self._bus_ready_fd, None
        if ready_fd is not None:
            os.close(ready_fd)

    def _start_xvfb(self, deadline: float) -> None:
        if self.settings.started_xvfb is not None:
            pid, read_fd = self.settings.started_xvfb
        else:
            width, height = self.settings.size
            try:
                pid, read_fd = spawn_xvfb(
                    self.settings.display, width, height, self._env, prefix=self._prefix()
                )
            except OSError as exc:
                raise DesktopError(f"cannot run Xvfb: {exc}") from None
        xvfb = _Child(pid)
        self._children.append(xvfb)
        try:
            # Xvfb writes the display number once it accepts connections, and
            # the pipe ends without it if Xvfb dies first.
            ready = _read_line(read_fd, deadline)
        finally:
            os.close(read_fd)
        if not ready:
            status = xvfb.exit_status(wait=_STOP_GRACE_S)
            if status is None:
                raise DesktopError("Xvfb did not start in time")
            raise DesktopError(
                f"Xvfb exited with status {status} (its messages are in the container log)"
            )

    def _prefix(self) -> list[str]:
        # The session user's programs, like everything the user's code starts:
        # X lets any client disturb any other anyway, so running the X server
        # apart from the user's code would protect nothing (see README).
        return argv_as(self._user, [])

    def _connect(self, deadline: float) -> XDisplay:
        while True:
            try:
                return XDisplay(self.settings.display)
            except XUnavailable as exc:
                if time.monotonic() >= deadline or self.settings.manage:
                    raise DesktopError(str(exc)) from None
            time.sleep(0.05)

    def _start_window_manager(self) -> None:
        command = list(self.settings.window_manager)
        try:
            pid = spawn([*self._prefix(), *command], self._env)
        except OSError as exc:
            raise DesktopError(f"cannot run the window manager {command[0]}: {exc}") from None
        self._window_manager = _Child(pid)
        self._children.append(self._window_manager)

    def _start_session_bus(self) -> None:
        """Start the session D-Bus the environment names, if any (see the module doc)."""
        address = self._env.get(SESSION_BUS_ENV, "")
        if not address.startswith("unix:path="):
            return  # none, or one the image does not make here
        read_fd, write_fd = os.pipe()
        command = [
            *self._prefix(),
            "dbus-daemon",
            "--session",
            "--nofork",
            "--nopidfile",
            f"--address={address}",
            f"--print-address={write_fd}",
        ]
        try:
            pid = spawn(command, self._env, keep_fd=write_fd)
        except OSError as exc:
            os.close(read_fd)
            # The desktop works without it; only the accessibility tree says why not.
            print(f"sandbox-agent: cannot start the session D-Bus: {exc}", file=sys.stderr)
            return
        finally:
            os.close(write_fd)
        self._children.append(_Child(pid))
        self._bus_ready_fd = read_fd

    def _wait_for_session_bus(self, timeout: float) -> None:
        """Return once the session D-Bus accepts connections (or has failed: said once)."""
        if self._bus_ready_fd is None:
            return
        with self._bus_lock:  # tools run in threads: one waits, the others wait for it
            read_fd, self._bus_ready_fd = self._bus_ready_fd, None
            if read_fd is None:
                return
            try:
                if not _read_line(read_fd, time.monotonic() + timeout):
                    print("sandbox-agent: the session D-Bus did not start", file=sys.stderr)
            finally:
                os.close(read_fd)


class _Child:
    """A process this one started (by pid, reaped with waitpid)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._status: int | None = None

    def exit_status(self, wait: float = 0.0) -> int | None:
        """Its exit status once it has ended (128 + N for signal N), else None."""
        deadline = time.monotonic() + wait
        while self._status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self._status = -1  # reaped elsewhere: gone all the same
                break
            if pid:
                code = os.waitstatus_to_exitcode(status)
                self._status = 128 - code if code < 0 else code
                break
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.01)
        return self._status

    def stop(self) -> None:
        """SIGTERM its process group, SIGKILL after a grace period, and reap it."""
        if self.exit_status() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        if self.exit_status(wait=_STOP_GRACE_S) is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self.exit_status(wait=_STOP_GRACE_S)


def _read_line(fd: int, deadline: float) -> bool:
    """Wait for a full line on `fd`; False at end of file or at the deadline."""
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return False
        chunk = os.read(fd, 64)
        if not chunk:
            return False
        data += chunk
    return True
