"""The ``desktop`` toolset's program tools: ``vm.run_command``, ``vm.launch``, ``vm.pyautogui``.

Every program runs as the session user, in its own process group, with the
desktop's DISPLAY. Parameters arrive checked against their declarations
(`sandbox/agent/tools/desktop.py`); pyautogui code is checked here, before it
runs, since only pyautogui calls and ``time.sleep`` are accepted.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..code_runner import CodeRunner
from ..desktop import pyautogui_code
from ..errors import InvalidParams, ToolFailed, ToolTimeout
from ..identity import SessionUser, acting_as, popen_kwargs, prefer_for_oom
from ..params import Params
from ..processes import exit_status
from ._desktop_input import Screen

DEFAULT_TIMEOUT_S = 120.0
# pyautogui sleeps this long after each of its calls (its default is 0.1 s).
PYAUTOGUI_PAUSE_S = 0.02
_WINDOW_WAIT_S = 10.0
_WINDOW_POLL_S = 0.01


class ProgramTools:
    """Programs on the desktop; holds the launched ones until they end or it closes.

    Args:
        screen: The desktop's connection (to see a launched program's window).
        home: The session user's home: where programs start.
        scratch_dir: A private directory for programs' files (run_command's scripts).
        env: The programs' environment, DISPLAY included.
        output_limit: Most bytes of each output stream returned to a caller.
        user: Who the programs run as; None: the agent's own user.
    """

    def __init__(
        self,
        screen: Screen,
        *,
        home: str,
        scratch_dir: str,
        env: Mapping[str, str],
        output_limit: int,
        user: SessionUser | None,
    ) -> None:
        self._screen = screen
        self._home = home
        self._env = dict(env)
        self._limit = output_limit
        self._user = user
        self._runner = CodeRunner(
            cwd=home, scratch_dir=scratch_dir, env=env, output_limit=output_limit, user=user
        )
        self._launched: list[subprocess.Popen[bytes]] = []
        self._launch_count = itertools.count(1)
        self._launch_lock = threading.Lock()
        # Launched programs' output, on disk rather than with the agent's state
        # in /dev/shm: a chatty program must not eat the session's memory.
        self._log_dir: str | None = None

    def handlers(self) -> dict[str, Any]:
        """Each tool's handler, by the tool's own name."""
        return {
            "run_command": self.run_command,
            "launch": self.launch,
            "pyautogui": self.pyautogui,
        }

    def close(self) -> None:
        """Kill every launched program and remove their logs."""
        with self._launch_lock:
            launched, self._launched = self._launched, []
        for process in launched:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log_dir, self._log_dir = self._log_dir, None
        if log_dir is not None:
            shutil.rmtree(log_dir, ignore_errors=True)

    def run_command(self, params: Params) -> dict[str, Any]:
        """``vm.run_command``: `command` run by bash in a new process (`timeout`)."""
        timeout = params.seconds("timeout", default=DEFAULT_TIMEOUT_S)
        result = self._runner.run(params.string("command"), "bash", timeout)
        data = {
            "stdout": result.stdout,
            "stderr": result.stderr,
            "exit_code": result.return_code,
            "truncated": result.truncated,
        }
        if result.timed_out:
            raise ToolTimeout(
                f"command did not finish within {timeout:g}s and was killed", data=data
            )
        return data

    def launch(self, params: Params) -> dict[str, Any]:
        """``vm.launch``: `command` started detached; `wait_for_window` waits for its window."""
        command = params.string("command")
        if not command.strip():
            raise InvalidParams("command must not be blank", field="command")
        wait: bool = params.raw()["wait_for_window"]
        windows_before = set(self._screen.client_windows()) if wait else set()
        with self._launch_lock:
            self._reap()
            # The user's files: it may read its programs' logs with read_file.
            with acting_as(self._user):
                if self._log_dir is None:
                    self._log_dir = tempfile.mkdtemp(prefix="launched-")
                log_path = os.path.join(self._log_dir, f"{next(self._launch_count)}.log")
                log = os.fdopen(_new_file(log_path), "wb")
            with log:
                process = subprocess.Popen(
                    ["bash", "-c", command],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._cwd(),
                    env=self._env,
                    start_new_session=True,
                    **popen_kwargs(self._user),
                )
            prefer_for_oom(process.pid, self._user)
            self._launched.append(process)
        data: dict[str, Any] = {"pid": process.pid, "log": log_path}
        if wait:
            data["window"], data["focused"] = self._wait_for_window(windows_before, process)
            if process.poll() is not None:
                data["exit_code"] = exit_status(process.returncode)
        return data

    def pyautogui(self, params: Params) -> dict[str, Any]:
        """``vm.pyautogui``: `command` (one program) or `commands` (several), `timeout`."""
        named = _programs(params)
        timeout = params.seconds("timeout", default=DEFAULT_TIMEOUT_S)
        return self._run_pyautogui(named, timeout)

    def _cwd(self) -> str:
        return self._home if os.path.isdir(self._home) else "/"

    def _reap(self) -> None:
        """Forget launched programs that ended (collecting their exit status)."""
        self._launched = [process for process in self._launched if process.poll() is None]

    def _wait_for_window(
        self, before: set[int], process: subprocess.Popen[bytes]
    ) -> tuple[int | None, bool]:
        """The window a launch opened, and whether it got the focus, within a while.

        Asks the window manager (``_NET_CLIENT_LIST``, ``_NET_ACTIVE_WINDOW``)
        rather than X's input focus, which passes through the window manager's
        own windows while it settles.
        """
        deadline = time.monotonic() + _WINDOW_WAIT_S
        new: list[int] = []
        while time.monotonic() < deadline:
            new = [window for window in self._screen.client_windows() if window not in before]
            if new:
                if self._screen.active_window()[:1] == new[-1:]:
                    return new[-1], True
            elif process.poll() is not None and process.returncode != 0:
                return None, False  # it failed: no window is coming
            time.sleep(_WINDOW_POLL_S)
        return (new[-1] if new else None), False

    def _run_pyautogui(self, named: list[tuple[str, str]], timeout: float) -> dict[str, Any]:
        """Run the checked programs in one new python3; their output and values."""
        programs = [text for _, text in named]
        read_fd, write_fd = os.pipe()
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    pyautogui_code.RUNNER,
                    str(PYAUTOGUI_PAUSE_S),
                    str(write_fd),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self._cwd(),
                env=self._env,
                pass_fds=(write_fd,),
                start_new_session=True,
                **popen_kwargs(self._user),
            )
            prefer_for_oom(process.pid, self._user)
        finally:
            os.close(write_fd)
        try:
            try:
                stdout, stderr = process.communicate(json.dumps(programs).encode(), timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                stdout, stderr = process.communicate()
                raise ToolTimeout(
                    f"pyautogui did not finish within {timeout:g}s and was killed",
                    data=self._outputs(stdout, stderr, None),
                ) from None
            with os.fdopen(read_fd, "rb") as result_pipe:
                read_fd = -1
                raw_result = result_pipe.read()
        finally:
            if read_fd >= 0:
                os.close(read_fd)
        data = self._outputs(stdout, stderr, exit_status(process.returncode))
        return _pyautogui_answer(named, raw_result, data)

    def _outputs(self, stdout: bytes, stderr: bytes, exit_code: int | None) -> dict[str, Any]:
        truncated = len(stdout) > self._limit or len(stderr) > self._limit
        return {
            "stdout": stdout[: self._limit].decode("utf-8", "replace"),
            "stderr": stderr[: self._limit].decode("utf-8", "replace"),
            "exit_code": exit_code,
            "truncated": truncated,
        }


def _runner_command(result_fd: int) -> list[str]:
    """The pyautogui runner's command line: it writes its result to `result_fd`."""
    return [sys.executable, "-c", pyautogui_code.RUNNER, str(PYAUTOGUI_PAUSE_S), str(result_fd)]


def _pyautogui_answer(
    named: list[tuple[str, str]], raw_result: bytes, data: dict[str, Any]
) -> dict[str, Any]:
    """The call's answer from the runner's result, or the error it reports."""
    try:
        result = json.loads(raw_result) if raw_result else None
    except ValueError:
        result = None
    if not isinstance(result, dict):
        raise ToolFailed(
            f"pyautogui's runner ended with status {data['exit_code']} and no result", data=data
        )
    if result.get("ok"):
        data["values"] = result.get("values", [])
        return data
    if result.get("stage") == "import":
        raise ToolFailed(
            f"cannot import pyautogui in the desktop: {result.get('type')}: "
            f"{result.get('message')}",
            data=data,
        )
    index = result.get("command")
    field = named[index][0] if isinstance(index, int) and 0 <= index < len(named) else "?"
    where = f"{field} line {result.get('line')}"
    data["values"] = result.get("values", [])
    raise ToolFailed(
        f"pyautogui failed at {where}: {result.get('type')}: {result.get('message')}",
        data=data,
    )


def _new_file(path: str) -> int:
    """`path` made anew for writing: whatever the session user put there first (a
    FIFO whose open would block the agent, a symlink) is replaced, not followed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o644)
    except FileExistsError:
        os.unlink(path)
        return os.open(path, flags, 0o644)


def _programs(params: Params) -> list[tuple[str, str]]:
    """The pyautogui programs of a call, each checked, with the field naming it."""
    raw = params.raw()
    if "command" in raw:
        named = [("command", raw["command"])]
    else:
        named = [(f"commands.{index}", text) for index, text in enumerate(raw["commands"])]
    for field, text in named:
        try:
            pyautogui_code.check_program(text)
        except pyautogui_code.RejectedCode as exc:
            raise InvalidParams(f"{field}: {exc}", field=field) from None
    return named
