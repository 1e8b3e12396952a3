"""Isolated, fast, recorded Docker execution environments for AI agents.

The public API is what this module exports: the `Sandbox` client, the
`HTTPServiceClient` it extends with its `HTTPClientConfig`, the `Envelope` every
call returns, and the error tree.
"""

__version__ = "0.1.0"

from .client import Envelope, HTTPClientConfig, HTTPServiceClient, Sandbox
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
    "Envelope",
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
