"""What route handlers depend on: the services, the worker id, the API key check."""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..config import Settings
from ..errors import InvalidParams
from ..protocol import WORKER_ID_PATTERN
from ..runtime.docker import DockerRuntime
from ..runtime.images import ImageService
from ..sessions.manager import SessionManager
from ..sessions.registry import ToolRegistry
from .context import worker_var
from .metrics import ServerMetrics


@dataclass
class Services:
    """Everything the lifespan builds, shared by all routes."""

    settings: Settings
    runtime: DockerRuntime
    registry: ToolRegistry
    images: ImageService
    sessions: SessionManager
    request_shutdown: Callable[[], None]
    started_at: float = field(default_factory=time.time)
    metrics: ServerMetrics = field(default_factory=ServerMetrics)


def get_services(request: Request) -> Services:
    """The services the lifespan stored on the app."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
WorkerHeader = Annotated[str | None, Header(alias="X-Worker-ID")]


def worker_of(body_worker: str | None, header_worker: str | None) -> str:
    """The request's worker id: from the body, else from the ``X-Worker-ID`` header.

    The id is also noted for the request's log lines.

    Raises:
        InvalidParams: Neither names a worker.
    """
    worker = body_worker or header_worker
    if not worker:
        raise InvalidParams(
            "worker_id: required (in the JSON body or the X-Worker-ID header)", field="worker_id"
        )
    if re.fullmatch(WORKER_ID_PATTERN, worker) is None:
        raise InvalidParams(
            "worker_id: must be 1-128 letters, digits or _.:@- starting with a letter or digit",
            field="worker_id",
        )
    worker_var.set(worker)
    return worker


# Declared so the OpenAPI document shows the bearer scheme; the check is ours.
_bearer = HTTPBearer(
    auto_error=False,
    description="The server's API key (SANDBOX_API_KEY), when it has one.",
)


def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Refuse the request (401) unless it carries the configured API key.

    The comparison takes the same time whatever the key sent, so it tells an
    attacker nothing about how much of a guess was right.
    """
    expected = request.app.state.services.settings.api_key
    if expected is None:
        return
    given = credentials.credentials if credentials is not None else ""
    # Header values arrive decoded as latin-1: this gives back the bytes sent.
    if not hmac.compare_digest(
        given.encode("latin-1", "replace"), expected.get_secret_value().encode()
    ):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
