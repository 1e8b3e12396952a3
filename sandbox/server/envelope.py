"""The response envelope, trace ids, and the mapping of every error onto it.

Every response, errors included, is ``{code, message, data, meta}``. Errors of
this package map by their code; request validation failures become 1002 naming
the field; anything unexpected becomes 5000 with the trace id and no traceback.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ErrorCode, SandboxError
from ..protocol import Envelope, Meta
from ..sessions.registry import invalid_from_errors

log = logging.getLogger(__name__)

trace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="")


def new_meta(**fields: Any) -> Meta:
    """Response metadata carrying the current request's trace id."""
    return Meta(trace_id=trace_id_var.get() or None, **fields)


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


def respond(envelope: Envelope, status: int | None = None) -> JSONResponse:
    """Send `envelope` with the HTTP status its code maps to."""
    try:
        code = ErrorCode(envelope.code)
    except ValueError:
        code = ErrorCode.INTERNAL
    return JSONResponse(envelope.model_dump(), status_code=status or code.http_status)


class TraceMiddleware:
    """Gives each request a trace id and answers unexpected exceptions with 5000.

    The trace id is the request's ``X-Trace-ID`` or a new one; it is echoed in the
    response headers and in every envelope's meta. An exception no handler took is
    logged with its traceback and answered with a 5000 envelope naming the trace
    id, never the traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-trace-id", b"").decode("latin-1")
        trace_id = given[:64] if given else secrets.token_hex(8)
        token = trace_id_var.set(trace_id)
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
            trace_id_var.reset(token)


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
        if exc.status_code == 404:
            code, message = ErrorCode.TOOL_NOT_FOUND, f"no endpoint {request.url.path}"
        elif exc.status_code == 405:
            code = ErrorCode.INVALID_PARAMS
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            code, message = ErrorCode.INVALID_PARAMS, str(exc.detail)
        envelope = Envelope(code=int(code), message=message, meta=new_meta())
        return respond(envelope, status=exc.status_code)


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
