"""The in-container agent: runs a sandbox's tools behind a small HTTP server.

This package is copied alone into images (as ``sandbox_agent``) and started with
``python3 -m sandbox_agent``, so it uses only the standard library and imports
its own modules relatively. On the host it is ``sandbox.agent``, which tests use
to run an agent in-process.
"""

from .config import AgentConfig
from .errors import ConfigError, InvalidParams, ToolError, ToolFailed, ToolNotFound, ToolTimeout
from .params import Params
from .registry import AgentContext, Tool, ToolRegistry, Toolset
from .server import AgentServer

__all__ = [
    "AgentConfig",
    "AgentContext",
    "AgentServer",
    "ConfigError",
    "InvalidParams",
    "Params",
    "Tool",
    "ToolError",
    "ToolFailed",
    "ToolNotFound",
    "ToolRegistry",
    "ToolTimeout",
    "Toolset",
]
