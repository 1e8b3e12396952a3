"""The wire under `AgentClient`: HTTP/1.1 requests to agents on kept-alive connections.

Agents are this project's own stdlib HTTP servers, and they answer every request
with a ``Content-Length`` body: that one shape is all this client reads. A
general client (httpx over httpcore and anyio) spent about half a millisecond of
the server's CPU on each call, more than the rest of the proxy path; writing the
request in one piece and reading a head and then exactly its body costs a tenth
of that.

Whatever answers may be hostile (`sandbox.runtime.agent`), so a reply must keep
to that shape or the call fails: the head within `HEAD_MAX_BYTES`, a status line,
a ``Content-Length`` no larger than the caller's cap, no transfer or content
encoding. A connection is reused only after an exchange that completed; one
that failed, timed out or was cancelled midway is closed, so no half-read reply
can be taken for the next call's.

Failures to reach the peer are `OSError`s (`asyncio.IncompleteReadError` when it
closed mid-reply); replies of the wrong shape are `BackendError`. The deadline
is the caller's (`asyncio.wait_for` around `AgentConnections.exchange`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable

from ..errors import BackendError

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Connect = Callable[[], Awaitable[Streams]]
"""Opens a new connection to one agent."""
TcpConnect = Callable[[str, int], Awaitable[Streams]]
"""Opens a new TCP connection to an agent's host and port (directly, or through a relay)."""

HEAD_MAX_BYTES = 64 << 10
"""Largest answer head, and the stream reader's buffer."""
_IDLE_PER_AGENT = 16
_IDLE_EXPIRY_S = 60.0
_SWEEP_EVERY_S = 30.0


class Reply:
    """One answer: its status, its lower-cased headers and its body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


async def open_tcp(host: str, port: int) -> Streams:
    """A direct TCP connection with Nagle off (else each small answer waits ~40 ms
    for a delayed ACK)."""
    reader, writer = await asyncio.open_connection(host, port, limit=HEAD_MAX_BYTES)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes | None) -> bytes:
    """The request, head and body, ready to be written in one piece."""
    lines = [f"{method} {path} HTTP/1.1", "Host: agent"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body else head


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """The status and lower-cased headers of an answer head (its blank line included).

    Raises:
        BackendError: The first line is not an HTTP/1.x status line.
    """
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not (code.isdigit() and len(code) == 3):
        raise BackendError("the agent sent a malformed reply: no HTTP status line")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return int(code), headers


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """An answer's head, bounded by the reader's limit (`HEAD_MAX_BYTES`).

    Raises:
        BackendError: The head is longer than that.
        asyncio.IncompleteReadError: The peer closed first.
    """
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise BackendError(f"the agent's reply head exceeded {HEAD_MAX_BYTES} bytes") from None


def body_length(headers: dict[str, str], max_bytes: int) -> int:
    """How many body bytes follow a head with `headers`, at most `max_bytes`.

    Raises:
        BackendError: The body is encoded, chunked, of no stated length or too large.
    """
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding != "identity":
        raise BackendError(
            f"the agent sent a {encoding[:40]!r}-encoded reply; the server accepts only "
            "unencoded replies from agents"
        )
    if "transfer-encoding" in headers:
        raise BackendError(
            "the agent sent a reply without a Content-Length (Transfer-Encoding "
            f"{headers['transfer-encoding'][:40]!r}); agents state their reply's length"
        )
    declared = headers.get("content-length", "")
    if not declared.isdigit():
        raise BackendError("the agent sent a reply without a valid Content-Length")
    if int(declared) > max_bytes:
        raise _too_large(max_bytes)
    return int(declared)


def _too_large(max_bytes: int) -> BackendError:
    """The error of a reply over `max_bytes`."""
    return BackendError(
        f"the agent's reply exceeded {max_bytes} bytes (setting agent_reply_max_bytes)"
    )


class _Idle:
    __slots__ = ("reader", "since", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.since = time.monotonic()

    def usable(self, now: float) -> bool:
        # A peer that closed an idle connection has been read to EOF by the loop.
        return (
            now - self.since < _IDLE_EXPIRY_S
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )


class AgentConnections:
    """Kept-alive connections, a few idle ones per agent, and the exchanges on them.

    Args:
        max_connections: Most exchanges in flight at once, over all agents (each
            holds one connection); more wait for one to finish.
    """

    def __init__(self, max_connections: int = 1024) -> None:
        self._idle: dict[str, collections.deque[_Idle]] = {}
        self._in_flight = asyncio.Semaphore(max_connections)
        self._last_sweep = time.monotonic()

    async def exchange(self, key: str, connect: Connect, request: bytes, max_bytes: int) -> Reply:
        """Send `request` to the agent `key` names and read its reply (body up to `max_bytes`).

        An idle connection is reused when there is one; if it turns out the agent
        had closed it (no answer byte at all), the request goes once more on a
        new connection: the agent closes only connections without a request in
        flight, so it never saw this one.

        Raises:
            OSError: The agent cannot be reached or closed the connection midway.
            BackendError: The reply is not of the shape agents send.
        """
        async with self._in_flight:
            idle = self._take_idle(key)
            if idle is not None:
                try:
                    return await self._exchange_on(key, idle, request, max_bytes)
                except asyncio.IncompleteReadError as exc:
                    if exc.partial:
                        raise
                except ConnectionError:
                    pass
            reader, writer = await connect()
            return await self._exchange_on(key, _Idle(reader, writer), request, max_bytes)

    async def _exchange_on(self, key: str, conn: _Idle, request: bytes, max_bytes: int) -> Reply:
        done = False
        try:
            conn.writer.write(request)
            await conn.writer.drain()
            head = await read_head(conn.reader)
            status, headers = parse_head(head)
            body = await conn.reader.readexactly(body_length(headers, max_bytes))
            done = True
        finally:
            if done and headers.get("connection", "").lower() != "close":
                self._keep(key, conn)
            else:
                conn.writer.close()
        return Reply(status, headers, body)

    def _take_idle(self, key: str) -> _Idle | None:
        now = time.monotonic()
        if now - self._last_sweep > _SWEEP_EVERY_S:
            self._sweep(now)
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable(now):
                return conn
            conn.writer.close()
        return None

    def _keep(self, key: str, conn: _Idle) -> None:
        idle = self._idle.setdefault(key, collections.deque())
        if len(idle) >= _IDLE_PER_AGENT:
            conn.writer.close()
            return
        conn.since = time.monotonic()
        idle.append(conn)

    def _sweep(self, now: float) -> None:
        """Close idle connections that expired (agents that went away keep none)."""
        self._last_sweep = now
        for key, idle in list(self._idle.items()):
            kept: collections.deque[_Idle] = collections.deque()
            for conn in idle:
                if conn.usable(now):
                    kept.append(conn)
                else:
                    conn.writer.close()
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]

    def drop(self, key: str) -> None:
        """Close the idle connections to the agent `key` names."""
        for conn in self._idle.pop(key, ()):
            conn.writer.close()

    async def aclose(self) -> None:
        """Close every idle connection."""
        closing = [conn for idle in self._idle.values() for conn in idle]
        self._idle.clear()
        for conn in closing:
            conn.writer.close()
        for conn in closing:
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(conn.writer.wait_closed(), 1.0)
