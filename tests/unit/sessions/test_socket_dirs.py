"""Removing the agents' socket directories: what a container left there is hostile.

A compromised agent can fill its directory with hundreds of thousands of files;
removing them must never stall the event loop that answers every other caller.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.runtime.sockets import SocketDirs


def _url(directory: Path) -> str:
    return f"unix://{directory}/agent.sock"


def _litter(directory: Path, count: int = 50) -> None:
    """What a hostile agent leaves behind: many files, nested directories."""
    nested = directory / "a" / "b"
    nested.mkdir(parents=True)
    for n in range(count):
        (nested / f"f{n}").write_text("x")


async def test_remove_for_removes_what_the_container_left_and_nothing_else(
    tmp_path: Path,
) -> None:
    sockets = SocketDirs(tmp_path, "unit")
    mine = sockets.create()
    _litter(mine)
    outside = tmp_path / "not-ours"
    outside.mkdir()
    await sockets.remove_for(_url(mine))
    await sockets.remove_for(_url(outside))
    await sockets.remove_for("http://127.0.0.1:1")
    await sockets.remove(outside)
    assert not mine.exists()
    assert outside.is_dir(), "a directory outside this server's is never removed"


async def test_prune_keeps_the_directories_in_use(tmp_path: Path) -> None:
    sockets = SocketDirs(tmp_path, "unit")
    used, stale = sockets.create(), sockets.create()
    _litter(stale)
    assert await sockets.prune([_url(used), None]) == 1
    assert sorted(sockets.base.iterdir()) == [used]


def _blocking_rmtree(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[threading.Event, threading.Event, list[int]]:
    """Make removals block until released; record the threads they ran in."""
    started, release = threading.Event(), threading.Event()
    threads: list[int] = []
    real = shutil.rmtree

    def slow(path: Any, *args: Any, **kwargs: Any) -> None:
        threads.append(threading.get_ident())
        started.set()
        # Bounded, so a removal run on the event loop fails the test instead of hanging it.
        release.wait(timeout=5)
        real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", slow)
    return started, release, threads


@pytest.mark.parametrize(
    "removal",
    [
        lambda s, d: s.remove(d),
        lambda s, d: s.remove_for(_url(d)),
        lambda s, d: s.prune([]),
    ],
    ids=["remove", "remove_for", "prune"],
)
async def test_a_slow_removal_never_stalls_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, removal: Callable[[SocketDirs, Path], Any]
) -> None:
    sockets = SocketDirs(tmp_path, "unit")
    directory = sockets.create()
    started, release, threads = _blocking_rmtree(monkeypatch)
    task = asyncio.create_task(removal(sockets, directory))
    await asyncio.to_thread(started.wait, 5)
    # The loop still runs other work while the removal is stuck.
    ticks = 0
    for _ in range(10):
        await asyncio.sleep(0)
        ticks += 1
    assert not task.done(), "the removal is still running, off the loop"
    release.set()
    await task
    assert ticks == 10
    assert threads
    assert threading.get_ident() not in threads
    assert not directory.exists()


async def test_a_tree_too_deep_to_remove_is_left_without_failing_the_destroy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sockets = SocketDirs(tmp_path, "unit")
    directory = sockets.create()

    def too_deep(path: Any, *args: Any, **kwargs: Any) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(shutil, "rmtree", too_deep)
    await sockets.remove_for(_url(directory))  # does not raise
    assert await sockets.prune([]) == 1
