"""One long-lived bash whose cwd and exported variables persist between commands.

Command text never travels through the shell's stdin, where an unbalanced quote
would swallow whatever the agent writes next. Each command is written to a file
in the agent's private state directory and the agent writes one fixed control
line to stdin, which sources that file at top level (so ``cd`` and ``export``
persist) with stdin from /dev/null (so ``cat`` cannot eat the control stream),
then prints a per-call random sentinel, ``$?`` and ``$PWD`` on stdout and the
sentinel on stderr. The output of the command is exactly what precedes the
sentinels.

A command that times out is stopped without losing the shell: the agent sends
the shell SIGUSR1, whose trap (installed at startup) arms a DEBUG trap that makes
bash return from the sourced file before its next command, and SIGKILLs every
process the shell started during the command. The rest of the command text
never runs and the shell prints its sentinel as usual. (Returning from a SIGINT
trap instead would leave bash's signal state corrupt when it interrupts a wait.)
The next control line disarms the DEBUG trap again.

After each command the control line also snapshots the exported environment
with ``export -p`` (a builtin: no fork). When the shell dies (``exit``) or must be
killed (stuck in a builtin loop past its timeout) a new one starts and sources
that snapshot and returns to the last known cwd, so the caller sees the same
state minus unexported variables, functions and options.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from .capture import Outcome, OutputCollector, StreamCapture
from .errors import ToolFailed, ToolTimeout
from .identity import SessionUser, acting_as, popen_kwargs
from .params import encode_text
from .processes import boot_ticks, exit_status, kill_group, kill_tree, open_pidfd

# After a timeout, how long the shell gets to print its sentinel once the
# command's processes are killed, before the shell itself is declared stuck.
KILL_GRACE_S = 0.5
# A sweep during the grace period catches what the command started after the kill.
_SWEEP_INTERVAL_S = 0.05
# How long output that a dying shell left in its pipes is awaited.
_EXIT_DRAIN_S = 0.1
_RESTORE_TIMEOUT_S = 5.0


# Bash only: the DEBUG trap returns 2 inside a sourced file (or a function), which
# under extdebug makes bash return from it; at top level it lets commands run.
_ABORT_TRAP = "if [[ -n ${BASH_SOURCE[0]-} ]]; then builtin test x -eq 1 2>/dev/null; fi"
# Runs on SIGUSR1; notes whether extdebug was on so disarming restores it.
_ARM_TRAP = (
    "if [[ :$BASHOPTS: == *:extdebug:* ]]; then __sbx_armed=2; else __sbx_armed=1; fi; "
    f"builtin shopt -s extdebug; builtin trap -- {shlex.quote(_ABORT_TRAP)} DEBUG"
)
# The shell also makes itself (and so every command) the OOM killer's first
# pick, before the agent: a builtin, so no process and no cost.
_INIT_LINE = (
    f"builtin trap -- {shlex.quote(_ARM_TRAP)} USR1; "
    "builtin echo 1000 2>/dev/null >/proc/self/oom_score_adj\n"
).encode("ascii")
_DISARM = (
    "if [[ -n ${__sbx_armed-} ]]; then builtin trap - DEBUG; "
    "[[ $__sbx_armed == 2 ]] || builtin shopt -u extdebug; builtin unset -v __sbx_armed; fi; "
)


@dataclass(frozen=True)
class ShellResult:
    """How one command ended.

    Attributes:
        stdout: What the command printed on stdout (at most the output limit).
        stderr: What it printed on stderr (at most the output limit).
        exit_code: Its exit status, or None when it was killed at its timeout.
        cwd: The persistent shell's working directory afterwards.
        truncated: Whether either stream lost output to the limit.
        shell_restarted: Whether the shell was replaced (it exited or was stuck).
        timed_out: Whether the command ran past its timeout and was killed.
    """

    stdout: str
    stderr: str
    exit_code: int | None
    cwd: str
    truncated: bool
    shell_restarted: bool
    timed_out: bool


class _Bash:
    """One bash process and the descriptors the agent talks to it through."""

    def __init__(self, cwd: str, env: Mapping[str, str], user: SessionUser | None) -> None:
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(env),
            # Its own group, so a kill of the whole group never reaches the agent.
            start_new_session=True,
            **popen_kwargs(user),
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self.stdin_fd = self.process.stdin.fileno()
        self.stdout_fd = self.process.stdout.fileno()
        self.stderr_fd = self.process.stderr.fileno()
        self.pidfd = open_pidfd(self.process.pid)
        self.killed = False
        # Queued before any command; a pipe this fresh has room, so this never blocks.
        os.write(self.stdin_fd, _INIT_LINE)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def interrupt(self) -> None:
        """Make the shell abandon the command it is sourcing (see the module docstring)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGUSR1)

    def collector(self, stdout: StreamCapture, stderr: StreamCapture) -> OutputCollector:
        return OutputCollector(
            self.stdout_fd,
            self.stderr_fd,
            stdout,
            stderr,
            exit_fd=self.pidfd,
            has_exited=lambda: not self.alive(),
        )

    def kill(self) -> None:
        """Kill the shell and everything it started, and release its descriptors."""
        if self.killed:
            return
        self.killed = True
        if self.alive():
            kill_tree(self.pid)
        # Also after it exited: orphans it left keep its group (and so its pid) alive.
        kill_group(self.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class PersistentShell:
    """The one bash of an agent; commands run in it one at a time.

    Args:
        home: The first working directory.
        state_dir: A private directory for command files and the state snapshot.
        env: The shell's initial environment (without the agent's token).
        output_limit: Most bytes kept of each of a command's stdout and stderr.
        kill_grace: Seconds a timed-out command's shell gets to recover before it
            is replaced.
        user: Who the shell runs as (and owns `state_dir`); None: the agent's user.
    """

    def __init__(
        self,
        *,
        home: str,
        state_dir: str,
        env: Mapping[str, str],
        output_limit: int,
        kill_grace: float = KILL_GRACE_S,
        user: SessionUser | None = None,
    ) -> None:
        self._user = user
        self._home = home if os.path.isdir(home) else "/"
        self._state_dir = state_dir
        self._env = dict(env)
        self._limit = output_limit
        self._kill_grace = kill_grace
        self._cmd_file = os.path.join(state_dir, "command.sh")
        self._call_file = os.path.join(state_dir, "call.sh")
        self._env_file = os.path.join(state_dir, "exports.sh")
        self._restore_file = os.path.join(state_dir, "restore.sh")
        self._lock = threading.Lock()
        self._bash: _Bash | None = None
        self._closed = False
        self.cwd = self._home
        """The shell's working directory as of the last finished command."""

    def start(self) -> None:
        """Start the shell now rather than at the first command."""
        with self._lock:
            self._ensure_bash()

    def close(self) -> None:
        """Kill the shell and whatever it runs; later commands fail."""
        self._closed = True
        bash, self._bash = self._bash, None
        if bash is not None:
            bash.kill()

    def run(
        self,
        command: str,
        timeout: float,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ShellResult:
        """Run `command` in the shell, or in a subshell when `cwd` or `env` is given.

        Args:
            command: Shell text; any syntax bash accepts, across several lines.
            timeout: Seconds, including any wait for a command already running.
            cwd: A directory for this command only (relative to the shell's cwd).
            env: Variables exported for this command only.

        Raises:
            ToolTimeout: Another command held the shell for the whole `timeout`.
            ToolFailed: The shell could not be started, or the agent is closing.
        """
        deadline = time.monotonic() + timeout
        if not self._lock.acquire(timeout=timeout):
            idle = ShellResult(
                stdout="",
                stderr="",
                exit_code=None,
                cwd=self.cwd,
                truncated=False,
                shell_restarted=False,
                timed_out=True,
            )
            raise ToolTimeout(
                f"the shell was busy with another command for {timeout:g}s",
                data=result_data(idle),
            )
        try:
            return self._run_locked(command, timeout, deadline, cwd, env)
        finally:
            self._lock.release()

    def _run_locked(
        self,
        command: str,
        timeout: float,
        deadline: float,
        cwd: str | None,
        env: Mapping[str, str] | None,
    ) -> ShellResult:
        restarted = self._bash is not None and not self._bash.alive()
        bash = self._ensure_bash()
        # Start times are whole ticks: what started earlier in this tick counts as ours.
        started = boot_ticks()
        self._write_file(self._cmd_file, encode_text(command))
        if cwd is None and env is None:
            prefix = f". {shlex.quote(self._cmd_file)}"
        else:
            self._write_file(self._call_file, self._subshell_script(cwd, env or {}))
            prefix = f"( . {shlex.quote(self._call_file)} )"
        sentinel = _new_sentinel()
        try:
            os.write(bash.stdin_fd, self._control_line(prefix, sentinel))
        except OSError:
            # It died since the last command (a background `kill $$`): replace it.
            bash = self._restart()
            restarted = True
            os.write(bash.stdin_fd, self._control_line(prefix, sentinel))

        stdout = StreamCapture(self._limit, sentinel, trailer_fields=2)
        stderr = StreamCapture(self._limit, sentinel)
        collector = bash.collector(stdout, stderr)
        outcome = collector.wait(deadline)

        if outcome is Outcome.COMPLETE:
            exit_code = self._finish(stdout)
            return self._result(collector, exit_code, restarted=restarted, timed_out=False)

        if outcome is not Outcome.DEADLINE:
            # The command ended the shell itself (`exit 3`, `set -e`, `exec`).
            collector.drain(_EXIT_DRAIN_S)
            try:
                returncode = bash.process.wait(timeout=_EXIT_DRAIN_S)
            except subprocess.TimeoutExpired:
                bash.kill()  # it closed its own stdout but lives on: unusable
                returncode = bash.process.returncode
            self._restart()
            return self._result(collector, exit_status(returncode), restarted=True, timed_out=False)

        if not self._stop_timed_out(bash, collector, stdout, started):
            restarted = True
        result = self._result(collector, None, restarted=restarted, timed_out=True)
        raise ToolTimeout(
            f"command did not finish within {timeout:g}s and was killed",
            data=result_data(result),
        )

    def _stop_timed_out(
        self, bash: _Bash, collector: OutputCollector, stdout: StreamCapture, started: int
    ) -> bool:
        """Stop a command past its deadline; whether the shell lives on (else it is
        replaced).

        The shell stops sourcing, what the command started is killed and the shell
        gets a moment to print its sentinel, with sweeps meanwhile. Background jobs
        of earlier commands (a dev server) are spared.
        """
        bash.interrupt()
        kill_tree(bash.pid, started_since=started)
        grace_end = time.monotonic() + self._kill_grace
        outcome = Outcome.DEADLINE
        while outcome is Outcome.DEADLINE and time.monotonic() < grace_end:
            outcome = collector.wait(min(time.monotonic() + _SWEEP_INTERVAL_S, grace_end))
            if outcome is Outcome.DEADLINE:
                kill_tree(bash.pid, started_since=started)
        if outcome is Outcome.COMPLETE:
            self._finish(stdout)
            return True
        # Stuck (it ignores SIGUSR1 and loops in builtins) or dead: replace it.
        self._restart()
        return False

    def _finish(self, stdout: StreamCapture) -> int:
        """Read the exit status and cwd the control line printed after the sentinel."""
        status, cwd = stdout.trailer_fields_text()
        self.cwd = cwd or self.cwd
        try:
            return int(status)
        except ValueError:
            raise ToolFailed(f"the shell reported a malformed exit status {status!r}") from None

    def _result(
        self, collector: OutputCollector, exit_code: int | None, *, restarted: bool, timed_out: bool
    ) -> ShellResult:
        # Without a sentinel, what was held back as its possible start is output.
        collector.stdout.flush()
        collector.stderr.flush()
        # bash names the sourced command file in its messages; a user typed `bash`.
        stderr = collector.stderr.text().replace(f"{self._cmd_file}: ", "bash: ")
        return ShellResult(
            stdout=collector.stdout.text(),
            stderr=stderr,
            exit_code=exit_code,
            cwd=self.cwd,
            truncated=collector.truncated,
            shell_restarted=restarted,
            timed_out=timed_out,
        )

    def _control_line(self, prefix: str, sentinel: bytes) -> bytes:
        mark = sentinel.decode("ascii")
        return (
            f"{_DISARM}{prefix} </dev/null; __sbx_rc=$?; "
            f"builtin export -p >{shlex.quote(self._env_file)} 2>/dev/null; "
            f'builtin printf \'%s%d\\0%s\\0\' {mark} "$__sbx_rc" "$PWD"; '
            f"builtin printf '%s' {mark} >&2\n"
        ).encode("ascii")

    def _subshell_script(self, cwd: str | None, env: Mapping[str, str]) -> bytes:
        lines = []
        if cwd:
            # `exit` leaves only the subshell, with cd's status; its message is on stderr.
            lines.append(f"builtin cd -- {shlex.quote(cwd)} || builtin exit")
        lines.extend(f"builtin export {name}={shlex.quote(value)}" for name, value in env.items())
        lines.append(f". {shlex.quote(self._cmd_file)}")
        return encode_text("\n".join(lines) + "\n")

    def _ensure_bash(self) -> _Bash:
        if self._bash is not None and self._bash.alive():
            return self._bash
        return self._restart()

    def _restart(self) -> _Bash:
        """Replace the shell by one with the last known cwd and exports."""
        if self._closed:
            raise ToolFailed("the agent is shutting down")
        if self._bash is not None:
            self._bash.kill()
            self._bash = None
        first_start = not self._exists(self._env_file)
        bash = _Bash(self._home, self._env, self._user)
        if first_start and self.cwd == self._home:
            self._bash = bash
            return bash
        self._write_file(self._restore_file, self._restore_script())
        sentinel = _new_sentinel()
        stdout = StreamCapture(self._limit, sentinel, trailer_fields=2)
        stderr = StreamCapture(self._limit, sentinel)
        control = self._control_line(f". {shlex.quote(self._restore_file)}", sentinel)
        try:
            os.write(bash.stdin_fd, control)
            outcome = bash.collector(stdout, stderr).wait(time.monotonic() + _RESTORE_TIMEOUT_S)
        except OSError:
            outcome = Outcome.CLOSED
        if outcome is Outcome.COMPLETE:
            self._finish(stdout)
            self._bash = bash
            return bash
        # The snapshot itself breaks the shell; a clean one beats none.
        print(f"sandbox-agent: restoring the shell state failed ({outcome.value})", file=sys.stderr)
        bash.kill()
        self.cwd = self._home
        self._bash = _Bash(self._home, self._env, self._user)
        return self._bash

    def _restore_script(self) -> bytes:
        lines = []
        if self._exists(self._env_file):
            # Unset first so variables the user had unset stay unset.
            lines.append(
                'for __sbx_v in $(builtin compgen -e); do builtin unset -v "$__sbx_v"; '
                "done 2>/dev/null"
            )
            lines.append("builtin unset -v __sbx_v")
            lines.append(f". {shlex.quote(self._env_file)}")
        lines.append(f"builtin cd -- {shlex.quote(self.cwd)} 2>/dev/null")
        return encode_text("\n".join(lines) + "\n")

    def _exists(self, path: str) -> bool:
        # The state directory is the shell user's, closed to a capability-less root.
        with acting_as(self._user):
            return os.path.exists(path)

    def _write_file(self, path: str, data: bytes) -> None:
        # As the shell's user: the shell must read the file, and whatever a
        # command put at `path` leads only where that user may write.
        with acting_as(self._user):
            fd = self._open_regular(path)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def _open_regular(self, path: str) -> int:
        """`path` opened for writing as a fresh regular file, whatever a command left there.

        The state directory is the session user's: a command may have put a FIFO
        there (whose open would block the agent), a symlink or a directory. Such
        a thing is removed and the file made anew.
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        guarded = flags | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(path, guarded, 0o600)
        except FileNotFoundError:
            # A command removed the state directory (`rm -rf /tmp/*`): recreate it.
            os.makedirs(self._state_dir, mode=0o700, exist_ok=True)
            fd = os.open(path, guarded, 0o600)
        except OSError:  # a symlink (ELOOP), a FIFO without reader (ENXIO), a directory
            fd = -1
        if fd >= 0 and stat.S_ISREG(os.fstat(fd).st_mode):
            os.set_blocking(fd, True)
            return fd
        if fd >= 0:
            os.close(fd)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return os.open(path, flags | os.O_EXCL | os.O_NOFOLLOW, 0o600)


def result_data(result: ShellResult) -> dict[str, object]:
    """The ``data`` object of a `bash.run` answer (or of its timeout error)."""
    return {
        "stdout": result.stdout,
        "stderr": result.stderr,
        "exit_code": result.exit_code,
        "return_code": result.exit_code,  # the name AgentFlow's result formatter reads
        "cwd": result.cwd,
        "truncated": result.truncated,
        "shell_restarted": result.shell_restarted,
    }


def _new_sentinel() -> bytes:
    return b"__SBX_" + secrets.token_hex(12).encode("ascii") + b"__"
