"""Isolated, fast, recorded Docker execution environments for AI agents.

The public API is what this module exports: the `Sandbox` facade, the lower-level
`HTTPServiceClient` with its `HTTPClientConfig`, and the error tree.
"""

__version__ = "0.1.0"

from .client import HTTPClientConfig, HTTPServiceClient, Sandbox
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

__all__ = [
    "BackendError",
    "ErrorCode",
    "HTTPClientConfig",
    "HTTPServiceClient",
    "InvalidParams",
    "Sandbox",
    "SandboxConnectionError",
    "SandboxError",
    "SandboxTimeout",
    "SessionError",
    "ToolNotFound",
    "__version__",
    "error_from_envelope",
]
