"""The ``shell`` toolset's tools: those of the ``bash`` and ``code`` resource types."""

from __future__ import annotations

from .common import timeout
from .spec import Param, ToolDeclaration

ENCODINGS = ("utf-8", "base64")
LANGUAGES = ("python", "bash")

_TIMEOUT = "Seconds before the command is killed and the call answers 2002."
_ENCODING = Param("encoding", "string", default="utf-8", enum=ENCODINGS)

TOOLS = (
    ToolDeclaration(
        "bash",
        "run",
        "Run a command in the session's persistent bash; returns stdout, stderr, "
        "exit_code and the shell's cwd afterwards.",
        (
            Param(
                "command", "string", "Shell command line, run by bash.", required=True, min_length=1
            ),
            timeout(_TIMEOUT),
            Param("cwd", "string", "Run in this directory; applies to this call only."),
            Param(
                "env",
                "object",
                "Extra environment variables for this call only.",
                values=Param("value", "string"),
            ),
        ),
        replay_fields=("stdout", "stderr", "exit_code", "cwd"),
    ),
    ToolDeclaration(
        "bash",
        "write_file",
        "Write a file (parent directories are created); returns its absolute path and size.",
        (
            Param(
                "path",
                "string",
                "File to write; relative to the shell's cwd.",
                required=True,
                min_length=1,
            ),
            Param("content", "string", "File content, text or base64.", required=True),
            _ENCODING,
        ),
        replay_fields=("path", "size"),
    ),
    ToolDeclaration(
        "bash",
        "read_file",
        "Read a file as UTF-8 text or base64.",
        (
            Param(
                "path",
                "string",
                "File to read; relative to the shell's cwd.",
                required=True,
                min_length=1,
            ),
            _ENCODING,
        ),
        replay_fields=("path", "content", "encoding", "size"),
    ),
    ToolDeclaration(
        "code",
        "execute",
        "Run a Python or bash program in a fresh process; returns stdout, stderr, "
        "return_code and execution_time_ms.",
        (
            Param("code", "string", "Program text.", required=True, min_length=1),
            Param("language", "string", default="python", enum=LANGUAGES),
            timeout(_TIMEOUT),
        ),
        replay_fields=("stdout", "stderr", "return_code"),
    ),
)
"""Every tool of the shell image, in the order ``GET /tools`` lists them."""
