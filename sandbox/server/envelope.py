"""The response envelope, trace ids, and the mapping of every error onto it.

Every response, errors included, is ``{code, message, data, meta}``. Errors of
this package map by their code; request validation failures become 1002 naming
the field; anything unexpected becomes 5000 with the trace id and no traceback.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ErrorCode, SandboxError
from ..protocol import Envelope, Meta
from ..sessions.registry import invalid_from_errors
from .context import session_var, trace_id_var, worker_var

log = logging.getLogger(__name__)

_TRACE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def new_meta(**fields: Any) -> Meta:
    """Response metadata carrying the current request's trace id."""
    return Meta(trace_id=trace_id_var.get() or None, **fields)


def elapsed_ms(started: float) -> float:
    """Milliseconds since `started` (a `time.perf_counter()` reading), for meta."""
    return round((time.perf_counter() - started) * 1000, 2)


def success(data: Any, meta: Meta | None = None) -> Envelope:
    """A code-0 envelope."""
    return Envelope(data=data, meta=meta or new_meta())


def failure(error: SandboxError, meta: Meta | None = None) -> Envelope:
    """The envelope describing `error`."""
    meta = meta or new_meta()
    if meta.tool is None:
        meta.tool = error.tool
    if meta.session_id is None:
        meta.session_id = error.session_id
    return Envelope(code=int(error.code), message=error.message, data=error.data or None, meta=meta)


def respond(
    envelope: Envelope,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    top_level: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """Send `envelope` with the HTTP status its code maps to (or `status`).

    `top_level` adds keys beside ``code``, ``message``, ``data`` and ``meta``,
    for clients that read an answer without its envelope (AgentFlow's reads the
    tool list at the top level of ``/tools``).
    """
    try:
        code = ErrorCode(envelope.code)
    except ValueError:
        code = ErrorCode.INTERNAL
    body = envelope.model_dump()
    if top_level:
        body.update({key: value for key, value in top_level.items() if key not in body})
    return JSONResponse(body, status_code=status or code.http_status, headers=headers)


class TraceMiddleware:
    """Gives each request a trace id and answers unexpected exceptions with 5000.

    The trace id is the request's ``X-Trace-ID`` (1-64 letters, digits or ``._:-``;
    anything else is replaced) or a new one; it is echoed in the response headers,
    in every envelope's meta and in every log line of the request, and the
    request's worker and session are cleared for the routes to set. An exception
    no handler took is logged with its traceback and answered with a 5000 envelope
    naming the trace id, never the traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-trace-id", b"").decode("latin-1")
        # Echoed in a header and written to logs: only harmless characters.
        trace_id = given if _TRACE_ID.fullmatch(given) else secrets.token_hex(8)
        tokens = (trace_id_var.set(trace_id), worker_var.set(""), session_var.set(""))
        started = False

        async def send_with_trace(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-trace-id", trace_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace)
        except Exception:
            log.exception("internal error (trace_id %s) on %s", trace_id, scope.get("path"))
            if started:
                raise
            error = SandboxError(f"internal server error; the server log has trace_id {trace_id}")
            await respond(failure(error))(scope, receive, send_with_trace)
        finally:
            trace_id_var.reset(tokens[0])
            worker_var.reset(tokens[1])
            session_var.reset(tokens[2])


def install_error_handlers(app: FastAPI) -> None:
    """Make every error response an envelope."""

    @app.exception_handler(SandboxError)
    async def sandbox_error(request: Request, exc: SandboxError) -> JSONResponse:
        return respond(failure(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return respond(failure(invalid_from_errors(_body_relative(exc), "")))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        data: dict[str, str] | None = None
        if exc.status_code == 404:
            code, message = ErrorCode.TOOL_NOT_FOUND, f"no endpoint {request.url.path}"
        elif exc.status_code == 405:
            code = ErrorCode.INVALID_PARAMS
            message = f"{request.method} is not allowed on {request.url.path}"
        elif exc.status_code in (401, 403):
            code, message = ErrorCode.INVALID_PARAMS, str(exc.detail)
            data = {"field": "Authorization"}
        elif exc.status_code == 400:
            # A body FastAPI could not even parse (too deeply nested JSON, bad encoding).
            code, message = ErrorCode.INVALID_PARAMS, f"body: {exc.detail}"
            data = {"field": "body"}
        else:
            code, message = ErrorCode.INVALID_PARAMS, str(exc.detail)
        envelope = Envelope(code=int(code), message=message, data=data, meta=new_meta())
        return respond(envelope, status=exc.status_code, headers=exc.headers)


def _body_relative(exc: RequestValidationError) -> list[dict[str, Any]]:
    """The errors with FastAPI's leading ``body`` dropped from each location."""
    out = []
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        if error.get("type") == "json_invalid":
            loc = ("body",)
        elif loc[:1] == ("body",) and len(loc) > 1:
            loc = loc[1:]
        out.append({**error, "loc": loc})
    return out
