"""Errors a tool call can end with, each mapped to one HTTP status and error kind.

The server turns a `ToolError` into the body
``{"ok": false, "error": {"kind", "message", "field", "data"}}`` with the status of
its class; any other exception becomes kind ``failed``::

    ToolError                    (Exception)
    ├── Unauthorized             401 unauthorized
    ├── ToolNotFound             404 not_found
    ├── InvalidParams            400 invalid_params, names the offending `field`
    │   └── RequestTooLarge      413 invalid_params, the body is over 64 MiB
    ├── ToolTimeout              504 timeout, `data` holds the partial output (also TimeoutError)
    ├── Unavailable              503 unavailable, not ready yet (an index still building)
    └── ToolFailed               500 failed

`ConfigError` is separate: it stops the agent from starting and never reaches a caller.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ToolError(Exception):
    """A tool call that ended with an error the caller should see.

    Args:
        message: What went wrong, for a person (no traceback).
        field: The request parameter at fault, if one is.
        data: Extra structured detail, such as partial output.
    """

    kind: ClassVar[str] = "failed"
    status: ClassVar[int] = 500

    def __init__(
        self, message: str, *, field: str | None = None, data: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.data: dict[str, Any] = data if data is not None else {}

    def to_body(self) -> dict[str, Any]:
        """The JSON body the server answers with."""
        return {
            "ok": False,
            "error": {
                "kind": self.kind,
                "message": self.message,
                "field": self.field,
                "data": self.data,
            },
        }


class Unauthorized(ToolError):
    """The request carried no token or the wrong one."""

    kind = "unauthorized"
    status = 401


class ToolNotFound(ToolError):
    """No tool (or route) of that name is registered."""

    kind = "not_found"
    status = 404


class InvalidParams(ToolError):
    """A parameter is missing, of the wrong type, or names something unusable."""

    kind = "invalid_params"
    status = 400


class RequestTooLarge(InvalidParams):
    """The request body is over the agent's limit."""

    status = 413


class ToolTimeout(ToolError, TimeoutError):
    """The call ran past its timeout; whatever it printed so far is in `data`."""

    kind = "timeout"
    status = 504


class Unavailable(ToolError):
    """The tool cannot answer yet, e.g. its index is still building; try again later."""

    kind = "unavailable"
    status = 503


class ToolFailed(ToolError):
    """The agent itself failed while running the call."""

    kind = "failed"
    status = 500


class ConfigError(ValueError):
    """The agent's settings are unusable, so it refuses to start."""
