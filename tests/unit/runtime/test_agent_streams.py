"""`open_stream` against hostile agents: planted symlinks, endless heads, silence, relays."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sandbox.errors import BackendError, SandboxTimeout
from sandbox.runtime.agent import AgentClient, AgentUnreachable, open_stream
from sandbox.runtime.agent_http import open_tcp

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(path: Path, handler: Handler) -> asyncio.Server:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_unix_server(closing, str(path))


async def test_a_symlink_planted_for_the_socket_is_not_followed(tmp_path: Path) -> None:
    reached: list[bool] = []

    async def elsewhere(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reached.append(True)

    server = await _serve(tmp_path / "host.sock", elsewhere)
    os.symlink(tmp_path / "host.sock", tmp_path / "agent.sock")
    with pytest.raises(AgentUnreachable, match="not a socket"):
        await open_stream(f"unix://{tmp_path / 'agent.sock'}", "t", "vnc", {}, 5)
    assert reached == []
    server.close()


async def test_an_endless_or_silent_answer_is_cut_off(tmp_path: Path) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nX-Pad: ")
        with_pad = b"a" * (1 << 16)
        for _ in range(4):
            writer.write(with_pad)
        await writer.drain()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(1.0)

    async def huge_error(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 999999999\r\n\r\n")
        await writer.drain()

    servers = [
        await _serve(tmp_path / "endless.sock", endless),
        await _serve(tmp_path / "silent.sock", silent),
        await _serve(tmp_path / "huge.sock", huge_error),
    ]
    with pytest.raises(BackendError, match="head exceeded 65536 bytes"):
        await open_stream(f"unix://{tmp_path / 'endless.sock'}", "t", "vnc", {}, 5)
    started = time.monotonic()
    with pytest.raises(SandboxTimeout, match=r"within 0\.5s"):
        await open_stream(f"unix://{tmp_path / 'silent.sock'}", "t", "vnc", {}, 0.5)
    assert time.monotonic() - started < 3
    with pytest.raises(BackendError, match="exceeded 65536 bytes"):
        await open_stream(f"unix://{tmp_path / 'huge.sock'}", "t", "vnc", {}, 5)
    await asyncio.sleep(1.2)  # the silent peer's handler ends
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_a_relayed_agent_has_no_stream() -> None:
    client = AgentClient(network_backend=open_tcp)
    try:
        with pytest.raises(BackendError, match="swarm's relay"):
            await client.open_stream("http://10.0.0.9:8765", "t", "vnc", {}, 5)
    finally:
        await client.aclose()
