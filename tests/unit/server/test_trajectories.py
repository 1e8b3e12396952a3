"""Recorded sessions over the API: list, export as JSONL, images, delete, tenants."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.errors import ErrorCode

from .conftest import DeletedOnSecondLook, Harness, make_settings, open_harness

KEYS = {"alpha": "alpha-key-123", "beta": "beta-key-456"}


def auth(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def png(width: int, height: int, shade: int = 0) -> bytes:
    """A real, decodable grey PNG."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    rows = b"".join(b"\x00" + bytes([shade]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


SCREEN = png(64, 48)


async def _screenshot(params: dict[str, Any]) -> dict[str, Any]:
    return {"image": base64.b64encode(SCREEN).decode(), "width": 64, "height": 48}


async def _open(tmp_path: Path, **settings: Any) -> Harness:
    h = await open_harness(make_settings(recording_dir=tmp_path, **settings))
    h.runtime.images.add("sandbox/desktop:latest")
    h.agents.handlers["vm.screenshot"] = _screenshot
    return h


@pytest.fixture
async def recording(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await _open(tmp_path, recording=True)
    async with h.app.router.lifespan_context(h.app), h.client:
        yield h


def run(command: str, worker: str = "w1", **params: Any) -> dict[str, Any]:
    return {"worker_id": worker, "action": "bash:run", "params": {"command": command, **params}}


async def jsonl(h: Harness, session_id: str, **kw: Any) -> list[dict[str, Any]]:
    response = await h.client.get(f"/trajectories/{session_id}", **kw)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


async def test_every_call_of_a_recorded_session_is_a_step_in_order(recording: Harness) -> None:
    first = await recording.post("/execute", run("echo one"))
    second = await recording.post("/execute", run("echo two"), headers={"X-Trace-ID": "t-2"})
    session_id = first["meta"]["session_id"]
    assert second["data"]["stdout"] == "echo two\n", "recording changes no result"

    steps = await jsonl(recording, session_id)
    assert [s["seq"] for s in steps] == [1, 2]
    assert [s["params"]["command"] for s in steps] == ["echo one", "echo two"]
    assert steps[1]["data"] == second["data"]
    assert steps[1]["trace_id"] == "t-2"
    assert steps[0]["tool"] == "bash:run"
    assert steps[0]["worker_id"] == "w1"
    assert steps[0]["code"] == 0
    assert steps[0]["execution_time_ms"] >= 0

    listed = (await recording.client.get("/api/v1/trajectories", params={"worker_id": "w1"})).json()
    assert listed["data"]["count"] == 1
    assert listed["data"]["trajectories"][0]["session_id"] == session_id
    assert listed["data"]["trajectories"][0]["steps"] == 2


async def test_a_failed_call_is_recorded_with_its_code(recording: Harness) -> None:
    failed = await recording.post("/execute", run("sleep 5"))
    assert failed["code"] == ErrorCode.TIMEOUT
    steps = await jsonl(recording, failed["meta"]["session_id"])
    assert steps[0]["code"] == ErrorCode.TIMEOUT
    assert steps[0]["data"]["stdout"] == "partial"


async def test_secrets_in_params_are_redacted(recording: Harness) -> None:
    envelope = await recording.post(
        "/execute", run("deploy", env={"API_TOKEN": "s3cret", "HOME": "/root"}, password="hunter2")
    )
    steps = await jsonl(recording, envelope["meta"]["session_id"])
    assert steps[0]["params"]["env"] == {"API_TOKEN": "[redacted]", "HOME": "/root"}
    assert steps[0]["params"]["password"] == "[redacted]"
    assert "s3cret" not in json.dumps(steps)
    assert "hunter2" not in json.dumps(steps)


async def test_a_screenshot_is_stored_once_and_referenced(
    recording: Harness, tmp_path: Path
) -> None:
    shots = [
        await recording.post("/execute", {"worker_id": "w1", "action": "vm:screenshot"})
        for _ in range(3)
    ]
    assert shots[0]["data"]["image"] == base64.b64encode(SCREEN).decode(), "result unchanged"
    session_id = shots[0]["meta"]["session_id"]
    steps = await jsonl(recording, session_id)
    reference = steps[0]["data"]["image"]
    assert reference["format"] == "png"
    assert all(step["data"]["image"] == reference for step in steps)
    assert len(list((tmp_path / "images").rglob("*.png"))) == 1, "three shots, one file"

    image = await recording.client.get(f"/trajectories/images/{reference['$image']}")
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content == SCREEN

    inline = await jsonl(recording, session_id, params={"images": "inline"})
    assert base64.b64decode(inline[0]["data"]["image"]) == SCREEN
    assert inline[0]["data"]["width"] == 64


async def test_an_image_pruned_as_its_download_starts_is_sent_whole_not_a_500(
    recording: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    shot = await recording.post("/execute", {"worker_id": "w1", "action": "vm:screenshot"})
    steps = await jsonl(recording, shot["meta"]["session_id"])
    sha256 = steps[0]["data"]["image"]["$image"]
    recorder = recording.app.state.services.recorder
    find = recorder.image

    def found_then_pruned(tenant: str, sha256: str) -> Path | None:
        path = find(tenant, sha256)
        return path and DeletedOnSecondLook(path)

    monkeypatch.setattr(recorder, "image", found_then_pruned)
    image = await recording.client.get(f"/trajectories/images/{sha256}")
    assert (image.status_code, image.content) == (200, SCREEN)
    assert image.headers["content-type"] == "image/png"
    for path in (recording.settings.recording_dir / "images").rglob(f"{sha256}.*"):
        path.unlink()  # pruned before: the envelope of an image never stored
    gone = await recording.client.get(f"/trajectories/images/{sha256}")
    assert gone.status_code == 404
    assert gone.json()["code"] == ErrorCode.TOOL_NOT_FOUND


async def test_delete_removes_the_trajectory_and_its_images(
    recording: Harness, tmp_path: Path
) -> None:
    shot = await recording.post("/execute", {"worker_id": "w1", "action": "vm:screenshot"})
    session_id = shot["meta"]["session_id"]
    deleted = (await recording.client.delete(f"/trajectories/{session_id}")).json()
    assert deleted["code"] == 0
    assert list((tmp_path / "images").rglob("*.png")) == []
    again = await recording.client.get(f"/trajectories/{session_id}")
    assert again.status_code == 404
    assert again.json()["code"] == ErrorCode.TOOL_NOT_FOUND
    assert session_id in again.json()["message"]


async def test_bad_input_gets_a_clear_error_not_a_5xx(recording: Harness) -> None:
    for method, path in [
        ("GET", "/trajectories/nope"),
        ("DELETE", "/trajectories/nope"),
        ("GET", "/trajectories/images/" + "0" * 64),
        ("GET", "/trajectories/images/not-a-hash"),
        ("GET", "/trajectories?worker_id=bad%20worker"),
        ("GET", "/trajectories/x?images=sometimes"),
    ]:
        response = await recording.client.request(method, path)
        assert 400 <= response.status_code < 500, (path, response.text)
        assert response.json()["code"] in (ErrorCode.TOOL_NOT_FOUND, ErrorCode.INVALID_PARAMS)


async def test_without_recording_only_sessions_asking_for_it_are_recorded(tmp_path: Path) -> None:
    h = await _open(tmp_path)
    async with h.app.router.lifespan_context(h.app), h.client:
        plain = await h.post("/execute", run("x", worker="plain"))
        created = await h.post(
            "/session/create",
            {"worker_id": "rec", "resource_type": "bash", "config": {"record": True}},
        )
        assert created["code"] == 0, created
        recorded = await h.post("/execute", run("y", worker="rec"))
        assert recorded["data"]["stdout"] == "y\n"
        listed = (await h.client.get("/trajectories")).json()["data"]["trajectories"]
        assert [t["session_id"] for t in listed] == [recorded["meta"]["session_id"]]
        assert (
            await h.client.get(f"/trajectories/{plain['meta']['session_id']}")
        ).status_code == 404
        # The flag is the server's: the container's environment never carries it.
        container = h.runtime.running()[-1]
        assert "RECORD" not in json.dumps(h.runtime.specs[container.id].environment).upper()


async def test_a_tenant_sees_and_deletes_only_its_own_trajectories(tmp_path: Path) -> None:
    h = await _open(tmp_path, recording=True, api_keys=KEYS)
    async with h.app.router.lifespan_context(h.app), h.client:
        mine = await h.post("/execute", run("a", worker="shared"), headers=auth("alpha"))
        shot = await h.post(
            "/execute", {"worker_id": "shared", "action": "vm:screenshot"}, headers=auth("alpha")
        )
        await h.post("/execute", run("b", worker="shared"), headers=auth("beta"))
        alpha_session = mine["meta"]["session_id"]

        beta = (await h.client.get("/trajectories", headers=auth("beta"))).json()["data"]
        assert beta["count"] == 1
        assert alpha_session not in json.dumps(beta)
        by_worker = await h.client.get(
            "/trajectories", params={"session_id": alpha_session}, headers=auth("beta")
        )
        assert by_worker.json()["data"]["count"] == 0
        for method in ("GET", "DELETE"):
            denied = await h.client.request(
                method, f"/trajectories/{alpha_session}", headers=auth("beta")
            )
            assert denied.status_code == 404, "another tenant's trajectory does not exist for beta"
        steps = await jsonl(h, shot["meta"]["session_id"], headers=auth("alpha"))
        sha = steps[0]["data"]["image"]["$image"]
        assert (
            await h.client.get(f"/trajectories/images/{sha}", headers=auth("beta"))
        ).status_code == 404
        assert (
            await h.client.get(f"/trajectories/{alpha_session}", headers=auth("alpha"))
        ).status_code == 200


async def test_calls_queued_at_shutdown_are_stored(tmp_path: Path) -> None:
    h = await _open(tmp_path, recording=True)
    async with h.app.router.lifespan_context(h.app), h.client:
        ids = {(await h.post("/execute", run(f"n{i}")))["meta"]["session_id"] for i in range(20)}
    h = await _open(tmp_path, recording=True)
    async with h.app.router.lifespan_context(h.app), h.client:
        (session_id,) = ids
        steps = await jsonl(h, session_id)
        assert [s["params"]["command"] for s in steps] == [f"n{i}" for i in range(20)]


async def test_batch_actions_are_recorded_as_steps(recording: Harness) -> None:
    batch = await recording.post(
        "/execute/batch",
        {
            "worker_id": "w1",
            "actions": [
                {"action": "bash:run", "params": {"command": "a"}},
                {"action": "bash:run", "params": {"command": "b"}},
            ],
        },
    )
    results = batch["data"]["results"]
    steps = await jsonl(recording, results[0]["meta"]["session_id"])
    assert [s["params"]["command"] for s in steps] == ["a", "b"]
    assert [s["data"] for s in steps] == [r["data"] for r in results]
