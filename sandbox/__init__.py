"""Isolated, fast, recorded Docker execution environments for AI agents.

The public API is what this module exports: the `Sandbox` client with its
`SandboxConfig`, the `HTTPServiceClient` underneath with its `HTTPClientConfig`,
the `Envelope` its calls return, `format_tool_result` and its result classes
(the text a model sees for a tool result), and the error tree. They carry
AgentFlow's names and shapes, so code written for AgentFlow's ``sandbox`` runs
unchanged; `sandbox.tool_schemas.get_tool_schemas` gives the tools' prompt
schemas.
"""

__version__ = "0.1.0"

from .client import Envelope, HTTPClientConfig, HTTPServiceClient, Sandbox, SandboxConfig
from .errors import (
    BackendError,
    ErrorCode,
    InvalidParams,
    SandboxConnectionError,
    SandboxError,
    SandboxTimeout,
    SessionError,
    ToolNotFound,
    error_from_envelope,
)
from .result_formatter import (
    BashResult,
    CodeExecutionResult,
    RAGSearchResult,
    ResultFormatter,
    ToolResult,
    VMResult,
    format_tool_result,
)

__all__ = [
    "BackendError",
    "BashResult",
    "CodeExecutionResult",
    "Envelope",
    "ErrorCode",
    "HTTPClientConfig",
    "HTTPServiceClient",
    "InvalidParams",
    "RAGSearchResult",
    "ResultFormatter",
    "Sandbox",
    "SandboxConfig",
    "SandboxConnectionError",
    "SandboxError",
    "SandboxTimeout",
    "SessionError",
    "ToolNotFound",
    "ToolResult",
    "VMResult",
    "__version__",
    "error_from_envelope",
    "format_tool_result",
]
