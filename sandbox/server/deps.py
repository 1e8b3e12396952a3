"""What route handlers depend on: the services, the worker id, the API key and its tenant."""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import Scope

from ..config import DEFAULT_TENANT, Settings
from ..errors import InvalidParams
from ..protocol import WORKER_ID_PATTERN
from ..recording import Recorder
from ..runtime.base import Runtime
from ..runtime.images import ImageService
from ..sessions.manager import SessionManager
from ..sessions.registry import ToolRegistry
from .context import worker_var
from .live_view import LiveViews
from .metrics import ServerMetrics
from .ui_auth import COOKIE_NAME, READ_METHODS, tenant_of_cookie


@dataclass
class Services:
    """Everything the lifespan builds, shared by all routes."""

    settings: Settings
    runtime: Runtime
    registry: ToolRegistry
    images: ImageService
    sessions: SessionManager
    request_shutdown: Callable[[], None]
    live_views: LiveViews
    """What the ``/ui`` live views of all browsers share (limits, the grant secret)."""
    started_at: float = field(default_factory=time.time)
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    recorder: Recorder | None = None
    """Stores the calls of recorded sessions (None: this app records nothing)."""


# The dependencies are `async def` though they never wait: FastAPI runs a plain
# `def` dependency in its thread pool, a thread hop on every request.


async def get_services(request: Request) -> Services:
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
    description="An API key of the server (SANDBOX_API_KEY or one of SANDBOX_API_KEYS), "
    "when it has any; the key decides the tenant whose sessions the request sees.",
)


def tenant_of_token(settings: Settings, token: str | None) -> str | None:
    """The tenant whose API key `token` is; None when it is no configured key.

    Without any key configured every caller is the default tenant. Every key is
    compared, in constant time, whichever matches: the time taken tells an
    attacker neither how much of a guess was right nor which tenant it was near.
    """
    keys = settings.tenant_keys()
    if not keys:
        return DEFAULT_TENANT
    # Header values arrive decoded as latin-1: this gives back the bytes sent.
    given = (token or "").encode("latin-1", "replace")
    found = None
    for name, key in keys.items():
        if hmac.compare_digest(given, key.get_secret_value().encode()):
            found = name
    return found


def tenant_of_scope(settings: Settings, scope: Scope) -> str | None:
    """`tenant_of_token` for a raw ASGI request (middleware runs before the routes)."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return tenant_of_token(settings, token.strip())
            break
    return tenant_of_token(settings, None)


async def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """Refuse the request (401) unless it carries a configured API key; its tenant.

    Without the header, a read (GET, HEAD) may carry the ``/ui`` login cookie
    instead (`sandbox.server.ui_auth`).
    """
    settings = request.app.state.services.settings
    tenant = tenant_of_token(settings, credentials.credentials if credentials else None)
    if tenant is None and credentials is None and request.method in READ_METHODS:
        tenant = tenant_of_cookie(settings, request.cookies.get(COOKIE_NAME))
    if tenant is None:
        raise HTTPException(
            status_code=401,
            detail="missing or wrong API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant


TenantDep = Annotated[str, Depends(require_api_key)]
"""The caller's tenant; the same dependency the guarded routers run, so it runs once."""


def ensure_admin(settings: Settings, tenant: str, what: str) -> None:
    """Refuse (403) unless `tenant` is one of `admin_tenants`.

    The operator's endpoints act on every tenant at once (shutdown, pool sizes), so
    holding some API key is not enough.
    """
    if tenant not in settings.admin_tenants:
        raise HTTPException(
            status_code=403,
            detail=f"tenant {tenant!r} may not {what}: only the operator's tenants "
            f"(setting admin_tenants) may",
        )


async def require_admin(request: Request, tenant: TenantDep) -> str:
    """The caller's tenant when it is an operator (see `ensure_admin`), else 403."""
    ensure_admin(request.app.state.services.settings, tenant, f"call {request.url.path}")
    return tenant


AdminDep = Annotated[str, Depends(require_admin)]
"""The caller's tenant, which must be an operator (one of `admin_tenants`)."""
