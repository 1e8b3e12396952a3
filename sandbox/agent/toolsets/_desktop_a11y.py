"""The ``desktop`` toolset's ``vm.accessibility_tree``: the AT-SPI tree of the desktop.

The tree is read by `desktop.a11y_reader`, run as a new ``python3`` as the
session user: the AT-SPI bus belongs to that user (D-Bus lets only the bus
owner's uid in), and the agent keeps out of anything the session's programs
control. The reader gets the caps on stdin; its answer is read bounded in bytes
and time, then checked and written out (`desktop.a11y`) here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
# The reader stops walking this long before the call's deadline, to still answer.
_ANSWER_MARGIN_S = 1.0


class A11yTools:
    """Reads the accessibility tree as the session user.

    Args:
        cwd: Where the reader starts (the session user's home).
        env: The session's environment (its D-Bus session bus address, DISPLAY).
        user: Who the reader runs as; None: the agent's own user.
    """

    def __init__(self, *, cwd: str, env: Mapping[str, str], user: SessionUser | None) -> None:
        self._cwd = cwd
        self._env = dict(env)
        self._user = user

    def handlers(self) -> dict[str, Any]:
        """Each tool's handler, by the tool's own name."""
        return {"accessibility_tree": self.accessibility_tree}

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
        answer, stderr = self._read(caps, timeout)
        try:
            tree = a11y.parse_answer(
                answer,
                max_depth=caps["max_depth"],
                max_nodes=caps["max_nodes"],
                max_text=MAX_TEXT_CHARS,
            )
        except a11y.ReaderError as exc:
            data = {"stderr": stderr}
            if exc.stage == "bus":
                raise ToolFailed(f"cannot reach the AT-SPI bus: {exc}", data=data) from None
            raise ToolFailed(f"cannot read the accessibility tree: {exc}", data=data) from None
        form: str = raw["format"]
        return {
            "format": form,
            "tree": a11y.to_xml(tree) if form == "xml" else a11y.linearize(tree),
            "nodes": tree.nodes,
            "truncated": list(tree.truncated),
            "read_ms": round((time.monotonic() - started) * 1000, 1),
        }

    def _read(self, caps: dict[str, Any], timeout: float) -> tuple[bytes, str]:
        """Run the reader; its stdout (the answer) and the start of its stderr."""
        deadline = time.monotonic() + timeout
        process = subprocess.Popen(
            [sys.executable, "-I", a11y_reader.__file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self._cwd if os.path.isdir(self._cwd) else "/",
            env=self._env,
            start_new_session=True,
            **popen_kwargs(self._user),
        )
        prefer_for_oom(process.pid, self._user)
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        pidfd = open_pidfd(process.pid)
        try:
            # A few hundred bytes: the pipe holds them whatever the reader does.
            process.stdin.write(json.dumps(caps).encode())
            process.stdin.close()
            stdout, stderr = StreamCapture(_ANSWER_LIMIT), StreamCapture(_STDERR_LIMIT)
            collector = OutputCollector(
                process.stdout.fileno(),
                process.stderr.fileno(),
                stdout,
                stderr,
                exit_fd=pidfd,
                has_exited=lambda: process.poll() is not None,
            )
            outcome = collector.wait(deadline)
            if outcome is Outcome.EXITED:
                collector.drain(0.2)
        finally:
            kill_group(process.pid)
            if process.poll() is None:
                process.kill()
            process.wait()
            process.stdout.close()
            process.stderr.close()
            if pidfd is not None:
                os.close(pidfd)
        errors = stderr.output.decode("utf-8", "replace")
        if outcome is Outcome.DEADLINE:
            raise ToolTimeout(
                f"the accessibility tree was not read within {timeout:g}s", data={"stderr": errors}
            )
        if stdout.truncated:
            raise ToolFailed(
                f"the accessibility reader wrote more than {_ANSWER_LIMIT >> 20} MiB",
                data={"stderr": errors},
            )
        return bytes(stdout.output), errors
