"""Errors shared by the server, the client and the backends.

Every error the product reports carries one of the wire protocol's codes, so the
server turns any of them into an envelope and the client rebuilds the same class
from an envelope it received::

    SandboxError                      5000  internal error (the root)
    ├── ToolNotFound (LookupError)    1001  no such tool
    ├── InvalidParams (ValueError)    1002  missing, wrong-typed or out-of-range field
    ├── SessionError                  1003  no session, failed start, already destroyed
    ├── BackendError                  2001  container died, agent failed, Docker down
    ├── SandboxTimeout (TimeoutError) 2002  a call ran past its timeout
    └── SandboxConnectionError        ----  client side: no envelope came back at all
        (ConnectionError)
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ErrorCode(IntEnum):
    """The envelope's `code` values."""

    SUCCESS = 0
    TOOL_NOT_FOUND = 1001
    INVALID_PARAMS = 1002
    SESSION_ERROR = 1003
    BACKEND_ERROR = 2001
    TIMEOUT = 2002
    INTERNAL = 5000

    @property
    def http_status(self) -> int:
        """The HTTP status a response with this code is sent with."""
        return _HTTP_STATUS[self]


_HTTP_STATUS = {
    ErrorCode.SUCCESS: 200,
    ErrorCode.TOOL_NOT_FOUND: 404,
    ErrorCode.INVALID_PARAMS: 400,
    ErrorCode.SESSION_ERROR: 409,
    ErrorCode.BACKEND_ERROR: 502,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.INTERNAL: 500,
}


class SandboxError(Exception):
    """Root of every error this package raises.

    Args:
        message: What went wrong and, where possible, what to do about it.
        data: Extra machine-readable detail (partial output, the failing field).
        tool: The tool the call named, when there was one.
        session_id: The session involved, when there was one.
    """

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        data: dict[str, Any] | None = None,
        tool: str | None = None,
        session_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.data: dict[str, Any] = data or {}
        self.tool = tool
        self.session_id = session_id

    def __str__(self) -> str:
        return f"[{int(self.code)}] {self.message}"


class ToolNotFound(SandboxError, LookupError):
    """The action names no tool the server knows."""

    code = ErrorCode.TOOL_NOT_FOUND


class InvalidParams(SandboxError, ValueError):
    """A parameter is missing, has the wrong type or is out of range.

    Args:
        message: What is wrong with the field and what would be accepted.
        field: Dotted path of the offending field (``params.command``).
    """

    code = ErrorCode.INVALID_PARAMS

    def __init__(self, message: str, *, field: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.field = field
        if field is not None:
            self.data.setdefault("field", field)


class SessionError(SandboxError):
    """No such session, it failed to start, or it is already gone."""

    code = ErrorCode.SESSION_ERROR


class BackendError(SandboxError):
    """The container, its agent or the Docker engine failed."""

    code = ErrorCode.BACKEND_ERROR


class SandboxTimeout(SandboxError, TimeoutError):
    """A call ran past its timeout; what it printed so far is in `data`."""

    code = ErrorCode.TIMEOUT


class SandboxConnectionError(SandboxError, ConnectionError):
    """The client got no envelope: the server is unreachable or sent garbage."""

    code = ErrorCode.INTERNAL


_BY_CODE: dict[int, type[SandboxError]] = {
    cls.code: cls
    for cls in (ToolNotFound, InvalidParams, SessionError, BackendError, SandboxTimeout)
}


def error_from_envelope(envelope: dict[str, Any]) -> SandboxError:
    """Rebuild the error an error envelope describes (the client's `raise_for_code`)."""
    cls = _BY_CODE.get(int(envelope.get("code", ErrorCode.INTERNAL)), SandboxError)
    meta = envelope.get("meta") or {}
    data = envelope.get("data") if isinstance(envelope.get("data"), dict) else None
    kwargs: dict[str, Any] = {
        "data": data,
        "tool": meta.get("tool"),
        "session_id": meta.get("session_id"),
    }
    message = str(envelope.get("message", "unknown error"))
    if cls is InvalidParams:
        return InvalidParams(message, field=(data or {}).get("field"), **kwargs)
    return cls(message, **kwargs)
