"""Every tool of every toolset, declared once, for the agent and the server alike.

Decision (issue 11): a tool's name, description, parameters and their bounds are
written once, here, as plain dataclasses (`spec`), one module per toolset. The
agent package runs inside images with Debian's python3 alone, so the declaration
is standard library only; the server imports it and builds from it what it
serves and enforces (`sandbox/backends/declared.py`: the pydantic model of each
tool's parameters, hence its JSON schema at ``GET /tools`` and its 1002 answers),
and the agent checks every call against it before the tool runs (`spec.bind`).
Checks only the agent can make stay in the tools: a point on this session's
screen, a key this keyboard has, pyautogui code, a path the session user may open.

``TOOLSETS`` maps each agent toolset to its declarations. A resource type offers
the declarations of its toolsets in its own namespace (``vm:click`` is the
``desktop`` toolset's ``vm.click``) that are not `internal`.
"""

from __future__ import annotations

from . import agent, desktop, rag, shell
from .spec import JsonType, Param, Rule, Shape, ToolDeclaration, bind

TOOLSETS: dict[str, tuple[ToolDeclaration, ...]] = {
    "agent": agent.TOOLS,
    "desktop": desktop.TOOLS,
    "shell": shell.TOOLS,
    "rag": rag.TOOLS,
}
"""Each toolset's tools, by the toolset's name (``SANDBOX_AGENT_TOOLSETS``)."""

__all__ = ["TOOLSETS", "JsonType", "Param", "Rule", "Shape", "ToolDeclaration", "bind"]
