"""The client's screen-recording methods, against the app in-process, and their sync twins."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox import HTTPServiceClient
from sandbox.errors import ErrorCode
from tests.unit.server.conftest import Harness, make_settings, open_harness

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256))


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await open_harness(make_settings(screen_recording={"dir": tmp_path}))
    harness.runtime.images.add("sandbox/desktop:latest")

    async def stop(params: dict[str, Any]) -> dict[str, Any]:
        return {"recording": False, "size": len(VIDEO), "fps": 5.0, "truncated": False}

    async def read(params: dict[str, Any]) -> dict[str, Any]:
        chunk = b"" if params.get("discard") else VIDEO[params["offset"] :]
        return {"data": base64.b64encode(chunk).decode(), "size": len(VIDEO), "eof": True}

    harness.agents.handlers.update({"vm.stop_recording": stop, "vm.recording_read": read})
    async with harness.app.router.lifespan_context(harness.app), harness.client:
        yield harness


async def test_list_fetch_and_delete(app: Harness) -> None:
    client = HTTPServiceClient("http://sandbox", "w1", transport=httpx.ASGITransport(app=app.app))
    await client.execute("vm:start_recording", {})
    stopped = await client.execute("vm:stop_recording", {})
    recording_id = stopped.raise_for_code().data["recording_id"]

    listed = await client.list_recordings(worker_id="w1")
    assert [video["recording_id"] for video in listed.data["recordings"]] == [recording_id]
    assert (await client.list_recordings(worker_id="other")).data["count"] == 0
    got = await client.get_recording(recording_id)
    assert got.data["content"] == VIDEO
    assert got.data["content_type"] == "video/mp4"
    assert (await client.delete_recording(recording_id)).code == 0
    assert (await client.get_recording(recording_id)).code == ErrorCode.TOOL_NOT_FOUND


def test_the_sync_twins_send_the_same_requests() -> None:
    seen: list[tuple[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url.copy_with(scheme="http", host="s"))))
        if request.method == "GET" and request.url.path.endswith("/s1.1"):
            return httpx.Response(200, content=VIDEO, headers={"content-type": "video/mp4"})
        return httpx.Response(200, json={"code": 0, "message": "success", "data": {}, "meta": {}})

    client = HTTPServiceClient("http://s", "w1", sync_transport=httpx.MockTransport(answer))
    client.list_recordings_sync(worker_id="w1", session_id="s1")
    assert client.get_recording_sync("s1.1").data["content"] == VIDEO
    client.delete_recording_sync("s1.1")
    client.close_sync()
    assert [method for method, _ in seen] == ["GET", "GET", "DELETE"]
    assert seen[0][1].endswith("/api/v1/recordings?worker_id=w1&session_id=s1")
    assert seen[1][1].endswith("/api/v1/recordings/s1.1")
    assert seen[2][1].endswith("/api/v1/recordings/s1.1")
