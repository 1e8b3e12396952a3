"""The ``/ui`` live view over noVNC: Debian's noVNC files and the RFB-over-WebSocket bridge.

``GET /ui/novnc/...`` serves noVNC's modules from the ``novnc`` package
(setting ``live_view.novnc_dir``); without them the page falls back to
refreshed screenshots. ``WS /ui/vnc/{session_id}`` authenticates like the
page's reads (the login cookie, or ``Authorization: Bearer <key>``), only for
the session's own tenant, and bridges the browser to an x11vnc the session's
agent starts for this one viewer (`sandbox.agent.toolsets._desktop_vnc`).

View-only unless asked: the bridge parses the viewer's RFB stream
(`sandbox.server.rfb`) and drops every input message, and the agent starts
x11vnc with ``-viewonly``. A view that sends input needs a grant from
``POST /ui/control/{session_id}``, which takes the API key itself (never the
read-only cookie; see `sandbox.server.ui_auth`), offered as the subprotocol
``sandbox-control.<grant>``.

What comes from the container is hostile: the agent's answer is bounded
(`open_stream`), the bridge reads at most `_CHUNK_BYTES` at a time and only as
fast as the browser takes them, a view lasts at most ``live_view.max_seconds``,
and viewers are capped per session and in all. Watching, like the screenshots,
is not the worker's call: not recorded, and the session's expiry does not move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from starlette.websockets import WebSocketDisconnect

from ...agent.tools.desktop_vnc import VNC_STREAM
from ...config import Settings
from ...errors import SandboxError, SessionError, ToolNotFound
from ...runtime.agent import AgentStream
from ...sessions.table import Session
from ..deps import Services, ServicesDep, TenantDep, tenant_of_token
from ..envelope import new_meta, respond, success
from ..rfb import ClientFilter, RfbViolation
from ..ui_auth import COOKIE_NAME, grant_valid, issue_grant, tenant_of_cookie
from .ui import LIVE_VIEW_TOOL

public = APIRouter(prefix="/ui", tags=["ui"])
router = APIRouter(prefix="/ui", tags=["ui"])
log = logging.getLogger(__name__)

CONTROL_PROTOCOL_PREFIX = "sandbox-control."
"""A viewer offers its grant of control as the WebSocket subprotocol
``sandbox-control.<grant>`` (beside noVNC's ``binary``): in a header, never in
the URL, so no access log or proxy line holds it."""
WS_MAX_MESSAGE_BYTES = 2 << 20
"""Largest WebSocket message a viewer may send (a clipboard text of 1 MiB fits)."""
_CHUNK_BYTES = 64 << 10
_OPEN_TIMEOUT_S = 10.0
_NOVNC_PARTS = ("core", "vendor")
"""The directories of noVNC the page imports (its RFB client and pako)."""

# Close codes (4000-4999 are the application's): the page shows the reason.
CLOSE_NO_SESSION = 4404
CLOSE_BUSY = 4429
CLOSE_BACKEND = 4502
CLOSE_PROTOCOL = 1008
CLOSE_DONE = 1000


def _own_session(services: Services, tenant: str, session_id: str) -> Session:
    """The tenant's live session `session_id` that has a screen.

    Raises:
        SessionError: No such session of this tenant (another tenant's is not told apart).
    """
    screen_type = LIVE_VIEW_TOOL.split(":", 1)[0]
    for session in services.sessions.sessions(tenant=tenant):
        if session.session_id == session_id and session.resource_type == screen_type:
            return session
    raise SessionError(
        f"no live {screen_type} session {session_id!r} of this API key "
        "(GET /ui/sessions lists them)",
        session_id=session_id,
    )


@public.get("/novnc/{path:path}")
def novnc(path: str, services: ServicesDep) -> FileResponse:
    """noVNC's modules, from Debian's ``novnc`` package (404: the page uses screenshots)."""
    live = services.settings.live_view
    parts = Path(path).parts
    if (
        not live.vnc
        or len(parts) < 2
        or parts[0] not in _NOVNC_PARTS
        or any(part in ("..", ".") or part.startswith(".") for part in parts)
        or not path.endswith(".js")
    ):
        raise ToolNotFound(f"no noVNC module {path[:200]!r}")
    file = live.novnc_dir / path
    if not file.is_file():
        raise ToolNotFound(
            f"no noVNC module {path[:200]!r} in {live.novnc_dir} (install Debian's novnc)"
        )
    return FileResponse(file, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


@router.post("/control/{session_id}")
def control(session_id: str, services: ServicesDep, tenant: TenantDep) -> JSONResponse:
    """A short-lived grant to open a live view that sends input (needs the API key):
    offer it as the WebSocket subprotocol ``sandbox-control.<grant>``."""
    # The cookie authenticates reads only, so `tenant` came from the API key itself.
    _own_session(services, tenant, session_id)
    ttl = services.settings.live_view.control_grant_s
    grant = issue_grant(services.live_views.grant_secret, tenant, session_id, ttl)
    log.info("control of the live view of %s granted to tenant %s", session_id, tenant)
    data = {"session_id": session_id, "grant": grant, "expires_in_s": ttl}
    return respond(success(data, new_meta(tool="ui", session_id=session_id)))


def _websocket_tenant(settings: Settings, websocket: WebSocket) -> str | None:
    """The viewer's tenant: its bearer key, else its login cookie; None: neither is good."""
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return tenant_of_token(settings, token.strip())
    tenant = tenant_of_cookie(settings, websocket.cookies.get(COOKIE_NAME))
    return tenant if tenant is not None else tenant_of_token(settings, None)


def _same_origin(websocket: WebSocket) -> bool:
    """A browser's page of another site may not open a view with this site's cookie."""
    origin = websocket.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == websocket.headers.get("host")


def _grant_of(offered: list[str]) -> str | None:
    """The grant of control a viewer offers as a WebSocket subprotocol, if any."""
    for protocol in offered:
        if protocol.startswith(CONTROL_PROTOCOL_PREFIX):
            return protocol[len(CONTROL_PROTOCOL_PREFIX) :]
    return None


@public.websocket("/vnc/{session_id}")
async def vnc(websocket: WebSocket, session_id: str) -> None:
    """The session's screen over RFB, view-only unless a grant of control is offered."""
    services: Services = websocket.app.state.services
    settings = services.settings
    tenant = _websocket_tenant(settings, websocket)
    if tenant is None or not _same_origin(websocket) or not settings.live_view.vnc:
        await websocket.close(code=CLOSE_PROTOCOL)  # before accept: HTTP 403
        return
    offered = list(websocket.scope.get("subprotocols") or [])
    grant = _grant_of(offered)
    secret = services.live_views.grant_secret
    view_only = not (grant and grant_valid(secret, grant, tenant, session_id))
    # A browser that offered subprotocols fails a handshake that picks none.
    await websocket.accept(subprotocol="binary" if "binary" in offered else None)
    if grant and view_only:
        await websocket.close(CLOSE_PROTOCOL, "the grant of control is wrong or expired")
        return
    try:
        session = _own_session(services, tenant, session_id)
    except SessionError as exc:
        await websocket.close(CLOSE_NO_SESSION, _reason(exc.message))
        return
    with services.live_views.viewers.claim(session_id) as free:
        if not free:
            await websocket.close(CLOSE_BUSY, "too many live views (setting live_view.viewers*)")
            return
        max_seconds = settings.live_view.max_seconds
        query = {"view_only": "1" if view_only else "0", "max_seconds": f"{max_seconds:g}"}
        try:
            stream = await services.sessions.open_stream(
                session, VNC_STREAM, query, _OPEN_TIMEOUT_S
            )
        except SandboxError as exc:
            await websocket.close(CLOSE_BACKEND, _reason(exc.message))
            return
        mode = "view-only" if view_only else "with control"
        log.info("live view of %s opened %s by tenant %s", session_id, mode, tenant)
        rfb = ClientFilter(view_only=view_only)
        try:
            code, reason = await bridge(websocket, stream, rfb, max_seconds)
        finally:
            await stream.aclose()
    log.info(
        "live view of %s closed: %s; input dropped: %s",
        session_id,
        reason or "the viewer left",
        rfb.dropped or "none",
    )
    if code is not None:
        with contextlib.suppress(RuntimeError, OSError):
            await websocket.close(code, _reason(reason))


async def bridge(
    websocket: WebSocket, stream: AgentStream, rfb: ClientFilter, max_seconds: float
) -> tuple[int | None, str]:
    """Pass RFB both ways until either side ends, the viewer breaks the protocol,
    or `max_seconds` pass; the close code and reason (code None: the viewer left)."""

    async def to_viewer() -> tuple[int | None, str]:
        while chunk := await stream.reader.read(_CHUNK_BYTES):
            await websocket.send_bytes(chunk)  # waits while the browser is slow
        return CLOSE_DONE, "the session's VNC server ended the view"

    async def to_server() -> tuple[int | None, str]:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return None, ""
            data = message.get("bytes")
            if data is None:
                raise RfbViolation("a text message: RFB travels in binary messages")
            if len(data) > WS_MAX_MESSAGE_BYTES:
                raise RfbViolation(f"a message of {len(data)} bytes (most {WS_MAX_MESSAGE_BYTES})")
            passed = rfb.feed(data)
            if passed:
                stream.writer.write(passed)
                await stream.writer.drain()

    tasks = [asyncio.ensure_future(to_viewer()), asyncio.ensure_future(to_server())]
    try:
        done, _ = await asyncio.wait(
            tasks, timeout=max_seconds, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if not done:
        return CLOSE_DONE, "the view reached its time limit (setting live_view.max_seconds)"
    error = next(iter(done)).exception()
    if isinstance(error, RfbViolation):
        return CLOSE_PROTOCOL, f"not RFB the live view accepts: {error}"
    if isinstance(error, WebSocketDisconnect):
        return None, ""
    if isinstance(error, (OSError, ConnectionError)):
        return CLOSE_BACKEND, "the connection to the session's VNC server failed"
    if error is not None:
        raise error
    return next(iter(done)).result()


def _reason(text: str) -> str:
    """A WebSocket close reason: at most 123 bytes of UTF-8."""
    return text.encode()[:123].decode(errors="ignore")


__all__ = ["bridge", "public", "router"]
