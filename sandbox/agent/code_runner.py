"""Running a program text in a fresh process, as ``code.execute`` does."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass

from .capture import Outcome, OutputCollector, StreamCapture
from .identity import SessionUser, acting_as, popen_kwargs, prefer_for_oom
from .params import encode_text
from .processes import exit_status, kill_group, open_pidfd

LANGUAGES = ("bash", "python")
# How long output is awaited after the program exits while an orphan it left
# behind still holds the pipes open.
_EXIT_DRAIN_S = 0.1


@dataclass(frozen=True)
class CodeResult:
    """How one program run ended.

    Attributes:
        stdout: What it printed on stdout (at most the output limit).
        stderr: What it printed on stderr (at most the output limit).
        return_code: Its exit status (128 + N for death by signal N), or None when
            it was killed at its timeout.
        execution_time_ms: Wall time from start to exit.
        truncated: Whether either stream lost output to the limit.
        timed_out: Whether it ran past its timeout and was killed.
    """

    stdout: str
    stderr: str
    return_code: int | None
    execution_time_ms: float
    truncated: bool
    timed_out: bool

    def data(self) -> dict[str, object]:
        """The ``data`` object of a ``code.execute`` answer (or of its timeout error)."""
        return {
            "stdout": self.stdout,
            "stderr": self.stderr,
            "return_code": self.return_code,
            "execution_time_ms": self.execution_time_ms,
            "truncated": self.truncated,
        }


class CodeRunner:
    """Runs programs, each in its own process group, concurrently if asked to.

    Args:
        cwd: Where programs run.
        scratch_dir: Where program texts are written (and removed after the run).
        env: The programs' environment (without the agent's token).
        output_limit: Most bytes kept of each of a program's stdout and stderr.
        user: Who the programs run as (and own their texts); None: the agent's user.
    """

    def __init__(
        self,
        *,
        cwd: str,
        scratch_dir: str,
        env: Mapping[str, str],
        output_limit: int,
        user: SessionUser | None = None,
    ) -> None:
        self._user = user
        self._cwd = cwd
        self._scratch_dir = scratch_dir
        self._env = dict(env)
        self._limit = output_limit

    def run(self, code: str, language: str, timeout: float) -> CodeResult:
        """Run `code` as a `language` program for at most `timeout` seconds.

        Raises:
            ValueError: `language` is not one of `LANGUAGES`.
        """
        suffix = {"python": ".py", "bash": ".sh"}.get(language)
        if suffix is None:
            raise ValueError(f"unsupported language {language!r}")
        # The program's user must read its text: it writes it, in its directory.
        with acting_as(self._user):
            os.makedirs(self._scratch_dir, mode=0o700, exist_ok=True)
            fd, path = tempfile.mkstemp(prefix="code-", suffix=suffix, dir=self._scratch_dir)
        try:
            with os.fdopen(fd, "wb") as script:
                script.write(encode_text(code))
            return self._run_file(self._argv(language, path), timeout)
        finally:
            with acting_as(self._user), contextlib.suppress(OSError):
                os.unlink(path)

    def _argv(self, language: str, path: str) -> list[str]:
        if language == "bash":
            return ["bash", "--noprofile", "--norc", path]
        # The user's python3 (PATH may point into a virtualenv), else the agent's own.
        python = shutil.which("python3", path=self._env.get("PATH")) or sys.executable
        # Unbuffered, so output printed before a timeout kill is not lost.
        return [python, "-u", path]

    def _run_file(self, argv: list[str], timeout: float) -> CodeResult:
        started = time.monotonic()
        deadline = started + timeout
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self._cwd if os.path.isdir(self._cwd) else "/",
            env=self._env,
            start_new_session=True,
            **popen_kwargs(self._user),
        )
        prefer_for_oom(process.pid, self._user)
        assert process.stdout is not None
        assert process.stderr is not None
        pidfd = open_pidfd(process.pid)
        collector = OutputCollector(
            process.stdout.fileno(),
            process.stderr.fileno(),
            StreamCapture(self._limit),
            StreamCapture(self._limit),
            exit_fd=pidfd,
            has_exited=lambda: process.poll() is not None,
        )
        timed_out = False
        try:
            outcome = collector.wait(deadline)
            if outcome is Outcome.COMPLETE:
                # Both pipes closed; the process may still be finishing (or may
                # have closed them and kept running).
                timed_out = not collector.wait_exit(deadline)
            elif outcome is Outcome.DEADLINE:
                timed_out = True
            elapsed_ms = (time.monotonic() - started) * 1000
            if outcome is Outcome.EXITED:
                collector.drain(_EXIT_DRAIN_S)  # output left in pipes an orphan holds open
        finally:
            # Kill what is left of its group (all of it on a timeout) while the
            # unreaped process still holds its pid, so the group id cannot be reused.
            kill_group(process.pid)
            if process.poll() is None:
                process.kill()  # it left its own group
            process.wait()
            if timed_out:
                collector.drain(_EXIT_DRAIN_S)
            process.stdout.close()
            process.stderr.close()
            if pidfd is not None:
                os.close(pidfd)
        returncode = process.returncode
        return CodeResult(
            stdout=collector.stdout.text(),
            stderr=collector.stderr.text(),
            return_code=None if timed_out else exit_status(returncode),
            execution_time_ms=round(elapsed_ms, 3),
            truncated=collector.truncated,
            timed_out=timed_out,
        )
