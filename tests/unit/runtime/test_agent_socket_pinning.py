"""A container writes its agent's socket path: the server must not follow what it plants there."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.runtime.agent import AgentClient, AgentUnreachable

_GUARD_S = 10.0


class Listener:
    """A Unix-socket HTTP peer answering every call with its own name; counts connections."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.connections = 0
        self.server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self, path: Path) -> None:
        self.server = await asyncio.start_unix_server(self._handle, str(path))

    async def stop(self) -> None:
        """Stop listening and hang up, as an agent whose container restarted."""
        assert self.server is not None
        self.server.close()
        for writer in self._writers:
            writer.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode().split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                await reader.readexactly(length)
                body = json.dumps({"ok": True, "data": {"agent": self.name}}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def client() -> AsyncIterator[AgentClient]:
    agents = AgentClient(grace_s=2.0, health_timeout_s=2.0)
    yield agents
    await agents.aclose()


async def _call(client: AgentClient, socket: Path) -> object:
    data = await asyncio.wait_for(
        client.call(f"unix://{socket}", "token", "bash:run", {}, 1.0), _GUARD_S
    )
    return data.get("agent")


async def test_a_symlink_planted_as_the_agent_socket_is_not_followed(
    client: AgentClient, tmp_path: Path
) -> None:
    # The container's directory, and a socket elsewhere on the host it must not reach.
    session_dir, host_dir = tmp_path / "session", tmp_path / "host"
    session_dir.mkdir()
    host_dir.mkdir()
    host = Listener("host")
    await host.start(host_dir / "engine.sock")
    (session_dir / "agent.sock").symlink_to(host_dir / "engine.sock")
    try:
        with pytest.raises(AgentUnreachable) as caught:
            await _call(client, session_dir / "agent.sock")
        assert "not a socket" in caught.value.message
        assert not await client.is_ready(f"unix://{session_dir / 'agent.sock'}")
        assert host.connections == 0
    finally:
        await host.stop()


async def test_a_socket_swapped_for_a_symlink_after_connecting_is_not_followed(
    client: AgentClient, tmp_path: Path
) -> None:
    agent, host = Listener("agent"), Listener("host")
    socket = tmp_path / "agent.sock"
    await agent.start(socket)
    await host.start(tmp_path / "engine.sock")
    try:
        assert await _call(client, socket) == "agent"
        os.rename(socket, tmp_path / "moved.sock")
        socket.symlink_to(tmp_path / "engine.sock")
        for _ in range(3):
            with pytest.raises(AgentUnreachable, match="not a socket"):
                await _call(client, socket)
        assert host.connections == 0
    finally:
        await agent.stop()
        await host.stop()


async def test_an_agent_listening_anew_on_the_same_name_is_reached(
    client: AgentClient, tmp_path: Path
) -> None:
    socket = tmp_path / "agent.sock"
    first = Listener("first")
    await first.start(socket)
    assert await _call(client, socket) == "first"
    await first.stop()
    socket.unlink()
    second = Listener("second")
    await second.start(socket)  # a new inode under the same name, checked as the first
    try:
        assert await _call(client, socket) == "second"
    finally:
        await second.stop()


async def test_a_missing_socket_is_unreachable_not_an_error_of_the_server(
    client: AgentClient, tmp_path: Path
) -> None:
    with pytest.raises(AgentUnreachable):
        await _call(client, tmp_path / "agent.sock")
    assert not await client.is_ready(f"unix://{tmp_path / 'agent.sock'}")
