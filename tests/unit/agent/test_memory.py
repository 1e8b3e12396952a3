"""Telling an OOM kill from any other SIGKILL, by the cgroup's counter."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.agent import memory
from sandbox.agent.memory import OomWatch


def _counter(path: Path, kills: int) -> None:
    path.write_text(f"oom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n")


def test_a_rising_counter_marks_the_result(tmp_path: Path) -> None:
    counter = tmp_path / "memory.oom_control"
    _counter(counter, 2)
    watch = OomWatch((str(counter),))
    before = watch.count()
    assert before == 2

    _counter(counter, 3)
    data = watch.mark(before, {"stdout": "", "stderr": "Killed", "exit_code": 137})

    assert data["oom_killed"] is True
    assert data["stderr"].startswith("Killed\n[sandbox] killed by the kernel for exceeding")
    assert "(OOM)" in data["stderr"]


def test_a_steady_counter_marks_nothing(tmp_path: Path) -> None:
    counter = tmp_path / "memory.events"
    counter.write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    watch = OomWatch((str(counter),))
    data = watch.mark(watch.count(), {"stderr": "", "exit_code": 137})
    assert data == {"stderr": "", "exit_code": 137, "oom_killed": False}


def test_without_a_counter_nothing_is_claimed(tmp_path: Path) -> None:
    watch = OomWatch((str(tmp_path / "absent"),))
    assert watch.count() is None
    assert watch.mark(None, {"stderr": ""})["oom_killed"] is False


def test_the_oom_note_names_the_disk_quota_inside_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter, limit = tmp_path / "memory.events", tmp_path / "memory.max"
    counter.write_text("oom_kill 0\n")
    limit.write_text(str(144 << 20))
    monkeypatch.setattr(memory, "_LIMITS", (str(limit),))
    monkeypatch.setenv("SANDBOX_AGENT_DISK_BYTES", str(16 << 20))
    watch = OomWatch((str(counter),))
    before = watch.count()
    counter.write_text("oom_kill 1\n")
    data = watch.mark(before, {"stderr": ""})
    assert "memory limit (144m: 128m + the 16m disk quota) (OOM)" in data["stderr"]
