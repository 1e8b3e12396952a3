"""De-duplication of retried requests by ``X-Request-ID``.

The client sends one request id per logical call and reuses it on every retry of
a transport failure. The first request with an id runs; a retry that arrives while
it runs waits for it; a retry after it finished gets the same response replayed.
So a retried POST never runs a tool twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_MAX_ID_LENGTH = 128


@dataclass
class _Recorded:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    finished_at: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)


class RequestDeduplication:
    """ASGI middleware replaying the response of an already-seen request id.

    Args:
        app: The wrapped application.
        ttl_s: How long a finished response is kept.
        max_bytes: Most response bytes kept; the oldest go first.
    """

    def __init__(self, app: ASGIApp, *, ttl_s: float = 600.0, max_bytes: int = 64 << 20) -> None:
        self.app = app
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._seen: OrderedDict[tuple[str, str], _Recorded] = OrderedDict()
        self._bytes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = _request_id(scope)
        if scope["type"] != "http" or scope["method"] != "POST" or not request_id:
            await self.app(scope, receive, send)
            return
        self._expire()
        key = (scope["path"], request_id)
        recorded = self._seen.get(key)
        if recorded is not None:
            await recorded.done.wait()
            if recorded.status:
                await _replay(recorded, send)
                return
            # The first attempt died without a response: run this one for real.
        recorded = _Recorded()
        self._seen[key] = recorded
        try:
            await self.app(scope, receive, _recording(recorded, send))
        finally:
            recorded.finished_at = time.monotonic()
            recorded.done.set()
            if recorded.status:
                self._bytes += len(recorded.body)
            else:
                self._seen.pop(key, None)

    def _expire(self) -> None:
        horizon = time.monotonic() - self._ttl_s
        while self._seen:
            key, oldest = next(iter(self._seen.items()))
            if not oldest.done.is_set():
                break
            if oldest.finished_at > horizon and self._bytes <= self._max_bytes:
                break
            del self._seen[key]
            self._bytes -= len(oldest.body)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            return str(value.decode("latin-1"))[:_MAX_ID_LENGTH]
    return ""


def _recording(recorded: _Recorded, send: Send) -> Send:
    """A `send` that also copies the response into `recorded`.

    `recorded.status` is set only once the whole body went out, so a response cut
    short is never replayed.
    """
    status = 0

    async def record(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            recorded.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            recorded.body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                recorded.status = status
        await send(message)

    return record


async def _replay(recorded: _Recorded, send: Send) -> None:
    headers = [*recorded.headers, (b"x-request-replayed", b"1")]
    await send({"type": "http.response.start", "status": recorded.status, "headers": headers})
    await send({"type": "http.response.body", "body": bytes(recorded.body)})
