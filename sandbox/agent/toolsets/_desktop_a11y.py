"""The ``desktop`` toolset's ``vm.accessibility_tree``: the AT-SPI tree of the desktop.

The tree is read by `desktop.a11y_reader` (over `desktop.atspi_bus` and
`desktop.dbus_wire`), a ``python3`` of the session user:
the AT-SPI bus belongs to that user (D-Bus lets only the bus owner's uid in),
and the agent keeps out of anything the session's programs control. One reader
serves the session, started at the first call (starting python and reading
libatspi's names through gi costs more than a read): each call writes it one line of caps and reads
one line of answer, then checks and writes it out (`desktop.a11y`) here.

The reader is the session user's process, so that user can stop, trace or
replace it: each answer is read bounded in bytes and time, and a reader that
overruns either, answers anything but a tree, or says anything unasked is
killed, to be started afresh by the next call. One that is found dead is
restarted once within the call.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..capture import Outcome, OutputCollector, StreamCapture
from ..desktop import a11y, a11y_reader
from ..errors import ToolFailed, ToolTimeout
from ..identity import SessionUser, popen_kwargs, prefer_for_oom
from ..params import Params
from ..processes import kill_group, open_pidfd

DEFAULT_TIMEOUT_S = 10.0
MAX_TEXT_CHARS = 1000
"""Most characters of a node's name and of its text."""
_ANSWER_LIMIT = 32 << 20
"""Most bytes of the reader's JSON (10 000 nodes of ~3 KB): more is a broken reader."""
_STDERR_LIMIT = 4096
"""Most bytes of the reader's stderr kept per call."""
_STALE_STDERR_READS = 16
"""Most 64 KiB reads of stderr written between calls dropped before a call."""
# The reader stops walking this long before the call's deadline, to still answer.
_ANSWER_MARGIN_S = 1.0


class _Answer(StreamCapture):
    """The reader's stdout in one call: one line, and done early once over the cap."""

    def __init__(self) -> None:
        super().__init__(_ANSWER_LIMIT, sentinel=b"\n")

    @property
    def complete(self) -> bool:
        return super().complete or self.truncated


class _Aside(StreamCapture):
    """The reader's stderr in one call: what came with the answer (the pipe stays open)."""

    @property
    def complete(self) -> bool:
        return True


class _ReaderGone(Exception):
    """The reader exited, closed its stdout, or stopped reading its requests."""


class _Reader:
    """One running reader process, its pipes and its pidfd."""

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], user: SessionUser | None):
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd if os.path.isdir(cwd) else "/",
            env=env,
            start_new_session=True,
            **popen_kwargs(user),
        )
        prefer_for_oom(self.process.pid, user)
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self.stdin = self.process.stdin.fileno()
        self.stdout = self.process.stdout.fileno()
        self.stderr = self.process.stderr.fileno()
        # A reader that stops reading its requests must not block the agent.
        for fd in (self.stdin, self.stdout, self.stderr):
            os.set_blocking(fd, False)
        self.pidfd = open_pidfd(self.process.pid)
        self.stopped = False

    def idle_and_alive(self) -> bool:
        """Whether it still runs and has written nothing to stdout since its last answer."""
        watch = select.poll()
        watch.register(self.stdout, select.POLLIN)
        if self.pidfd is not None:
            watch.register(self.pidfd, select.POLLIN)
        return not watch.poll(0) and self.process.poll() is None

    def ask(self, caps: dict[str, Any], deadline: float) -> tuple[Outcome, _Answer, _Aside]:
        """Send `caps`; read the answer line until `deadline`.

        Raises:
            _ReaderGone: It took no request or ended without an answer line.
        """
        self._drop_stale_stderr()
        request = json.dumps(caps).encode() + b"\n"
        try:
            # A few hundred bytes: they fit an empty pipe, or the reader is not reading.
            if os.write(self.stdin, request) != len(request):
                raise _ReaderGone("took part of a request")
        except (BrokenPipeError, BlockingIOError) as exc:
            raise _ReaderGone(str(exc)) from None
        answer, aside = _Answer(), _Aside(_STDERR_LIMIT)
        collector = OutputCollector(
            self.stdout,
            self.stderr,
            answer,
            aside,
            exit_fd=self.pidfd,
            has_exited=lambda: self.process.poll() is not None,
        )
        outcome = collector.wait(deadline)
        if outcome is Outcome.EXITED:
            collector.drain(0.2)
        if outcome in (Outcome.EXITED, Outcome.CLOSED) and not answer.found:
            raise _ReaderGone(aside.text())
        return outcome, answer, aside

    def kill(self) -> None:
        """SIGKILL its process group (safe from any thread, at any time)."""
        if self.process.returncode is None:
            kill_group(self.process.pid)

    def stop(self) -> None:
        """Kill it, reap it and close its pipes."""
        if self.stopped:
            return
        self.stopped = True
        self.kill()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        if self.pidfd is not None:
            os.close(self.pidfd)

    def _drop_stale_stderr(self) -> None:
        for _ in range(_STALE_STDERR_READS):
            try:
                if not os.read(self.stderr, 1 << 16):
                    return
            except BlockingIOError:
                return


def reader_argv() -> list[str]:
    """How the reader is run: as a script, its modules beside it (not ``-I``, which
    would leave its directory off ``sys.path``), the session's environment
    variables and user site ignored."""
    return [sys.executable, "-E", "-s", a11y_reader.__file__]


class A11yTools:
    """Reads the accessibility tree as the session user, through one long-lived reader.

    Args:
        cwd: Where the reader starts (the session user's home).
        env: The session's environment (its D-Bus session bus address, DISPLAY).
        user: Who the reader runs as; None: the agent's own user.
    """

    def __init__(self, *, cwd: str, env: Mapping[str, str], user: SessionUser | None) -> None:
        self._cwd = cwd
        self._env = dict(env)
        self._user = user
        # One call at a time talks to the reader.
        self._lock = threading.Lock()
        self._reader: _Reader | None = None
        self._closed = False

    def handlers(self) -> dict[str, Any]:
        """Each tool's handler, by the tool's own name."""
        return {"accessibility_tree": self.accessibility_tree}

    def close(self) -> None:
        """Stop the reader; later calls fail."""
        self._closed = True
        reader = self._reader
        if reader is not None:
            reader.kill()  # ends a call in progress at once
        with self._lock:
            self._retire()

    def accessibility_tree(self, params: Params) -> dict[str, Any]:
        """``vm.accessibility_tree``: the tree within `max_depth`, `max_nodes`, `max_children`."""
        raw = params.raw()
        timeout = params.seconds("timeout", default=DEFAULT_TIMEOUT_S)
        caps = {
            "max_depth": raw["max_depth"],
            "max_nodes": raw["max_nodes"],
            "max_children": raw["max_children"],
            "max_text": MAX_TEXT_CHARS,
            "showing_only": raw["showing_only"],
            "deadline_s": max(0.1, timeout - _ANSWER_MARGIN_S),
        }
        started = time.monotonic()
        deadline = started + timeout
        if not self._lock.acquire(timeout=timeout):
            raise ToolTimeout(f"the accessibility tree was not read within {timeout:g}s")
        try:
            answer, stderr = self._read(caps, timeout, deadline)
            try:
                tree = a11y.parse_answer(
                    answer,
                    max_depth=caps["max_depth"],
                    max_nodes=caps["max_nodes"],
                    max_text=MAX_TEXT_CHARS,
                )
            except a11y.ReaderError as exc:
                # Not a tree: the next call gets a new reader, whatever went wrong in this one.
                self._retire()
                data = {"stderr": stderr}
                if exc.stage == "bus":
                    raise ToolFailed(f"cannot reach the AT-SPI bus: {exc}", data=data) from None
                raise ToolFailed(f"cannot read the accessibility tree: {exc}", data=data) from None
        finally:
            self._lock.release()
        form: str = raw["format"]
        return {
            "format": form,
            "tree": a11y.to_xml(tree) if form == "xml" else a11y.linearize(tree),
            "nodes": tree.nodes,
            "truncated": list(tree.truncated),
            "read_ms": round((time.monotonic() - started) * 1000, 1),
        }

    def _read(self, caps: dict[str, Any], timeout: float, deadline: float) -> tuple[bytes, str]:
        """Ask the reader (restarted once if it is gone); its answer line and its stderr."""
        for attempt in range(2):
            reader = self._running_reader()
            try:
                outcome, answer, aside = reader.ask(caps, deadline)
            except _ReaderGone as gone:
                self._retire()
                if attempt or self._closed or time.monotonic() >= deadline:
                    raise ToolFailed(
                        "the accessibility reader exited without answering",
                        data={"stderr": str(gone)},
                    ) from None
                continue
            errors = aside.text()
            if outcome is not Outcome.COMPLETE or answer.trailer:
                # Timed out, over the cap, exited, or wrote past its line: never reused.
                self._retire()
            if outcome is Outcome.DEADLINE:
                raise ToolTimeout(
                    f"the accessibility tree was not read within {timeout:g}s",
                    data={"stderr": errors},
                )
            if answer.truncated:
                raise ToolFailed(
                    f"the accessibility reader wrote more than {_ANSWER_LIMIT >> 20} MiB",
                    data={"stderr": errors},
                )
            return bytes(answer.output), errors
        raise AssertionError("unreachable")

    def _running_reader(self) -> _Reader:
        """The session's reader, started if there is none or it is not fit to ask."""
        if self._closed:
            raise ToolFailed("the desktop is closing")
        if self._reader is not None and not self._reader.idle_and_alive():
            self._retire()
        if self._reader is None:
            self._reader = _Reader(reader_argv(), self._cwd, self._env, self._user)
        return self._reader

    def _retire(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stop()
