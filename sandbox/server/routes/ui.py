"""The web page at ``/ui``: live sessions, warm pools, trajectories, a desktop's screen.

The page is static (``sandbox/server/static/``: HTML, vanilla JavaScript, CSS; no
build step) and reads the JSON API: ``GET /ui/sessions`` and ``GET /ui/screen/...``
here, ``/warmup/status`` and ``/trajectories`` as any client does. A browser logs
in once with an API key (``POST /ui/login``) and then holds a read-only cookie
(`sandbox.server.ui_auth`); with no API key configured the page is open, like
the rest of the API.

The live view is noVNC where it can be (`sandbox.server.routes.ui_vnc`), else
refreshed screenshots from here: the only tool these routes run is
``vm:screenshot``, through `SessionManager.look`, which is not the worker's call:
it is not recorded, not counted, and pushes neither the session's expiry nor its
last use.
"""

from __future__ import annotations

import base64
import binascii
import functools
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ...agent.tools.desktop import MAX_SCREEN_SIZE
from ...errors import BackendError, SessionError, ToolNotFound
from ..deps import ServicesDep, TenantDep, tenant_of_token
from ..envelope import new_meta, respond, success
from ..ui_auth import COOKIE_NAME, COOKIE_TTL_S, issue_cookie

public = APIRouter(prefix="/ui", tags=["ui"])
router = APIRouter(prefix="/ui", tags=["ui"])

LIVE_VIEW_TOOL = "vm:screenshot"
"""The one tool the live view runs (what sessions it names have a screen)."""
_LIVE_VIEW_TIMEOUT_S = 10.0
_ASSETS = {"ui.js": "text/javascript", "ui.css": "text/css"}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' blob: data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@functools.cache
def _asset(name: str) -> bytes:
    return (resources.files("sandbox.server") / "static" / name).read_bytes()


@public.get("", response_class=HTMLResponse)
def page() -> HTMLResponse:
    """The page (it holds no data: its scripts read the API)."""
    return HTMLResponse(_asset("index.html"), headers=_HEADERS)


@public.get("/static/{name}")
def asset(name: str) -> Response:
    """The page's script and style sheet."""
    if name not in _ASSETS:
        raise ToolNotFound(f"no asset {name!r}: the page has {', '.join(_ASSETS)}")
    return Response(_asset(name), media_type=_ASSETS[name], headers=_HEADERS)


class LoginRequest(BaseModel):
    """What the login form sends."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(max_length=4096, description="One of the server's API keys.")


@public.post("/login")
def login(body: LoginRequest, request: Request, services: ServicesDep) -> JSONResponse:
    """Exchange an API key for the page's read-only login cookie."""
    settings = services.settings
    tenant = tenant_of_token(settings, body.key)
    if tenant is None:
        raise HTTPException(status_code=401, detail="wrong API key")
    data = {"tenant": tenant, "keys": bool(settings.tenant_keys())}
    response = respond(success(data, new_meta(tool="ui")))
    if data["keys"]:
        response.set_cookie(
            COOKIE_NAME,
            issue_cookie(settings, tenant),
            max_age=COOKIE_TTL_S,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
    return response


@public.post("/logout")
def logout() -> JSONResponse:
    """Drop the login cookie."""
    response = respond(success({"logged_out": True}, new_meta(tool="ui")))
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return response


@router.get("/sessions")
def sessions(services: ServicesDep, tenant: TenantDep) -> JSONResponse:
    """This API key's live sessions: worker, resource, age, expiry and pool origin."""
    manager = services.sessions
    now = manager.clock()
    screen_type = LIVE_VIEW_TOOL.split(":", 1)[0]
    rows = []
    for session in sorted(manager.sessions(tenant=tenant), key=lambda s: s.created_at):
        row = session.info().model_dump()
        row.update(
            origin=manager.origin(session),
            age_s=round(now - session.created_at, 1),
            expires_in_s=round(session.expires_at - now, 1),
            calls=session.call_count,
            live_view=session.resource_type == screen_type,
        )
        rows.append(row)
    data = {"tenant": tenant, "keys": bool(services.settings.tenant_keys()), "now": now}
    data.update(sessions=rows, count=len(rows))
    return respond(success(data, new_meta(tool="ui")))


@router.get("/screen/{session_id}", response_class=Response)
async def screen(
    session_id: str,
    services: ServicesDep,
    tenant: TenantDep,
    max_width: Annotated[int, Query(ge=64, le=MAX_SCREEN_SIZE[0])] = 1280,
    quality: Annotated[int, Query(ge=1, le=95)] = 60,
) -> Response:
    """The session's screen now, as JPEG (not recorded, does not keep the session alive)."""
    found = [s for s in services.sessions.sessions(tenant=tenant) if s.session_id == session_id]
    if not found:
        raise SessionError(
            f"no live session {session_id!r} of this API key (GET /ui/sessions lists them)",
            session_id=session_id,
        )
    params = {"format": "jpeg", "quality": quality, "max_width": max_width}
    async with services.live_views.screenshots:
        data = await services.sessions.look(found[0], LIVE_VIEW_TOOL, params, _LIVE_VIEW_TIMEOUT_S)
    headers = {**_HEADERS, "Cache-Control": "no-store"}
    return Response(_jpeg(data.get("image")), media_type="image/jpeg", headers=headers)


def _jpeg(encoded: object) -> bytes:
    """The JPEG bytes of an agent's screenshot (the agent is not trusted to send one)."""
    try:
        image = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else b""
    except binascii.Error:
        image = b""
    if not image.startswith(b"\xff\xd8\xff"):
        raise BackendError("the session's agent answered the screenshot with no JPEG image")
    return image


__all__ = ["LIVE_VIEW_TOOL", "public", "router"]
