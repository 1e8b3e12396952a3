"""The ``shell`` toolset: a persistent bash, file transfer, and one-shot programs.

Tools (declared in `sandbox/agent/tools/shell.py`, which checks their parameters):
    bash.run: Run a command in the persistent shell.
    bash.write_file: Write a file, relative paths against the shell's cwd.
    bash.read_file: Read a file as UTF-8 text or base64.
    code.execute: Run a Python or bash program in a fresh process.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from ..code_runner import CodeRunner
from ..errors import InvalidParams, ToolTimeout
from ..files import decode_base64, read_file, resolve_path, write_file
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
        if params.string("encoding") == "base64":
            data = decode_base64(content, "content")
        else:
            data = encode_text(content)
        write_file(path, data, self._user)
        return {"path": path, "size": len(data)}

    def read_file(self, params: Params) -> dict[str, Any]:
        """``bash.read_file``: `path` (`encoding` optional)."""
        path = self._resolve(params.path("path"))
        encoding = params.string("encoding")
        data, size = read_file(path, self._limit, self._user)
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
        return resolve_path(path, home=self._home, cwd=self._shell.cwd)


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
