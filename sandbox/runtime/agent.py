"""HTTP client of the in-container agents.

An agent answers at ``http://host:port`` (containers with network) or at
``unix:///path/agent.sock`` (containers without). Requests go on connections
kept alive per agent (`agent_http`, TCP with TCP_NODELAY); a Unix socket's are
pinned to the socket (`_UnixAgent`) and dropped with `forget`. The agent's error
kinds, and the wire's failures, become this package's errors here.

Whatever runs in a container may have replaced its agent, so every reply is read
as hostile input: one deadline bounds the whole exchange (a peer trickling one
byte at a time cannot stretch it, as it could a per-read timeout), the body is
refused past a byte cap before it is read, only uncompressed bodies with a
stated length are accepted (a gzip bomb never gets inflated), and the JSON
must be an object, its nesting bounded by the parser's recursion limit.

The socket path itself is the container's to write (its agent creates the
socket in a host directory mounted into it), so a compromised agent could put a
symlink there, pointing at any socket of the host (the Docker engine's, another
session's agent). The server therefore never connects by that name: it opens
the name without following symlinks (``O_PATH | O_NOFOLLOW``), requires a
socket, and connects through ``/proc/self/fd/<n>``, which names that very inode
and is not resolved again. When the name comes to hold another inode (an agent
that listens anew), the next call opens it again, with the same checks.

`AgentClient.open_stream` turns a connection of its own into a raw byte stream
an agent's toolset serves (``GET /stream/<name>``, answered ``101``): the
desktop's VNC view. Its answer head is bounded in bytes and time like a reply;
what flows after is the caller's to bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..errors import BackendError, InvalidParams, SandboxError, SandboxTimeout
from .agent_http import (
    HEAD_MAX_BYTES,
    AgentConnections,
    Reply,
    Streams,
    TcpConnect,
    body_length,
    open_tcp,
    parse_head,
    read_head,
    request_bytes,
)

# The agent enforces a call's timeout itself and answers with partial output;
# the grace only catches an agent that stopped answering (or never meant to).
_HTTP_GRACE_S = 10.0
_CONNECT_S = 5.0
_UNIX = "unix://"
# A health check answers a few bytes; a peer that says more is not an agent.
_HEALTH_TIMEOUT_S = 2.0
_HEALTH_MAX_BYTES = 64 << 10
# An error message is relayed to the caller; a hostile agent's novel is cut.
_MAX_MESSAGE_CHARS = 4096
DEFAULT_REPLY_MAX_BYTES = 64 << 20
_STREAM_UPGRADE = "sandbox-stream"
"""The agent's ``Upgrade`` protocol for streams (`sandbox.agent.handler.STREAM_UPGRADE`)."""
STREAM_READ_LIMIT = HEAD_MAX_BYTES
"""Largest answer head to a stream request, and the stream reader's buffer."""


class AgentUnreachable(BackendError):
    """The agent did not answer: its container may have died."""


class AgentNotReady(BackendError):
    """The agent cannot answer yet (an index still being built); later it will."""


class AgentClient:
    """Calls tools on agents and waits for new agents to come up.

    Args:
        max_connections: Most open connections across all agents.
        reply_max_bytes: Largest reply body read from an agent (setting
            ``agent_reply_max_bytes``); a larger one fails the call with 2001.
        grace_s: How long past a call's own timeout its reply may take.
        health_timeout_s: How long a health check may take in all.
        network_backend: How TCP connections to agents are made, when not
            directly (a swarm's agents are reached through its relay: `relay`).
    """

    def __init__(
        self,
        *,
        max_connections: int = 1024,
        reply_max_bytes: int = DEFAULT_REPLY_MAX_BYTES,
        grace_s: float = _HTTP_GRACE_S,
        health_timeout_s: float = _HEALTH_TIMEOUT_S,
        network_backend: TcpConnect | None = None,
    ) -> None:
        self.reply_max_bytes = reply_max_bytes
        self._grace_s = grace_s
        self._health_timeout_s = health_timeout_s
        self._unix: dict[str, _UnixAgent] = {}
        self._relayed = network_backend is not None
        self._connect_tcp = network_backend or open_tcp
        self._connections = AgentConnections(max_connections)

    async def aclose(self) -> None:
        """Close every kept connection."""
        unix, self._unix = list(self._unix.values()), {}
        for agent in unix:
            agent.close()
        await self._connections.aclose()

    async def forget(self, url: str) -> None:
        """Close the connections to an agent that is gone (Unix sockets only)."""
        self._drop_unix(url)

    def _drop_unix(self, url: str) -> None:
        agent = self._unix.pop(url.removeprefix(_UNIX), None)
        if agent is not None:
            self._connections.drop(url)
            agent.close()

    def _connector(self, url: str) -> Callable[[], Awaitable[Streams]]:
        """How to open a new connection to the agent at `url`.

        Raises:
            AgentUnreachable: `url`'s socket is not there yet, or is not a socket.
        """
        if not url.startswith(_UNIX):
            host, port = _host_port(url)
            return lambda: self._connect_tcp(host, port)
        path = url.removeprefix(_UNIX)
        agent = self._unix.get(path)
        if agent is not None and not agent.is_current():
            self._drop_unix(url)  # its connections lead to an agent that is gone
            agent = None
        if agent is None:
            agent = self._unix[path] = _UnixAgent(path)
        return agent.connect

    async def call(
        self, url: str, token: str, tool: str, params: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Run `tool` on the agent at `url` and return its `data`.

        The whole exchange ends within `timeout` plus a grace, however the agent
        answers.

        Raises:
            InvalidParams: The agent rejected a parameter (field is ``params.<name>``).
            SandboxTimeout: The call ran past `timeout`; partial output is in `data`
                when the agent sent it, none when the agent itself ran out of time.
            AgentUnreachable: No answer at all (connection refused or reset).
            BackendError: The agent failed, refused the token, or sent a reply that
                is too large, encoded or malformed.
        """
        deadline = timeout + self._grace_s
        headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}
        try:
            status, raw = await self._exchange(
                url, "POST", f"/call/{tool}", params, headers, deadline, self.reply_max_bytes
            )
        except asyncio.TimeoutError as exc:
            raise SandboxTimeout(
                f"the agent did not answer within {timeout:g}s (+{self._grace_s:g}s grace)"
            ) from exc
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise AgentUnreachable(f"the sandbox agent is unreachable ({exc!r})") from exc
        body = _parse_reply(raw, status)
        if body.get("ok") is True:
            data = body.get("data")
            if data is None:
                return {}
            if not isinstance(data, dict):
                raise BackendError(f"the agent sent a malformed reply (HTTP {status}): data")
            return data
        error = body.get("error")
        raise _agent_error(error if isinstance(error, dict) else {}, tool)

    async def open_stream(
        self, url: str, token: str, name: str, query: dict[str, str], timeout: float
    ) -> AgentStream:
        """The agent's stream `name` on a connection of its own (see `open_stream`).

        Raises:
            BackendError: Besides `open_stream`'s: the agent is reached through a
                relay (a swarm's), which carries calls, not streams.
        """
        if self._relayed and not url.startswith(_UNIX):
            raise BackendError(
                f"the agent's {name} stream does not pass the swarm's relay; "
                "the live view shows screenshots there"
            )
        return await open_stream(url, token, name, query, timeout)

    async def is_ready(self, url: str) -> bool:
        """Whether the agent at `url` answers its health check in time and in 64 KiB."""
        try:
            status, _ = await self._exchange(
                url,
                "GET",
                "/health",
                None,
                {"Accept-Encoding": "identity"},
                self._health_timeout_s,
                _HEALTH_MAX_BYTES,
            )
        except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError, BackendError):
            return False
        return status == 200

    async def _exchange(
        self,
        url: str,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        headers: dict[str, str],
        deadline: float,
        max_bytes: int,
    ) -> tuple[int, bytes]:
        """Send one request and read its reply, all within `deadline` seconds.

        Raises:
            asyncio.TimeoutError: The deadline passed (the connection is closed, not reused).
            OSError, asyncio.IncompleteReadError: Connecting or reading failed.
            BackendError: The reply is encoded, chunked or larger than `max_bytes`.
        """
        connect = self._connector(url)
        body = None if payload is None else json.dumps(payload).encode()
        request = request_bytes(method, path, headers, body)

        async def connect_in_time() -> Streams:
            return await asyncio.wait_for(connect(), _CONNECT_S)

        async def exchange() -> Reply:
            return await self._connections.exchange(url, connect_in_time, request, max_bytes)

        # One deadline over connecting, sending and the whole body.
        reply = await asyncio.wait_for(exchange(), deadline)
        return reply.status, reply.body


class AgentStream:
    """A byte stream to an agent's toolset (see `AgentClient.open_stream`)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def aclose(self) -> None:
        """Close the connection (the agent's end of the stream ends with it)."""
        self.writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)


async def open_stream(
    url: str, token: str, name: str, query: dict[str, str], timeout: float
) -> AgentStream:
    """Connect to the agent at `url` and upgrade the connection to its stream `name`.

    The answer head must come within `timeout` and `STREAM_READ_LIMIT` bytes.

    Raises:
        AgentUnreachable: No connection, or it closed before answering.
        SandboxTimeout: No answer within `timeout`.
        BackendError: The agent refused (its error, e.g. too many viewers) or
            answered something that is not an upgrade.
    """
    try:
        reader, writer = await asyncio.wait_for(_connect(url), _CONNECT_S)
    except (OSError, asyncio.TimeoutError) as exc:
        raise AgentUnreachable(f"the sandbox agent is unreachable ({exc!r})") from exc
    stream = AgentStream(reader, writer)
    try:
        writer.write(
            (
                f"GET /stream/{name}?{urlencode(query)} HTTP/1.1\r\nHost: agent\r\n"
                f"Authorization: Bearer {token}\r\nConnection: Upgrade\r\n"
                f"Upgrade: {_STREAM_UPGRADE}\r\n\r\n"
            ).encode("latin-1")
        )
        status, body = await asyncio.wait_for(_read_upgrade_answer(reader), timeout)
    except asyncio.TimeoutError as exc:
        await stream.aclose()
        raise SandboxTimeout(
            f"the agent did not open its {name} stream within {timeout:g}s"
        ) from exc
    except (OSError, asyncio.IncompleteReadError) as exc:
        await stream.aclose()
        raise AgentUnreachable(f"the agent closed its {name} stream before answering") from exc
    except BackendError:
        await stream.aclose()
        raise
    if status == 101:
        return stream
    await stream.aclose()
    error = _parse_reply(body, status).get("error")
    raise _agent_error(error if isinstance(error, dict) else {}, f"stream {name}")


async def _connect(url: str) -> Streams:
    """A new connection to the agent at `url` (a Unix socket pinned as in `_UnixAgent`)."""
    if not url.startswith(_UNIX):
        return await open_tcp(*_host_port(url))
    fd = _pin_socket(url.removeprefix(_UNIX))
    try:
        return await _open_pinned(fd)
    finally:
        os.close(fd)


def _host_port(url: str) -> tuple[str, int]:
    """The host and port of an agent's ``http://`` URL."""
    address = urlsplit(url)
    return address.hostname or "", address.port or 80


async def _open_pinned(fd: int) -> Streams:
    """A connection to the socket `fd` pins (by its inode, never by a name again)."""
    return await asyncio.open_unix_connection(f"/proc/self/fd/{fd}", limit=HEAD_MAX_BYTES)


async def _read_upgrade_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status of the answer to a stream request, and its body unless it is an
    upgrade (both bounded)."""
    status, headers = parse_head(await read_head(reader))
    if status == 101:
        return status, b""
    return status, await reader.readexactly(body_length(headers, STREAM_READ_LIMIT))


def _pin_socket(path: str) -> int:
    """A descriptor (O_PATH) of the socket at `path`, which must not be a symlink.

    Raises:
        AgentUnreachable: Nothing is at `path`, or something that is not a socket.
    """
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise AgentUnreachable(
            f"the sandbox agent's socket cannot be opened ({exc.strerror})"
        ) from exc
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        os.close(fd)
        raise AgentUnreachable(
            "the sandbox agent's socket path holds something that is not a socket "
            "(a symlink?); the server does not follow it"
        )
    return fd


class _UnixAgent:
    """The connections to one agent's Unix socket, pinned to the socket's inode.

    Raises:
        AgentUnreachable: Nothing is at `path` yet, or something that is not a
            socket (a symlink planted by the container is refused, never followed).
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd = _pin_socket(path)
        pinned = os.fstat(self._fd)
        self._inode = (pinned.st_dev, pinned.st_ino)

    async def connect(self) -> Streams:
        """A new connection to the pinned socket."""
        return await _open_pinned(self._fd)

    def is_current(self) -> bool:
        """Whether the path still names the socket this client is pinned to."""
        try:
            now = os.lstat(self._path)
        except OSError:
            return False
        return (now.st_dev, now.st_ino) == self._inode

    def close(self) -> None:
        """Let go of the socket (connections already open stay usable until closed)."""
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _parse_reply(raw: bytes, status: int) -> dict[str, Any]:
    """The reply's JSON object; RecursionError covers pathological nesting."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BackendError(f"the agent sent a malformed reply (HTTP {status})") from exc
    if not isinstance(body, dict):
        raise BackendError(f"the agent sent a malformed reply (HTTP {status}): not an object")
    return body


def _bounded(message: str) -> str:
    """`message` cut to `_MAX_MESSAGE_CHARS`, keeping its start and its end: a reason
    ("File name too long") often follows a long path the caller sent."""
    if len(message) <= _MAX_MESSAGE_CHARS:
        return message
    half = (_MAX_MESSAGE_CHARS - 5) // 2
    return f"{message[:half]} ... {message[-half:]}"


def _agent_error(error: dict[str, Any], tool: str) -> SandboxError:
    kind = error.get("kind")
    message = _bounded(str(error.get("message") or "the agent reported an error"))
    data = error.get("data") if isinstance(error.get("data"), dict) else None
    if kind == "invalid_params":
        field = error.get("field")
        field = str(field)[:200] if field else None
        return InvalidParams(message, field=f"params.{field}" if field else "params", data=data)
    if kind == "timeout":
        return SandboxTimeout(message, data=data)
    if kind == "not_found":
        return BackendError(
            f"the container's agent has no tool {tool!r}: its image is older than the "
            "server; rebuild it with `sandbox images build`",
            data=data,
        )
    if kind == "unavailable":  # e.g. an index still being built: the message says how far
        return AgentNotReady(message, data=data)
    if kind == "unauthorized":
        return BackendError("the container's agent refused this session's token", data=data)
    return BackendError(f"the tool failed inside the container: {message}", data=data)
