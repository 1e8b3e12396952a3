"""De-duplication of retried requests by ``X-Request-ID``, after authentication.

The client sends one request id per logical call and reuses it on every retry of
a transport failure. The first request with an id runs; a retry that arrives while
it runs waits for it; a retry after it finished gets the same response replayed.
So a retried POST never runs a tool twice.

Whose retry it is matters as much as its id:

* The cache is keyed by caller (the API key's tenant), worker, path and request
  id, and each entry remembers the SHA-256 digest of its body. A request that
  reuses an id with a different body is refused (1002 naming ``X-Request-ID``)
  rather than answered with another call's output.
* A request whose API key is missing or wrong is passed on untouched: the route
  answers it 401, and it neither sees nor leaves anything in the cache.
* The cache is bounded in entries and in bytes, running requests included. The
  oldest finished responses make room for new ones; only when every slot (or
  byte), or half the slots for one caller, is held by requests still running
  does a request run without de-duplication (its retries would run again)
  rather than being refused: the bound protects the server, a flood costs
  retry safety, never memory, and one caller's flood costs only its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InvalidParams
from .envelope import failure, respond

log = logging.getLogger(__name__)

_MAX_ID_LENGTH = 128
# Bodies above this are not parsed for their worker id (the digest still covers
# them): a screenshot-sized JSON parse per request would cost more than it tells.
_MAX_PARSED_BODY = 1 << 20
_WARN_EVERY_S = 60.0

Identify = Callable[[Scope], "str | None"]
"""Who is calling: the tenant of the request's API key, or None when it has none."""
_Key = tuple[str, str, str, str]
"""(caller, worker, path, request id)."""


@dataclass
class _Recorded:
    digest: bytes
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    finished_at: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    keep: bool = True
    """False once the response passed the byte bound: it is not replayed."""


class RequestDeduplication:
    """ASGI middleware replaying the response of an already-seen request id.

    Args:
        app: The wrapped application.
        identify: The caller of a request, None when unauthenticated.
        ttl_s: How long a finished response is kept.
        max_bytes: Most response bytes kept, running responses included.
        max_entries: Most request ids kept, running requests included.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        identify: Identify,
        ttl_s: float = 600.0,
        max_bytes: int = 64 << 20,
        max_entries: int = 4096,
    ) -> None:
        self.app = app
        self._identify = identify
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._max_entries = max_entries
        self._seen: OrderedDict[_Key, _Recorded] = OrderedDict()
        self._bytes = 0
        self._running: Counter[str] = Counter()
        """Requests running with a slot, by caller."""
        self._warned_at = -_WARN_EVERY_S

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request_id = _header(scope, b"x-request-id")[:_MAX_ID_LENGTH]
        caller = self._identify(scope) if request_id else None
        if caller is None:
            await self.app(scope, receive, send)
            return
        body, replay_receive = await _read_body(receive)
        if body is None:  # the client left (or the body limit cut it off) mid-body
            await self.app(scope, replay_receive, send)
            return
        key = (caller, _worker(scope, body), str(scope["path"]), request_id)
        digest = hashlib.sha256(body).digest()
        recorded = self._seen.get(key)
        if recorded is not None:
            if recorded.digest != digest:
                await _refuse_reuse(scope, replay_receive, send)
                return
            await recorded.done.wait()
            if recorded.status:
                await _replay(recorded, send)
                return
            # The first attempt died without a response: run this one for real.
        await self._run(key, digest, scope, replay_receive, send)

    async def _run(
        self, key: _Key, digest: bytes, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self._expire()
        caller = key[0]
        # One caller's running requests hold at most half the slots, so a caller
        # flooding slow requests cannot take retry safety from everyone else.
        crowded = self._running[caller] >= max(1, self._max_entries // 2)
        if crowded or (len(self._seen) >= self._max_entries and not self._evict_oldest_finished()):
            self._warn_full()
            await self.app(scope, receive, send)
            return
        recorded = self._seen[key] = _Recorded(digest)
        self._running[caller] += 1
        try:
            await self.app(scope, receive, self._recording(recorded, send))
        finally:
            self._running[caller] -= 1
            if not self._running[caller]:
                del self._running[caller]
            recorded.finished_at = time.monotonic()
            recorded.done.set()
            if not (recorded.status and recorded.keep):
                self._forget(key, recorded)

    def _recording(self, recorded: _Recorded, send: Send) -> Send:
        """A `send` that also copies the response into `recorded`, within the bound.

        `recorded.status` is set only once the whole body went out, so a response
        cut short is never replayed.
        """
        status = 0

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                recorded.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body" and recorded.keep:
                chunk = message.get("body", b"")
                if self._make_room(len(chunk)):
                    recorded.body.extend(chunk)
                    self._bytes += len(chunk)
                else:
                    recorded.keep = False
                    self._bytes -= len(recorded.body)
                    recorded.body = bytearray()
                if recorded.keep and not message.get("more_body", False):
                    recorded.status = status
            await send(message)

        return record

    def _make_room(self, size: int) -> bool:
        """Drop the oldest finished responses until `size` more bytes fit."""
        if self._bytes + size <= self._max_bytes:
            return True
        for key, old in list(self._seen.items()):
            if self._bytes + size <= self._max_bytes:
                break
            if old.done.is_set():
                self._forget(key, old)
        return self._bytes + size <= self._max_bytes

    def _evict_oldest_finished(self) -> bool:
        """Drop the oldest finished response to free a slot; False if all still run."""
        for key, old in self._seen.items():
            if old.done.is_set():
                self._forget(key, old)
                return True
        return False

    def _warn_full(self) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:  # a flood must not flood the log too
            self._warned_at = now
            log.warning(
                "%d requests with an X-Request-ID are running at once (dedup_max_entries, "
                "half of it per caller); more run without de-duplication",
                len(self._seen),
            )

    def _forget(self, key: _Key, recorded: _Recorded) -> None:
        if self._seen.get(key) is recorded:
            del self._seen[key]
            self._bytes -= len(recorded.body)
            recorded.body = bytearray()

    def _expire(self) -> None:
        horizon = time.monotonic() - self._ttl_s
        expired = []
        for key, old in self._seen.items():
            if not old.done.is_set():
                continue
            if old.finished_at > horizon:
                break  # started later, so (nearly always) finished later too
            expired.append((key, old))
        for key, old in expired:
            self._forget(key, old)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _worker(scope: Scope, body: bytes) -> str:
    """The request's worker id as the routes read it: the body's, else the header's."""
    if len(body) <= _MAX_PARSED_BODY:
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("worker_id"), str):
            return str(parsed["worker_id"])
    return _header(scope, b"x-worker-id")


async def _read_body(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole request body, and a `receive` that hands it to the app again.

    The body limit middleware outside this one bounds what is read here. None
    when the client disconnected before the body ended.
    """
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            pending: list[Message] = [message]
            body = None
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            body = b"".join(chunks)
            pending = [{"type": "http.request", "body": body, "more_body": False}]
            break

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return body, replay


async def _refuse_reuse(scope: Scope, receive: Receive, send: Send) -> None:
    error = InvalidParams(
        "X-Request-ID: this id was already used for a request with a different body; "
        "send a new id for a new request (reuse one only to retry the same request)",
        field="X-Request-ID",
    )
    await respond(failure(error))(scope, receive, send)


async def _replay(recorded: _Recorded, send: Send) -> None:
    headers = [*recorded.headers, (b"x-request-replayed", b"1")]
    await send({"type": "http.response.start", "status": recorded.status, "headers": headers})
    await send({"type": "http.response.body", "body": bytes(recorded.body)})
