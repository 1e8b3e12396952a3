"""Streams on upgraded agent connections: the desktop's VNC view, one process per viewer.

A stand-in for x11vnc (a shell that prints its arguments and echoes) serves the
connection the agent hands it; the server's side is the real `open_stream`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from pydantic import ValidationError

from sandbox.agent import errors as agent_errors
from sandbox.agent.listener import AgentHTTPServer
from sandbox.agent.registry import StreamOpener, Tool, ToolRegistry, Toolset
from sandbox.agent.tools.desktop_vnc import MAX_SECONDS, MAX_VIEWERS, VNC_STREAM
from sandbox.agent.toolsets._desktop_vnc import VncViewers
from sandbox.config import LiveViewSettings
from sandbox.errors import BackendError, InvalidParams
from sandbox.runtime.agent import AgentNotReady, AgentStream, open_stream

TOKEN = "stream-token"
STAND_IN = ("sh", "-c", 'printf "%s\\n" "$*"; exec cat', "x11vnc")


class ViewerToolset(Toolset):
    name = "viewers"

    def __init__(self, viewers: VncViewers) -> None:
        self.viewers = viewers

    def tools(self) -> Sequence[Tool]:
        return []

    def streams(self) -> Mapping[str, StreamOpener]:
        return {VNC_STREAM: self.viewers.open}

    def close(self) -> None:
        self.viewers.close()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[str, VncViewers]]:
    viewers = VncViewers(env={"DISPLAY": ":7"}, user=None, program=STAND_IN, max_viewers=2)
    registry = ToolRegistry()
    registry.add_toolset(ViewerToolset(viewers))
    path = tmp_path / "a.sock"
    server = AgentHTTPServer(str(path), registry, TOKEN)
    thread = threading.Thread(target=server.serve_until_stopped, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}", viewers
    finally:
        server.stop()
        server.close_connections()
        registry.close()
        thread.join(5)
        server.server_close()


async def _line(stream: AgentStream) -> str:
    return (await asyncio.wait_for(stream.reader.readline(), 5)).decode()


async def test_a_viewer_gets_its_own_view_only_server_on_the_connection(
    agent: tuple[str, VncViewers],
) -> None:
    url, _ = agent
    stream = await open_stream(url, TOKEN, "vnc", {"view_only": "1", "max_seconds": "60"}, 5)
    argv = await _line(stream)
    assert "-inetd -display :7" in argv
    assert "-viewonly" in argv.split()
    stream.writer.write(b"RFB 003.008\n")
    assert await _line(stream) == "RFB 003.008\n", "the bytes go to the viewer's server"
    await stream.aclose()
    control = await open_stream(url, TOKEN, "vnc", {"view_only": "0"}, 5)
    assert "-viewonly" not in (await _line(control)).split()
    await control.aclose()


async def test_viewers_are_capped_and_their_places_given_back(
    agent: tuple[str, VncViewers],
) -> None:
    url, _ = agent
    first = await open_stream(url, TOKEN, "vnc", {}, 5)
    second = await open_stream(url, TOKEN, "vnc", {}, 5)
    with pytest.raises(AgentNotReady, match="2 viewers already watch"):
        await open_stream(url, TOKEN, "vnc", {}, 5)
    await first.aclose()  # the stand-in sees the end of its input and exits

    async def reopened() -> AgentStream:
        while True:
            try:
                return await open_stream(url, TOKEN, "vnc", {}, 5)
            except AgentNotReady:
                await asyncio.sleep(0.05)

    third = await asyncio.wait_for(reopened(), 5)
    await third.aclose()
    await second.aclose()


async def test_a_stream_needs_the_token_and_sound_fields(agent: tuple[str, VncViewers]) -> None:
    url, _ = agent
    with pytest.raises(BackendError, match="refused this session's token"):
        await open_stream(url, "wrong", "vnc", {}, 5)
    with pytest.raises(InvalidParams, match="view_only"):
        await open_stream(url, TOKEN, "vnc", {"view_only": "yes"}, 5)
    with pytest.raises(InvalidParams, match="max_seconds"):
        await open_stream(url, TOKEN, "vnc", {"max_seconds": "1e9"}, 5)
    with pytest.raises(BackendError, match="no tool"):
        await open_stream(url, TOKEN, "shell", {}, 5)


async def test_a_viewer_past_its_time_is_cut_off(agent: tuple[str, VncViewers]) -> None:
    url, _ = agent
    stream = await open_stream(url, TOKEN, "vnc", {"max_seconds": "0.3"}, 5)
    await _line(stream)
    assert await asyncio.wait_for(stream.reader.read(), 5) == b"", "the agent ended the stream"
    await stream.aclose()


async def test_a_vnc_server_that_cannot_start_ends_the_stream(tmp_path: Path) -> None:
    viewers = VncViewers(env={}, user=None, program=(str(tmp_path / "missing"),), max_viewers=1)
    registry = ToolRegistry()
    registry.add_toolset(ViewerToolset(viewers))
    path = tmp_path / "b.sock"
    server = AgentHTTPServer(str(path), registry, TOKEN)
    thread = threading.Thread(target=server.serve_until_stopped, daemon=True)
    thread.start()
    try:
        for _ in range(3):  # its one place is given back each time
            stream = await open_stream(f"unix://{path}", TOKEN, "vnc", {}, 5)
            assert await asyncio.wait_for(stream.reader.read(), 5) == b""
            await stream.aclose()
    finally:
        server.stop()
        server.close_connections()
        registry.close()
        thread.join(5)
        server.server_close()


def test_the_servers_live_view_settings_stop_where_the_agent_does() -> None:
    # The ceilings are the agent's, one definition the settings are capped by.
    top = LiveViewSettings(viewers_per_session=MAX_VIEWERS, max_seconds=MAX_SECONDS)
    for too_many in ({"viewers_per_session": MAX_VIEWERS + 1}, {"max_seconds": MAX_SECONDS + 1}):
        with pytest.raises(ValidationError, match=next(iter(too_many))):
            LiveViewSettings(**too_many)
    # What the highest settings ask (as ui_vnc asks it), the agent grants, and no more.
    viewers = VncViewers(env={}, user=None, program=STAND_IN)
    query = {"view_only": "1", "max_seconds": f"{top.max_seconds:g}"}
    opened = [viewers.open(query) for _ in range(top.viewers_per_session)]
    with pytest.raises(agent_errors.Unavailable):
        viewers.open(query)
    for viewer in opened:
        viewer.release()
    with pytest.raises(agent_errors.InvalidParams, match="max_seconds"):
        viewers.open({"max_seconds": f"{MAX_SECONDS + 1:g}"})
