"""The ``shell`` toolset: a persistent bash, file transfer, and one-shot programs.

Tools (declared in `sandbox/agent/tools/shell.py`, which checks their parameters):
    bash.run: Run a command in the persistent shell.
    bash.write_file: Write a file, relative paths against the shell's cwd.
    bash.read_file: Read a file as UTF-8 text or base64.
    code.execute: Run a Python or bash program in a fresh process.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from typing import Any

from ..code_runner import CodeRunner
from ..errors import InvalidParams, ToolTimeout
from ..identity import acting_as
from ..memory import OomWatch
from ..params import Params, encode_text
from ..persistent_shell import PersistentShell, result_data
from ..registry import AgentContext, Tool, Toolset
from ..tools import bind
from ..tools.shell import TOOLS

DEFAULT_TIMEOUT_S = 120.0


class ShellToolset(Toolset):
    """The tools of a shell image; starts its bash right away so the first call is fast.

    Args:
        context: The agent's home, state directory, output limit and environment.
    """

    name = "shell"

    def __init__(self, context: AgentContext) -> None:
        self._home = context.home
        self._limit = context.output_limit
        self._user = context.user
        self._shell = PersistentShell(
            home=context.home,
            state_dir=context.state_dir,
            env=context.child_env,
            output_limit=context.output_limit,
            user=context.user,
        )
        self._runner = CodeRunner(
            cwd=context.home,
            scratch_dir=context.state_dir,
            env=context.child_env,
            output_limit=context.output_limit,
            user=context.user,
        )
        self._oom = OomWatch()
        self._shell.start()

    def tools(self) -> Sequence[Tool]:
        """``bash.run``, ``bash.write_file``, ``bash.read_file`` and ``code.execute``."""
        return bind(
            TOOLS,
            {
                "run": self.run,
                "write_file": self.write_file,
                "read_file": self.read_file,
                "execute": self.execute,
            },
        )

    def close(self) -> None:
        """Kill the shell and whatever it runs."""
        self._shell.close()

    def run(self, params: Params) -> dict[str, Any]:
        """``bash.run``: `command` (`timeout`, `cwd`, `env` optional)."""
        command = params.string("command")
        timeout = params.seconds("timeout", default=DEFAULT_TIMEOUT_S)
        cwd = params.optional_string("cwd") or None
        if cwd is not None and "\0" in cwd:
            raise InvalidParams("cwd must not contain NUL characters", field="cwd")
        env = params.environment("env")
        before = self._oom.count()
        return self._oom.mark(
            before, result_data(self._shell.run(command, timeout, cwd=cwd, env=env))
        )

    def write_file(self, params: Params) -> dict[str, Any]:
        """``bash.write_file``: `path`, `content` (`encoding` optional)."""
        path = self._resolve(params.path("path"))
        content = params.string("content")
        encoding = params.string("encoding")
        if encoding == "base64":
            try:
                # Wrapped base64 (as the `base64` tool prints it) is fine too.
                data = base64.b64decode("".join(content.split()), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidParams(
                    f"content is not valid base64: {exc}", field="content"
                ) from None
        else:
            data = encode_text(content)
        try:
            # With the session user's rights: a symlink it planted cannot lead
            # the agent to write where the user could not.
            with acting_as(self._user):
                _refuse_agent_proc(path, "write")
                _make_parents(path)
                # Non-blocking: opening a FIFO the session planted would wait
                # for a reader forever (or fail at once with ENXIO, as here).
                fd = os.open(path, _WRITE_FLAGS, 0o666)
        except OSError as exc:
            # ENXIO: a FIFO nobody reads, which a non-blocking open refuses.
            reason = "not a regular file" if exc.errno == errno.ENXIO else _reason(exc)
            raise InvalidParams(f"cannot write {path}: {reason}", field="path") from None
        try:
            _check_opened(fd, path, "write", allow_devices=False)
            os.set_blocking(fd, True)
            with open(fd, "wb", closefd=False) as file:
                file.write(data)
        except OSError as exc:
            raise InvalidParams(f"cannot write {path}: {_reason(exc)}", field="path") from None
        finally:
            os.close(fd)
        return {"path": path, "size": len(data)}

    def read_file(self, params: Params) -> dict[str, Any]:
        """``bash.read_file``: `path` (`encoding` optional)."""
        path = self._resolve(params.path("path"))
        encoding = params.string("encoding")
        data, size = self._read(path)
        truncated = len(data) > self._limit
        data = data[: self._limit]
        if encoding == "base64":
            content = base64.b64encode(data).decode("ascii")
        else:
            content = _decode_utf8(data, truncated=truncated)
        return {
            "path": path,
            "content": content,
            "encoding": encoding,
            "size": max(size, len(data)),
            "truncated": truncated,
        }

    def execute(self, params: Params) -> dict[str, Any]:
        """``code.execute``: `code` (`language`, `timeout` optional)."""
        code = params.string("code")
        language = params.string("language")
        timeout = params.seconds("timeout", default=DEFAULT_TIMEOUT_S)
        before = self._oom.count()
        result = self._runner.run(code, language, timeout)
        if result.timed_out:
            raise ToolTimeout(
                f"code did not finish within {timeout:g}s and was killed", data=result.data()
            )
        return self._oom.mark(before, result.data())

    def _resolve(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            path = self._home + path[1:]
        return os.path.abspath(os.path.join(self._shell.cwd, path))

    def _read(self, path: str) -> tuple[bytes, int]:
        """Up to one byte over the limit of `path`, and the file's size."""
        try:
            # Non-blocking, so a FIFO cannot hang the call; it is refused below.
            # With the session user's rights, like every file tool.
            with acting_as(self._user):
                _refuse_agent_proc(path, "read")
                fd = os.open(path, _READ_FLAGS)
        except OSError as exc:
            raise InvalidParams(f"cannot read {path}: {_reason(exc)}", field="path") from None
        try:
            info = _check_opened(fd, path, "read", allow_devices=True)
            chunks: list[bytes] = []
            wanted = self._limit + 1
            while wanted > 0:
                try:
                    chunk = os.read(fd, min(wanted, 1 << 20))
                except BlockingIOError:
                    break
                except OSError as exc:
                    raise InvalidParams(
                        f"cannot read {path}: {_reason(exc)}", field="path"
                    ) from None
                if not chunk:
                    break
                chunks.append(chunk)
                wanted -= len(chunk)
            # /proc and device files report size 0; what was read is the best known.
            size = info.st_size if stat.S_ISREG(info.st_mode) else 0
            return b"".join(chunks), size
        finally:
            os.close(fd)


_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _agent_proc_dirs() -> set[str]:
    """``/proc/<id>`` of the agent's process and of each of its threads."""
    pid = str(os.getpid())
    try:
        threads = set(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        threads = set()
    return {f"/proc/{task}" for task in threads | {pid}}


def _is_agent_proc(path: str, agent: set[str]) -> bool:
    parts = path.split("/", 3)
    return len(parts) >= 3 and "/".join(parts[:3]) in agent


def _refuse_agent_proc(path: str, verb: str) -> None:
    """Refuse the agent's own /proc entries (its memory map, its descriptors...).

    The file tools open as the agent process with the session user's file rights,
    and procfs lets a process read its own entries whoever asks: /proc/self,
    /proc/thread-self and /proc/<agent pid> would show the root agent, not the
    session. Checked on the path with its symlinks resolved (a link the session
    planted counts), and on its directory.

    Raises:
        InvalidParams: `path` leads into the agent's /proc entries (1002, ``path``).
    """
    agent = _agent_proc_dirs()
    # The directory too: /proc/self/fd/N resolves out of /proc, to the target.
    for resolved in (os.path.realpath(path), os.path.realpath(os.path.dirname(path))):
        if _is_agent_proc(resolved, agent):
            raise InvalidParams(f"cannot {verb} {path}: Permission denied", field="path")


def _check_opened(fd: int, path: str, verb: str, *, allow_devices: bool) -> os.stat_result:
    """`fd`'s status once it is a regular file (or, reading, a character device).

    Also refuses a descriptor that turned out to be the agent's /proc entry (the
    path changed between the check and the open).

    Raises:
        InvalidParams: A directory, FIFO, socket or the agent's /proc (1002, ``path``).
    """
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise InvalidParams(f"cannot {verb} {path}: Is a directory", field="path")
    allowed = stat.S_ISREG(info.st_mode) or (allow_devices and stat.S_ISCHR(info.st_mode))
    if not allowed:
        raise InvalidParams(f"cannot {verb} {path}: not a regular file", field="path")
    with contextlib.suppress(OSError):
        if _is_agent_proc(os.readlink(f"/proc/self/fd/{fd}"), _agent_proc_dirs()):
            raise InvalidParams(f"cannot {verb} {path}: Permission denied", field="path")
    return info


def create_toolset(context: AgentContext) -> Toolset:
    """The factory the agent looks up in every toolset module."""
    return ShellToolset(context)


def _decode_utf8(data: bytes, *, truncated: bool) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The limit may have cut a character in two; that is not the file's fault.
        if truncated and exc.reason == "unexpected end of data":
            return data[: exc.start].decode("utf-8")
        raise InvalidParams(
            f"the file is not valid UTF-8 (byte {exc.start}); read it with encoding base64",
            field="encoding",
        ) from None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _make_parents(path: str) -> None:
    """Create the missing parent directories of `path`, top down.

    A loop rather than `os.makedirs`, which recurses once per missing level and
    so fails with RecursionError on a path of a thousand levels (still within
    PATH_MAX).
    """
    missing = []
    parent = os.path.dirname(path)
    while parent and not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
        if parent == missing[-1]:
            break
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
