"""The ``agent`` toolset's tool, which every agent has: the server's own plumbing."""

from __future__ import annotations

from .spec import Param, ToolDeclaration

TOOLS = (
    ToolDeclaration(
        "agent",
        "meta",
        "Read, or set once, the container's metadata (a pool container's signed claim).",
        (Param("set", "object", "The metadata to store; absent: only read it."),),
        internal=True,
    ),
)
