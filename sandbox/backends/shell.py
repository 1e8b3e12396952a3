"""`bash` and `code` sessions: the shell image and its tools.

Both are the ``shell`` toolset's (`sandbox/agent/tools/shell.py`): `bash` offers
its ``bash.*`` tools, `code` its ``code.*`` tools.
"""

from __future__ import annotations

from .base import ResourceType

BASH = ResourceType(
    name="bash",
    image="shell",
    description="A persistent bash shell: cd and exports persist between calls.",
    toolsets=("shell",),
)

CODE = ResourceType(
    name="code",
    image="shell",
    description="Run Python or bash programs, each in a fresh process.",
    toolsets=("shell",),
)
