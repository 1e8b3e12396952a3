"""`bash` and `code` sessions: the shell image and its tools."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import ResourceType, ToolParams, ToolSpec

_TIMEOUT = Field(
    default=None,
    gt=0,
    le=86_400,
    description="Seconds before the command is killed and the call answers 2002.",
)


class RunParams(ToolParams):
    command: str = Field(min_length=1, description="Shell command line, run by bash.")
    timeout: float | None = _TIMEOUT
    cwd: str | None = Field(
        default=None, description="Run in this directory; applies to this call only."
    )
    env: dict[str, str] | None = Field(
        default=None, description="Extra environment variables for this call only."
    )


class WriteFileParams(ToolParams):
    path: str = Field(min_length=1, description="File to write; relative to the shell's cwd.")
    content: str = Field(description="File content, text or base64.")
    encoding: Literal["utf-8", "base64"] = "utf-8"


class ReadFileParams(ToolParams):
    path: str = Field(min_length=1, description="File to read; relative to the shell's cwd.")
    encoding: Literal["utf-8", "base64"] = "utf-8"


class ExecuteParams(ToolParams):
    code: str = Field(min_length=1, description="Program text.")
    language: Literal["python", "bash"] = "python"
    timeout: float | None = _TIMEOUT


BASH = ResourceType(
    name="bash",
    image="shell",
    description="A persistent bash shell: cd and exports persist between calls.",
    toolsets=("shell",),
    tools=(
        ToolSpec(
            "bash",
            "run",
            RunParams,
            "Run a command in the session's persistent bash; returns stdout, stderr, "
            "exit_code and the shell's cwd afterwards.",
            agent_tool="bash.run",
            timeout_param=True,
        ),
        ToolSpec(
            "bash",
            "write_file",
            WriteFileParams,
            "Write a file (parent directories are created); returns its absolute path and size.",
            agent_tool="bash.write_file",
        ),
        ToolSpec(
            "bash",
            "read_file",
            ReadFileParams,
            "Read a file as UTF-8 text or base64.",
            agent_tool="bash.read_file",
        ),
    ),
)

CODE = ResourceType(
    name="code",
    image="shell",
    description="Run Python or bash programs, each in a fresh process.",
    toolsets=("shell",),
    tools=(
        ToolSpec(
            "code",
            "execute",
            ExecuteParams,
            "Run a Python or bash program in a fresh process; returns stdout, stderr, "
            "return_code and execution_time_ms.",
            agent_tool="code.execute",
            timeout_param=True,
        ),
    ),
)
