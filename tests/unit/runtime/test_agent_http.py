"""`agent_http`: kept-alive connections to a real peer, and the reply shapes it accepts.

The peer is an asyncio server on 127.0.0.1 that answers each request with its
own number, so a test sees which request a reply belongs to and how many
connections were opened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from sandbox.errors import BackendError
from sandbox.runtime.agent_http import (
    AgentConnections,
    Streams,
    body_length,
    open_tcp,
    parse_head,
    request_bytes,
)

_REQUEST = request_bytes("POST", "/call/x", {"Authorization": "Bearer t"}, b"{}")


@dataclass
class Peer:
    """What the peer saw, and how it behaves on the next request."""

    port: int = 0
    connections: int = 0
    requests: int = 0
    close_after_reply: bool = False
    """Close the connection after answering, without saying so (an idle timeout)."""
    say_close: bool = False
    """Answer with ``Connection: close``."""
    hang_up_on_reuse: bool = False
    """Close a kept connection when the next request arrives on it, unanswered (the
    agent's idle close crossing the client's request on the wire)."""
    delay_s: float = 0.0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            answered = 0
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(2)  # the body, b"{}"
                if answered and self.hang_up_on_reuse:
                    break
                answered += 1
                self.requests += 1
                number = self.requests
                await asyncio.sleep(self.delay_s)
                body = str(number).encode()
                close = "Connection: close\r\n" if self.say_close else ""
                writer.write(
                    f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{close}\r\n".encode() + body
                )
                await writer.drain()
                if self.close_after_reply or self.say_close:
                    break
        writer.close()

    def connect(self) -> Callable[[], Awaitable[Streams]]:
        return lambda: open_tcp("127.0.0.1", self.port)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    peer = Peer()
    server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
    peer.port = server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        server.close()
        for writer in peer.writers:
            writer.close()
        await server.wait_closed()


async def _call(pool: AgentConnections, peer: Peer) -> bytes:
    reply = await asyncio.wait_for(pool.exchange("a", peer.connect(), _REQUEST, 1024), 5)
    assert reply.status == 200
    return reply.body


async def test_calls_share_one_kept_alive_connection(peer: Peer) -> None:
    pool = AgentConnections()
    try:
        assert [await _call(pool, peer) for _ in range(3)] == [b"1", b"2", b"3"]
        assert peer.connections == 1
    finally:
        await pool.aclose()


# 0: the next call goes out before the client's loop saw the close (it finds out
# when the reply is an empty read); 0.05: after (the idle connection is dropped).
@pytest.mark.parametrize("pause_s", [0, 0.05])
async def test_a_connection_the_agent_closed_while_idle_is_replaced_without_a_second_run(
    peer: Peer, pause_s: float
) -> None:
    pool = AgentConnections()
    peer.close_after_reply = True
    try:
        assert await _call(pool, peer) == b"1"
        await asyncio.sleep(pause_s)
        assert await _call(pool, peer) == b"2"
        peer.close_after_reply = False
        assert await _call(pool, peer) == b"3"
        assert peer.requests == 3
        assert peer.connections == 3
    finally:
        await pool.aclose()


async def test_a_request_crossing_the_agents_idle_close_goes_again_on_a_new_connection(
    peer: Peer,
) -> None:
    pool = AgentConnections()
    peer.hang_up_on_reuse = True
    try:
        assert await _call(pool, peer) == b"1"
        assert await _call(pool, peer) == b"2"  # the kept connection hung up: a new one
        assert (peer.requests, peer.connections) == (2, 2)
    finally:
        await pool.aclose()


async def test_connection_close_is_honoured(peer: Peer) -> None:
    pool = AgentConnections()
    peer.say_close = True
    try:
        assert await _call(pool, peer) == b"1"
        assert await _call(pool, peer) == b"2"
        assert peer.connections == 2
    finally:
        await pool.aclose()


async def test_a_call_cut_short_never_leaves_its_reply_for_the_next(peer: Peer) -> None:
    pool = AgentConnections()
    peer.delay_s = 0.3
    try:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pool.exchange("a", peer.connect(), _REQUEST, 1024), 0.1)
        peer.delay_s = 0.0
        assert await _call(pool, peer) == b"2"  # not the late "1"
        assert peer.connections == 2
    finally:
        await pool.aclose()


async def test_calls_in_flight_beyond_the_limit_wait_for_a_connection(peer: Peer) -> None:
    pool = AgentConnections(max_connections=1)
    peer.delay_s = 0.05
    try:
        replies = await asyncio.gather(*(_call(pool, peer) for _ in range(4)))
        assert sorted(replies) == [b"1", b"2", b"3", b"4"]
        assert peer.connections == 1
    finally:
        await pool.aclose()


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", 200),
        (b"HTTP/1.0 401 Unauthorized\r\n\r\n", 401),
    ],
)
def test_a_status_line_is_read(head: bytes, status: int) -> None:
    assert parse_head(head)[0] == status


@pytest.mark.parametrize("head", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 OK\r\n\r\n", b"\r\n\r\n"])
def test_a_head_without_a_status_line_is_malformed(head: bytes) -> None:
    with pytest.raises(BackendError, match="no HTTP status line"):
        parse_head(head)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"content-length": "5000"}, "exceeded 1024 bytes"),
        ({}, "without a valid Content-Length"),
        ({"content-length": "-1"}, "without a valid Content-Length"),
        ({"content-length": "1", "transfer-encoding": "chunked"}, "without a Content-Length"),
        ({"content-length": "1", "content-encoding": "br"}, "'br'-encoded"),
    ],
)
def test_only_a_stated_unencoded_body_within_the_cap_is_read(
    headers: dict[str, str], message: str
) -> None:
    with pytest.raises(BackendError, match=message):
        body_length(headers, 1024)
    assert body_length({"content-length": "1024"}, 1024) == 1024
