"""Settings of the HTTP client."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class HTTPClientConfig(BaseModel):
    """How `HTTPServiceClient` reaches the server.

    The model is frozen; build a changed copy with ``config.model_copy(update={...})``.
    `api_key` is left out of ``repr()`` and ``str()`` so it does not end up in logs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = "http://127.0.0.1:18890"
    """Root URL of the server, e.g. ``http://127.0.0.1:18890``."""
    timeout: float = Field(default=60.0, gt=0)
    """Seconds an HTTP call may take; tool calls wait at least their tool timeout + 15 s."""
    max_retries: int = Field(default=3, ge=0)
    """Extra attempts after a transport failure (never after an HTTP error status)."""
    retry_delay: float = Field(default=0.5, ge=0)
    """Backoff base in seconds: retry ``n`` (from 0) waits ``retry_delay * 2**n``."""
    worker_id: str | None = None
    """Worker sent with every call that does not name one."""
    api_key: str | None = Field(default=None, repr=False)
    """Sent as ``Authorization: Bearer <key>``; never logged or shown."""

    @field_validator("base_url")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url {value!r} must start with http:// or https://")
        return value.rstrip("/")
