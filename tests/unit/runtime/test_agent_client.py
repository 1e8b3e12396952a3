"""`AgentClient` against a hostile agent: a real HTTP peer on a socket, misbehaving.

Each reply an impostor could send behind an agent's socket must end in a clear
2001 or 2002 within the call's deadline, and the client must keep serving the
next call. The peer is a real asyncio server (TCP and Unix socket), so the client's whole
read path (`agent_http`) is exercised, not a mock transport.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sandbox.errors import BackendError, ErrorCode, SandboxTimeout
from sandbox.runtime.agent import AgentClient, AgentUnreachable, _agent_error

# Whatever the misbehaviour, a call must be over well before this: a hang fails the
# test here instead of stalling the suite.
_HANG_GUARD_S = 20.0
_CALL_TIMEOUT_S = 0.2
# Calls that must fail for their size or encoding, not their time, get plenty of it
# (the 2-core test machine is shared).
_ROOMY_TIMEOUT_S = 8.0
_GRACE_S = 0.3
_HEALTH_TIMEOUT_S = 1.0

Reply = Callable[[asyncio.StreamWriter], Awaitable[None]]


def _head(length: int | None = None, extra: str = "") -> bytes:
    lines = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    if length is not None:
        lines += f"Content-Length: {length}\r\n"
    return (lines + extra + "\r\n").encode()


def _ok(data: dict[str, object]) -> bytes:
    body = json.dumps({"ok": True, "data": data}).encode()
    return _head(len(body)) + body


async def _good(writer: asyncio.StreamWriter) -> None:
    writer.write(_ok({"stdout": "hi\n"}))


async def _trickle(writer: asyncio.StreamWriter) -> None:
    writer.write(_head(10_000))
    for _ in range(10_000):  # one byte every 50 ms: 500 s if the client let it
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(0.05)


@functools.cache
def _bomb() -> bytes:
    """~20 KB that would inflate to 20 MB."""
    return gzip.compress(b'{"ok": true, "data": {"x": "' + b"0" * (20 << 20) + b'"}}')


async def _gzip_bomb(writer: asyncio.StreamWriter) -> None:
    writer.write(_head(len(_bomb()), "Content-Encoding: gzip\r\n") + _bomb())


async def _huge_declared(writer: asyncio.StreamWriter) -> None:
    writer.write(_head(200 << 20))  # announces 200 MB, then sends it
    await _stream_zeros(writer)


async def _huge_chunked(writer: asyncio.StreamWriter) -> None:
    writer.write(_head(None, "Transfer-Encoding: chunked\r\n"))
    chunk = b"0" * (1 << 20)
    for _ in range(200):  # 200 MB without a Content-Length
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()


async def _stream_zeros(writer: asyncio.StreamWriter) -> None:
    chunk = b"0" * (1 << 20)
    for _ in range(200):
        writer.write(chunk)
        await writer.drain()


async def _deep(writer: asyncio.StreamWriter) -> None:
    body = b"[" * 100_000
    writer.write(_head(len(body)) + body)


async def _invalid(writer: asyncio.StreamWriter) -> None:
    body = b'{"ok": true, "data": '
    writer.write(_head(len(body)) + body)


async def _array(writer: asyncio.StreamWriter) -> None:
    body = b'[{"ok": true}]'
    writer.write(_head(len(body)) + body)


async def _data_not_object(writer: asyncio.StreamWriter) -> None:
    body = b'{"ok": true, "data": [1, 2]}'
    writer.write(_head(len(body)) + body)


async def _cut(writer: asyncio.StreamWriter) -> None:
    writer.write(_head(1000) + b'{"ok": tr')
    await writer.drain()
    writer.close()


async def _silent(writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


REPLIES: dict[str, Reply] = {
    "good": _good,
    "trickle": _trickle,
    "gzip": _gzip_bomb,
    "huge_declared": _huge_declared,
    "huge_chunked": _huge_chunked,
    "deep": _deep,
    "invalid": _invalid,
    "array": _array,
    "data_list": _data_not_object,
    "cut": _cut,
    "silent": _silent,
}


class HostileAgent:
    """An HTTP/1.1 peer whose reply is chosen by the path's last part."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.url = ""
        self.health = "good"
        self.accept_encoding: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {
                    key.lower(): value
                    for key, value in (line.split(": ", 1) for line in lines[1:] if ": " in line)
                }
                self.accept_encoding.append(headers.get("accept-encoding", ""))
                await reader.readexactly(int(headers.get("content-length", "0")))
                name = self.health if path == "/health" else path.rsplit(".", 1)[-1]
                await REPLIES[name](writer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client hung up, or the test is over
        finally:
            writer.close()


@pytest.fixture(params=["tcp", "unix"])
async def agent(request: pytest.FixtureRequest) -> AsyncIterator[HostileAgent]:
    peer = HostileAgent()
    if request.param == "tcp":
        peer.server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
        port = peer.server.sockets[0].getsockname()[1]
        peer.url = f"http://127.0.0.1:{port}"
    else:
        path = Path(tempfile.mkdtemp(prefix="hostile-agent-")) / "agent.sock"
        peer.server = await asyncio.start_unix_server(peer.handle, str(path))
        peer.url = f"unix://{path}"
    async with peer.server:
        yield peer
        peer.server.close()


@pytest.fixture
async def client() -> AsyncIterator[AgentClient]:
    # A healthy peer must pass its health check even on a loaded machine.
    agents = AgentClient(grace_s=_GRACE_S, health_timeout_s=_HEALTH_TIMEOUT_S)
    yield agents
    await agents.aclose()


async def _call(
    client: AgentClient, agent: HostileAgent, reply: str, timeout: float = _ROOMY_TIMEOUT_S
) -> dict[str, object]:
    return await asyncio.wait_for(
        client.call(agent.url, "token", f"bash.{reply}", {}, timeout), _HANG_GUARD_S
    )


async def _still_usable(client: AgentClient, agent: HostileAgent) -> None:
    assert await _call(client, agent, "good") == {"stdout": "hi\n"}


async def test_a_well_behaved_agent_is_asked_for_unencoded_replies(
    client: AgentClient, agent: HostileAgent
) -> None:
    await _still_usable(client, agent)
    assert agent.accept_encoding == ["identity"]


@pytest.mark.parametrize("reply", ["trickle", "silent"])
async def test_a_trickling_or_silent_agent_times_out_at_the_calls_deadline(
    client: AgentClient, agent: HostileAgent, reply: str
) -> None:
    with pytest.raises(SandboxTimeout) as caught:
        await _call(client, agent, reply, _CALL_TIMEOUT_S)
    assert caught.value.code is ErrorCode.TIMEOUT
    assert "did not answer within 0.2s" in caught.value.message
    await _still_usable(client, agent)


# A gzip bomb is never inflated, 200 MB never read: each is refused by its head.
# (Agents always send a Content-Length; a chunked reply is refused unread.)
@pytest.mark.parametrize(
    ("reply", "said"),
    [
        ("gzip", ["'gzip'-encoded"]),
        ("huge_declared", [f"exceeded {64 << 20} bytes", "agent_reply_max_bytes"]),
        ("huge_chunked", ["without a Content-Length"]),
    ],
)
async def test_a_reply_too_large_or_encoded_is_refused_by_its_head(
    client: AgentClient, agent: HostileAgent, reply: str, said: list[str]
) -> None:
    with pytest.raises(BackendError) as caught:
        await _call(client, agent, reply)
    assert caught.value.code is ErrorCode.BACKEND_ERROR
    for words in said:
        assert words in caught.value.message
    await _still_usable(client, agent)


async def test_the_cap_is_the_configured_one(agent: HostileAgent) -> None:
    small = AgentClient(reply_max_bytes=1024, grace_s=_GRACE_S)
    try:
        with pytest.raises(BackendError, match="exceeded 1024 bytes"):
            await _call(small, agent, "huge_declared")
        await _still_usable(small, agent)
    finally:
        await small.aclose()


@pytest.mark.parametrize("reply", ["deep", "invalid", "array", "data_list"])
async def test_malformed_json_is_a_backend_error(
    client: AgentClient, agent: HostileAgent, reply: str
) -> None:
    with pytest.raises(BackendError) as caught:
        await _call(client, agent, reply)
    assert caught.value.code is ErrorCode.BACKEND_ERROR
    assert "malformed reply" in caught.value.message
    await _still_usable(client, agent)


async def test_a_reply_cut_mid_body_is_a_backend_error(
    client: AgentClient, agent: HostileAgent
) -> None:
    with pytest.raises(AgentUnreachable) as caught:
        await _call(client, agent, "cut")
    assert caught.value.code is ErrorCode.BACKEND_ERROR
    await _still_usable(client, agent)


@pytest.mark.parametrize(
    ("health", "ready"),
    [("good", True), ("trickle", False), ("silent", False), ("huge_chunked", False)],
)
async def test_the_health_check_is_bounded_too(
    client: AgentClient, agent: HostileAgent, health: str, ready: bool
) -> None:
    agent.health = health
    assert await asyncio.wait_for(client.is_ready(agent.url), _HANG_GUARD_S) is ready


def test_a_long_error_message_is_cut_in_the_middle_keeping_its_reason() -> None:
    message = "/".join(["d"] * 5000) + ": File name too long"
    error = _agent_error({"kind": "invalid_params", "message": message, "field": "path"}, "x")
    assert len(error.message) <= 4096
    assert error.message.startswith("d/d/")
    assert error.message.endswith(": File name too long")
