"""Screen recordings over the API with a fake desktop agent: started with the
session, copied out (bounded) when stopped or destroyed, kept, listed, tenant-checked."""

from __future__ import annotations

import base64
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.errors import ErrorCode
from sandbox.sessions.pools import pool_key
from tests.unit.fakes import FakeRuntime

from .conftest import DeletedOnSecondLook, Harness, make_settings, open_harness

KEYS = {"alpha": "alpha-key-123", "beta": "beta-key-456"}
MIB = 1 << 20


def auth(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


class FakeRecorder:
    """The agent's side: a video of `video` bytes, read in chunks (or a hostile one)."""

    def __init__(self, video: bytes, *, flood: bool = False) -> None:
        self.video = video
        self.flood = flood
        self.started: list[dict[str, Any]] = []
        self.reads: list[dict[str, Any]] = []
        self.discarded = False
        self.running = False

    def install(self, h: Harness) -> None:
        h.agents.handlers.update(
            {
                "vm.start_recording": self.start,
                "vm.stop_recording": self.stop,
                "vm.recording_read": self.read,
            }
        )

    async def start(self, params: dict[str, Any]) -> dict[str, Any]:
        self.started.append(params)
        self.running = True
        return {"recording": True, "fps": params["fps"]}

    async def stop(self, params: dict[str, Any]) -> dict[str, Any]:
        self.running = False
        return {"recording": False, "size": len(self.video), "fps": 5.0, "truncated": False}

    async def read(self, params: dict[str, Any]) -> dict[str, Any]:
        self.reads.append(params)
        if params.get("discard"):
            self.discarded = True
            return {"data": "", "size": len(self.video), "eof": True}
        offset, length = params["offset"], params["length"]
        if self.flood:  # never at the end, as a hostile agent would say
            return {"data": base64.b64encode(b"v" * length).decode(), "eof": False}
        chunk = self.video[offset : offset + length]
        return {
            "data": base64.b64encode(chunk).decode(),
            "size": len(self.video),
            "eof": offset + len(chunk) >= len(self.video),
        }


async def _open(tmp_path: Path, runtime: FakeRuntime | None = None, **settings: Any) -> Harness:
    h = await open_harness(
        make_settings(
            screen_recording={"dir": tmp_path / "videos", **settings.pop("sr", {})}, **settings
        ),
        runtime,
    )
    h.runtime.images.add("sandbox/desktop:latest")
    return h


async def test_a_session_with_recording_is_recorded_and_its_video_outlives_it(
    tmp_path: Path,
) -> None:
    h = await _open(tmp_path)
    recorder = FakeRecorder(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40_000)
    recorder.install(h)
    async with h.app.router.lifespan_context(h.app), h.client:
        created = await h.post(
            "/session/create",
            {"worker_id": "w1", "resource_type": "vm", "config": {"recording": True}},
        )
        assert created["code"] == 0, created
        assert created["data"]["config_applied"]["recording"] is True
        assert recorder.started == [{"fps": 5.0, "max_bytes": 512 * MIB, "max_seconds": 14400.0}]
        session_id = created["data"]["session_id"]
        # The option is the server's: it neither reaches the container nor names its pool.
        container = h.runtime.running()[-1]
        assert "recording" not in str(h.runtime.specs[container.id].environment).lower()

        destroyed = await h.post("/session/destroy", {"worker_id": "w1", "resource_type": "vm"})
        assert destroyed["code"] == 0
        assert recorder.discarded
        assert [read["length"] for read in recorder.reads[:-1]] == [8 * MIB, 8 * MIB]

        listed = (await h.client.get("/recordings")).json()["data"]
        assert listed["count"] == 1
        video = listed["recordings"][0]
        assert video["session_id"] == session_id
        assert video["recording_id"] == f"{session_id}.1"
        assert video["size"] == len(recorder.video)
        assert video["complete"] is True
        for name in (video["recording_id"], session_id):  # a session id: its latest video
            got = await h.client.get(f"/api/v1/recordings/{name}")
            assert got.status_code == 200
            assert got.headers["content-type"] == "video/mp4"
            assert got.content == recorder.video


async def test_stop_recording_keeps_the_video_and_answers_its_id(tmp_path: Path) -> None:
    h = await _open(tmp_path)
    recorder = FakeRecorder(b"video-bytes")
    recorder.install(h)
    async with h.app.router.lifespan_context(h.app), h.client:
        started = await h.post(
            "/execute", {"worker_id": "w1", "action": "vm:start_recording", "params": {"fps": 2}}
        )
        assert started["code"] == 0, started
        assert recorder.started[0]["fps"] == 2
        stopped = await h.post("/execute", {"worker_id": "w1", "action": "vm:stop_recording"})
        assert stopped["code"] == 0, stopped
        recording_id = stopped["data"]["recording_id"]
        assert stopped["data"]["kept_bytes"] == len(b"video-bytes")
        got = await h.client.get(f"/recordings/{recording_id}")
        assert got.content == b"video-bytes"
        # Stopped and kept: destroying the session keeps nothing more.
        await h.post("/session/destroy", {"worker_id": "w1"})
        assert (await h.client.get("/recordings")).json()["data"]["count"] == 1

        again = await h.post(
            "/execute",
            {"worker_id": "w1", "action": "vm:start_recording", "params": {"max_bytes": 1}},
        )
        # The bounds are the server's: a caller's is ignored (and named), never sent.
        assert again["code"] == 0, again
        assert "params.max_bytes" in again["meta"]["warnings"][0]
        assert recorder.started[-1]["max_bytes"] == 512 * MIB


def file_io_on_the_loop(monkeypatch: pytest.MonkeyPatch, root: Path) -> list[str]:
    """The file operations on `root` that run on this (the event loop's) thread, as
    they happen: what a video store does there blocks every other request."""
    loop_thread = threading.get_ident()
    seen: list[str] = []

    def watched(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            paths = [*args, kwargs.get("dir")]
            touches_root = any(str(path).startswith(str(root)) for path in paths)
            if touches_root and threading.get_ident() == loop_thread:
                seen.append(name)
            return call(*args, **kwargs)

        return wrapper

    for owner, name in [
        (Path, "mkdir"),
        (Path, "exists"),
        (Path, "write_text"),
        (Path, "unlink"),
        (tempfile, "mkstemp"),
        (os, "replace"),
    ]:
        monkeypatch.setattr(owner, name, watched(name, getattr(owner, name)))
    return seen


@pytest.fixture
async def recording(tmp_path: Path) -> AsyncIterator[Harness]:
    """A server on which worker w1 records its screen now (the video: b"video-bytes")."""
    h = await _open(tmp_path)
    FakeRecorder(b"video-bytes").install(h)
    async with h.app.router.lifespan_context(h.app), h.client:
        started = await h.post("/execute", {"worker_id": "w1", "action": "vm:start_recording"})
        assert started["code"] == 0, started
        yield h


async def stop(h: Harness) -> str:
    """Stop w1's recording; the kept video's id."""
    stopped = await h.post("/execute", {"worker_id": "w1", "action": "vm:stop_recording"})
    assert stopped["code"] == 0, stopped
    return str(stopped["data"]["recording_id"])


async def test_copying_a_video_out_does_no_file_io_on_the_event_loop(
    recording: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_the_loop = file_io_on_the_loop(monkeypatch, tmp_path / "videos")
    recording_id = await stop(recording)
    assert on_the_loop == []
    assert (tmp_path / "videos" / f"{recording_id}.mp4").read_bytes() == b"video-bytes"


async def test_a_video_deleted_as_its_download_starts_is_sent_whole_or_not_found(
    recording: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recording_id = await stop(recording)
    videos = recording.app.state.services.sessions.videos
    find = videos.get

    def found_then_deleted(tenant: str, recording_id: str) -> Any:
        found = find(tenant, recording_id)
        return found and (found[0], DeletedOnSecondLook(found[1]))

    monkeypatch.setattr(videos, "get", found_then_deleted)
    got = await recording.client.get(f"/recordings/{recording_id}")
    # Opened before it went: sent whole (a 404 envelope would do as well; a 500 not).
    assert (got.status_code, got.content) == (200, b"video-bytes")
    assert got.headers["content-length"] == str(len(b"video-bytes"))
    assert got.headers["content-disposition"] == f'attachment; filename="{recording_id}.mp4"'

    # Deleted before: the envelope an unknown recording gets.
    (tmp_path / "videos" / f"{recording_id}.json").unlink()
    gone = await recording.client.get(f"/recordings/{recording_id}")
    assert gone.status_code == 404
    assert gone.json()["code"] == ErrorCode.TOOL_NOT_FOUND


async def test_a_hostile_agent_cannot_make_the_server_keep_more_than_the_cap(
    tmp_path: Path,
) -> None:
    h = await _open(tmp_path, sr={"max_bytes": MIB})
    recorder = FakeRecorder(b"", flood=True)
    recorder.install(h)
    async with h.app.router.lifespan_context(h.app), h.client:
        await h.post("/execute", {"worker_id": "w1", "action": "vm:start_recording"})
        stopped = await h.post("/execute", {"worker_id": "w1", "action": "vm:stop_recording"})
        assert stopped["code"] == 0, stopped
        assert stopped["data"]["kept_bytes"] == 2 * MIB  # the cap and its slack
        assert stopped["data"]["complete"] is False
        (kept,) = (tmp_path / "videos").glob("*.mp4")
        assert kept.stat().st_size == 2 * MIB


async def test_an_agent_failing_midway_leaves_the_part_already_copied(tmp_path: Path) -> None:
    h = await _open(tmp_path)
    recorder = FakeRecorder(b"x" * (9 * MIB))
    recorder.install(h)
    reads = recorder.read

    async def read_then_garbage(params: dict[str, Any]) -> dict[str, Any]:
        if params.get("offset"):  # the second chunk is not base64
            return {"data": "%%%", "eof": False}
        return await reads(params)

    h.agents.handlers["vm.recording_read"] = read_then_garbage
    async with h.app.router.lifespan_context(h.app), h.client:
        await h.post("/execute", {"worker_id": "w1", "action": "vm:start_recording"})
        stopped = await h.post("/execute", {"worker_id": "w1", "action": "vm:stop_recording"})
        assert stopped["code"] == 0, stopped
        assert (stopped["data"]["kept_bytes"], stopped["data"]["complete"]) == (8 * MIB, False)
        (kept,) = (tmp_path / "videos").glob("*.mp4")
        assert kept.read_bytes() == recorder.video[: 8 * MIB]


async def test_a_tenant_sees_and_deletes_only_its_own_recordings(tmp_path: Path) -> None:
    h = await _open(tmp_path, api_keys=KEYS)
    recorder = FakeRecorder(b"alpha's screen")
    recorder.install(h)
    async with h.app.router.lifespan_context(h.app), h.client:
        await h.post(
            "/execute", {"worker_id": "w1", "action": "vm:start_recording"}, headers=auth("alpha")
        )
        stopped = await h.post(
            "/execute", {"worker_id": "w1", "action": "vm:stop_recording"}, headers=auth("alpha")
        )
        recording_id = stopped["data"]["recording_id"]
        beta = (await h.client.get("/recordings", headers=auth("beta"))).json()["data"]
        assert beta["count"] == 0
        for method in ("GET", "DELETE"):
            denied = await h.client.request(
                method, f"/recordings/{recording_id}", headers=auth("beta")
            )
            assert denied.status_code == 404
            assert denied.json()["code"] == ErrorCode.TOOL_NOT_FOUND
        bad = await h.client.get("/recordings/..%2Fsecret", headers=auth("alpha"))
        assert bad.status_code in (400, 404)
        deleted = await h.client.delete(f"/recordings/{recording_id}", headers=auth("alpha"))
        assert deleted.json()["data"] == {"deleted": recording_id}
        assert list((tmp_path / "videos").glob("*.mp4")) == []


def test_recording_sessions_claim_from_the_same_pool() -> None:
    plain = {"memory": "1g", "screen_size": [1280, 800]}
    assert pool_key("vm", {**plain, "recording": True}) == pool_key("vm", plain)


async def test_a_recording_started_before_a_restart_is_kept_when_its_session_goes(
    tmp_path: Path,
) -> None:
    recorder = FakeRecorder(b"video-from-before-the-restart")
    first = await _open(tmp_path, keep_sessions_on_shutdown=True)
    recorder.install(first)
    async with first.app.router.lifespan_context(first.app), first.client:
        started = await first.post(
            "/execute", {"worker_id": "w1", "action": "vm:start_recording", "params": {}}
        )
        assert started["code"] == 0, started
    # A new server adopts the session; only the agent knows that it records.
    second = await _open(tmp_path, runtime=first.runtime)
    recorder.install(second)
    async with second.app.router.lifespan_context(second.app), second.client:
        await second.app.state.services.sessions.wait_for_recovery()
        destroyed = await second.post("/session/destroy", {"worker_id": "w1"})
        assert destroyed["data"]["count"] == 1, destroyed
        assert not recorder.running
        listed = (await second.client.get("/recordings")).json()["data"]
        assert [video["size"] for video in listed["recordings"]] == [len(recorder.video)]
