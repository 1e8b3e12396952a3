"""The client's trajectory methods: against the app in-process, and their sync twins."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from sandbox import HTTPServiceClient
from sandbox.errors import ErrorCode, ToolNotFound
from tests.unit.server.conftest import Harness, make_settings, open_harness

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await open_harness(make_settings(recording=True, recording_dir=tmp_path))
    harness.runtime.images.add("sandbox/desktop:latest")

    async def screenshot(params: object) -> dict[str, object]:
        return {"image": base64.b64encode(PNG).decode(), "width": 1, "height": 1}

    harness.agents.handlers["vm.screenshot"] = screenshot
    async with harness.app.router.lifespan_context(harness.app), harness.client:
        yield harness


async def test_list_fetch_image_and_delete(app: Harness) -> None:
    client = HTTPServiceClient("http://sandbox", "w1", transport=httpx.ASGITransport(app=app.app))
    ran = await client.execute("bash:run", {"command": "echo hi"})
    shot = await client.execute("vm:screenshot", {})
    bash_session = ran["meta"]["session_id"]

    listed = await client.list_trajectories(worker_id="w1")
    assert sorted(t["session_id"] for t in listed.data["trajectories"]) == sorted(
        [bash_session, shot["meta"]["session_id"]]
    )
    assert (await client.list_trajectories(worker_id="other")).data["count"] == 0

    trajectory = await client.get_trajectory(bash_session)
    (step,) = trajectory.raise_for_code().data["steps"]
    assert step["data"]["stdout"] == "echo hi\n"

    shots = await client.get_trajectory(shot["meta"]["session_id"])
    reference = shots.data["steps"][0]["data"]["image"]
    image = await client.get_trajectory_image(reference["$image"])
    assert image.data["content"] == PNG
    assert image.data["content_type"] == "image/png"
    inline = await client.get_trajectory(shot["meta"]["session_id"], images="inline")
    assert inline.data["steps"][0]["data"]["image"] == shot["data"]["image"]

    assert (await client.delete_trajectory(bash_session)).code == 0
    gone = await client.get_trajectory(bash_session)
    assert gone.code == ErrorCode.TOOL_NOT_FOUND
    with pytest.raises(ToolNotFound, match="no trajectory"):
        gone.raise_for_code()
    assert (await client.delete_trajectory(bash_session)).code == ErrorCode.TOOL_NOT_FOUND
    await client.close()


def test_the_sync_twins_send_the_same_requests() -> None:
    seen: list[tuple[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url.copy_with(scheme="http", host="s"))))
        if request.url.path.endswith("/images/" + "a" * 64):
            return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})
        if request.method == "GET" and request.url.path.endswith("/s1"):
            lines = [{"seq": 1}, {"seq": 2}]
            body = "".join(json.dumps(line) + "\n" for line in lines)
            return httpx.Response(200, text=body, headers={"content-type": "application/x-ndjson"})
        return httpx.Response(200, json={"code": 0, "message": "success", "data": {}, "meta": {}})

    client = HTTPServiceClient("http://s", "w1", sync_transport=httpx.MockTransport(answer))
    client.list_trajectories_sync(worker_id="w1", since=5.0)
    assert client.get_trajectory_sync("s1", images="inline").data["steps"] == [
        {"seq": 1},
        {"seq": 2},
    ]
    assert client.get_trajectory_image_sync("a" * 64).data["content"] == PNG
    client.delete_trajectory_sync("s1")
    client.close_sync()
    assert [method for method, _ in seen] == ["GET", "GET", "GET", "DELETE"]
    assert seen[0][1].endswith("/api/v1/trajectories?worker_id=w1&since=5.0")
    assert seen[1][1].endswith("/api/v1/trajectories/s1?images=inline")
    assert seen[3][1].endswith("/api/v1/trajectories/s1")
