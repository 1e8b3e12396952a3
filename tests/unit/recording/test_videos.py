"""The kept screen videos: ids, tenants, a failed copy, the total and age bounds."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from sandbox.recording.videos import Video, VideoStore


async def keep(
    store: VideoStore, session_id: str, content: bytes, *, at: float, tenant: str = "t"
) -> str:
    async with store.writing(session_id) as (recording_id, file):
        file.write(content)
    store.keep(
        Video(recording_id, session_id, "w1", tenant, at - 1, at, len(content), 5.0, True, False)
    )
    return recording_id


async def test_each_recording_of_a_session_gets_the_next_id_and_the_latest_answers_for_it(
    tmp_path: Path,
) -> None:
    store = VideoStore(tmp_path / "videos", total_max_bytes=1 << 20)
    assert store.find("t") == []  # no directory yet, nothing to list
    first = await keep(store, "vm_w1_001_ab", b"one", at=10)
    second = await keep(store, "vm_w1_001_ab", b"two", at=20)
    assert (first, second) == ("vm_w1_001_ab.1", "vm_w1_001_ab.2")
    found = store.get("t", "vm_w1_001_ab")
    assert found is not None
    assert found[0].recording_id == second
    assert found[1].read_bytes() == b"two"
    assert [video.recording_id for video in store.find("t")] == [second, first]
    assert store.get("other", first) is None
    assert store.get("t", "../videos/vm_w1_001_ab.1") is None
    assert not store.delete("t", "vm_w1_001_ab")  # a session id names no one video to delete
    assert store.delete("t", first)
    assert [video.recording_id for video in store.find("t")] == [second]


async def test_a_failed_copy_leaves_nothing(tmp_path: Path) -> None:
    store = VideoStore(tmp_path, total_max_bytes=1 << 20)

    async def copy() -> None:
        async with store.writing("s") as (_, file):
            file.write(b"partial")
            raise RuntimeError("the agent went away")

    with pytest.raises(RuntimeError):
        await copy()
    assert list(tmp_path.iterdir()) == []


async def test_past_the_total_the_oldest_videos_go(tmp_path: Path) -> None:
    store = VideoStore(tmp_path, total_max_bytes=10)
    old = await keep(store, "a", b"12345", at=1)
    await keep(store, "b", b"12345", at=2)
    await keep(store, "c", b"12345", at=3)
    assert sorted(video.session_id for video in store.find("t")) == ["b", "c"]
    assert not (tmp_path / f"{old}.mp4").exists()


async def test_videos_past_the_age_bound_go_when_kept_or_listed(tmp_path: Path) -> None:
    now = [1000.0]
    store = VideoStore(tmp_path, total_max_bytes=1 << 20, max_age_s=100, clock=lambda: now[0])
    old = await keep(store, "a", b"old", at=950)
    await keep(store, "b", b"new", at=1000)
    assert sorted(video.session_id for video in store.find("t")) == ["a", "b"]
    now[0] = 1060.0  # a stopped 110 s ago, b 60 s ago
    assert [video.session_id for video in store.find("t")] == ["b"]
    assert not (tmp_path / f"{old}.mp4").exists()
    assert not (tmp_path / f"{old}.json").exists()


def leave(path: Path, content: bytes, *, age_s: float = 0.0) -> Path:
    """A file as a killed or running copy leaves it, last changed `age_s` ago."""
    path.write_bytes(content)
    changed = time.time() - age_s
    os.utime(path, (changed, changed))
    return path


async def test_the_files_of_copies_under_way_count_towards_the_total(tmp_path: Path) -> None:
    store = VideoStore(tmp_path, total_max_bytes=20)
    old = await keep(store, "a", b"12345", at=1)
    leave(tmp_path / ".partial-copying.mp4", b"x" * 8)
    leave(tmp_path / "b.1.json", b"{}")  # an id reserved, its video just placed
    leave(tmp_path / "b.1.mp4", b"y" * 6)
    await keep(store, "c", b"1", at=3)  # 5 + 8 + 2 + 6 + 1 bytes: past the total
    assert [video.session_id for video in store.find("t")] == ["c"]
    assert not (tmp_path / f"{old}.mp4").exists()
    # Copies under way are never cut short by the total.
    assert (tmp_path / ".partial-copying.mp4").exists()
    assert (tmp_path / "b.1.mp4").exists()


async def test_what_dead_copies_left_is_deleted_once_abandoned(tmp_path: Path) -> None:
    store = VideoStore(tmp_path, total_max_bytes=1 << 20, abandoned_after_s=600)
    kept = await keep(store, "a", b"kept", at=time.time())
    dead = [
        leave(tmp_path / ".partial-killed.mp4", b"x" * 100, age_s=700),
        leave(tmp_path / "b.1.json", b"{}", age_s=700),  # reserved, never kept
        leave(tmp_path / "b.1.mp4", b"y" * 100, age_s=700),
        leave(tmp_path / "c.1.json", b"not json", age_s=700),
        leave(tmp_path / "c.1.mp4", b"z" * 100, age_s=700),
        leave(tmp_path / "d.1.mp4", b"w" * 100, age_s=700),  # its metadata gone
        leave(tmp_path / "e.1.json", json.dumps({"recording_id": "other"}).encode(), age_s=700),
    ]
    running = [
        leave(tmp_path / ".partial-running.mp4", b"x" * 100, age_s=10),
        leave(tmp_path / "f.1.json", b"{}", age_s=10),
    ]
    assert [video.recording_id for video in store.find("t")] == [kept]
    assert [path.name for path in dead if path.exists()] == []
    assert all(path.exists() for path in running)
    assert (tmp_path / f"{kept}.mp4").read_bytes() == b"kept"
