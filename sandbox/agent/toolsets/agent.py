"""The ``agent`` toolset, always enabled: facts about the container itself.

Tools:
    agent.meta: Read, or set once, a small JSON object the server keeps here.

Docker labels cannot change once a container exists, so a container started
ahead of time for a warm pool learns whose session it became through
``agent.meta``; a restarted server reads it back to adopt the session. What it
stores is opaque here: a claim signed by the server (``sandbox/sessions/claims.py``),
which the server verifies on reading, since nothing a container says is trusted.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidParams
from ..params import Params
from ..registry import AgentContext, Tool, Toolset
from ..tools import bind
from ..tools.agent import TOOLS

MAX_META_BYTES = 64 << 10


class AgentToolset(Toolset):
    """Holds the container's metadata in memory (it lives as long as the container)."""

    name = "agent"

    def __init__(self) -> None:
        self._meta: dict[str, Any] = {}
        self._lock = threading.Lock()

    def tools(self) -> Sequence[Tool]:
        """``agent.meta``."""
        return bind(TOOLS, {"meta": self.meta})

    def meta(self, params: Params) -> dict[str, Any]:
        """With ``set`` (an object), store the metadata once; answer the current one.

        Write-once: the server stores a pool container's signed claim when it claims
        it, before the session's user can run anything, and nothing may change it
        after. The server does not rely on that alone: it verifies the claim's MAC
        and keeps its own record of which containers it claimed.
        """
        new = params.raw().get("set")
        with self._lock:
            if new is not None:
                if len(json.dumps(new)) > MAX_META_BYTES:
                    raise InvalidParams(
                        f"set must encode to at most {MAX_META_BYTES} bytes", field="set"
                    )
                if self._meta:
                    raise InvalidParams("the metadata is already set", field="set")
                self._meta = dict(new)
            return {"meta": dict(self._meta)}


def create_toolset(context: AgentContext) -> AgentToolset:
    """The ``agent`` toolset (it needs nothing from the context)."""
    del context
    return AgentToolset()
