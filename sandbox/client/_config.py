"""Settings of the HTTP client and of the `Sandbox` facade."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_SERVER_URL: Final = "http://127.0.0.1:18890"


def new_worker_id() -> str:
    """A fresh worker id, ``worker-<8 hex digits>``."""
    return f"worker-{uuid.uuid4().hex[:8]}"


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{value!r} must start with http:// or https://")
    return value.rstrip("/")


class HTTPClientConfig(BaseModel):
    """How `HTTPServiceClient` reaches the server.

    The fields and their names are AgentFlow's ``HTTPClientConfig``'s, plus
    `api_key`. The model is frozen; build a changed copy with
    ``config.model_copy(update={...})``. `api_key` is left out of ``repr()`` and
    ``str()`` so it does not end up in logs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = DEFAULT_SERVER_URL
    """Root URL of the server, e.g. ``http://127.0.0.1:18890``."""
    timeout: float = Field(default=60.0, gt=0)
    """Seconds an HTTP call may take; tool calls wait at least their tool timeout + 15 s."""
    max_retries: int = Field(default=3, ge=0)
    """Extra attempts after a transport failure (never after an HTTP error status)."""
    retry_delay: float = Field(default=0.5, ge=0)
    """Backoff base in seconds: retry ``n`` (from 0) waits ``retry_delay * 2**n``."""
    auto_heartbeat: bool = True
    """Whether `connect` (and entering the client's ``with`` block) starts sending
    a heartbeat every `heartbeat_interval` seconds until the client is closed, so
    the worker's sessions do not expire while it thinks."""
    heartbeat_interval: float = Field(default=30.0, gt=0)
    """Seconds between two heartbeats."""
    worker_id: str | None = Field(default_factory=new_worker_id)
    """Worker sent with every call that does not name one; ``None`` (or leaving it
    out) gets a fresh ``worker-<8 hex digits>``."""
    api_key: str | None = Field(default=None, repr=False)
    """Sent as ``Authorization: Bearer <key>``; never logged or shown."""

    @field_validator("base_url")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("worker_id")
    @classmethod
    def _some_worker(cls, value: str | None) -> str:
        # As in AgentFlow: a config always names a worker (a call may still send none).
        return value or new_worker_id()


class SandboxConfig(BaseModel):
    """Everything a `Sandbox` is made with (AgentFlow's ``SandboxConfig`` fields).

    ``Sandbox(config=SandboxConfig(...))`` and ``Sandbox(**fields)`` are the same.
    The model is frozen; `api_key` is never shown.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    server_url: str = DEFAULT_SERVER_URL
    """Root URL of the server."""
    worker_id: str | None = Field(default_factory=new_worker_id)
    """This worker's id; ``None`` (or leaving it out) gets ``worker-<8 hex digits>``."""
    timeout: float = Field(default=60.0, gt=0)
    """HTTP timeout in seconds (tool calls wait at least their own timeout + 15 s)."""
    auto_start_server: bool = False
    """When nothing answers at a 127.0.0.1/localhost URL, start ``sandbox serve``
    there (and stop it on close)."""
    server_config_path: str | Path | None = None
    """Profile file of a server started here (``sandbox serve --config``)."""
    server_startup_timeout: float = Field(default=60.0, gt=0)
    """Seconds a server started here may take to answer."""
    server_check_interval: float = Field(default=0.25, gt=0)
    """Seconds between two probes of a server being started here."""
    warmup_resources: list[str] | None = None
    """Resource types `start` warms (images built, shared services and pools up)."""
    retry_count: int = Field(default=3, ge=0)
    """Extra attempts after a transport failure."""
    log_level: str | None = None
    """Level of the ``sandbox.client`` logger (``"DEBUG"``, ``"INFO"``, ...); ``None``
    leaves it as the application configured it."""
    api_key: str | None = Field(default=None, repr=False)
    """Sent as ``Authorization: Bearer <key>``; never logged or shown."""

    @field_validator("server_url")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("worker_id")
    @classmethod
    def _some_worker(cls, value: str | None) -> str:
        return value or new_worker_id()

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str | None) -> str | None:
        if value is None:
            return None
        level = value.upper()
        if level not in {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    def client_config(self) -> HTTPClientConfig:
        """The `HTTPClientConfig` of the client a `Sandbox` talks through.

        The facade keeps its worker's sessions alive through its calls, so, as in
        AgentFlow, it sends no heartbeats of its own.
        """
        return HTTPClientConfig(
            base_url=self.server_url,
            timeout=self.timeout,
            max_retries=self.retry_count,
            worker_id=self.worker_id,
            api_key=self.api_key,
            auto_heartbeat=False,
        )


def merged_client_config(
    config: HTTPClientConfig | None,
    *,
    base_url: str | None = None,
    worker_id: str | None = None,
    timeout: float | None = None,
) -> HTTPClientConfig:
    """`config` (default `HTTPClientConfig()`) with the values given here put in.

    `HTTPServiceClient` takes AgentFlow's ``base_url``, ``worker_id`` and ``timeout``
    arguments besides a whole config; a value given both ways wins as an argument.
    """
    if isinstance(base_url, HTTPClientConfig):  # the first argument used to be the config
        raise TypeError("pass an HTTPClientConfig as config=..., not as base_url")
    given = {
        key: value
        for key, value in {"base_url": base_url, "worker_id": worker_id, "timeout": timeout}.items()
        if value is not None
    }
    if config is None:
        return HTTPClientConfig.model_validate(given)
    if not given:
        return config
    return HTTPClientConfig.model_validate({**config.model_dump(), **given})
