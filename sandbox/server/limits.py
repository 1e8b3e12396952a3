"""The request body size limit, enforced as the bytes arrive.

A body whose ``Content-Length`` is over the limit is refused before any of it is
read. A body without one (chunked) is counted as it streams in, and refused the
moment the count passes the limit, so no request ever makes the server hold more
than the limit in memory. Either way the answer is HTTP 413 with a 1002 envelope
naming ``body``.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InvalidParams
from .envelope import failure, respond

log = logging.getLogger(__name__)

_STATUS = 413


class BodySizeLimit:
    """ASGI middleware answering 413 to a request body over `max_bytes`.

    Args:
        app: The wrapped application.
        max_bytes: Largest body accepted.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send, declared)
            return

        received = 0
        refused = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] != "http.request":
                return message
            received += len(message.get("body", b""))
            if received <= self.max_bytes:
                return message
            if response_started:  # the app answers while streaming: cut it off
                return {"type": "http.disconnect"}
            refused = True
            await self._refuse(scope, receive, send, None)
            # The app sees the client go away and abandons the request.
            return {"type": "http.disconnect"}

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if refused:
                return  # the client already has its 413
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise
            # The app failed on the body it was denied; the client has its answer.
            log.debug("request abandoned after its body passed the limit", exc_info=True)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, declared: int | None
    ) -> None:
        size = f"{declared}-byte" if declared is not None else "streamed"
        error = InvalidParams(
            f"body: the {size} request body is over the server's {self.max_bytes}-byte limit "
            "(max_body_bytes); send less per request, e.g. smaller rag:index batches",
            field="body",
            data={"max_body_bytes": self.max_bytes},
        )
        log.warning("refused a request body over %d bytes on %s", self.max_bytes, scope["path"])
        await respond(failure(error), status=_STATUS)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server rejects these before they get here
    return None


__all__ = ["BodySizeLimit"]
