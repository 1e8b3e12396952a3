"""`sandbox warmup`'s reading of /warmup/status."""

from __future__ import annotations

from sandbox.warmup_progress import describe


def test_building_and_filling_is_not_done() -> None:
    status = {
        "bash": {
            "state": "ready",
            "pools": [{"ready": 1, "target": 4, "last_error": None}],
        },
        "rag": {
            "state": "ready",
            "service": {"state": "indexing", "progress": {"done": 50, "total": 100}},
        },
    }
    progress = describe(status, ["bash", "rag"])
    assert not progress.done
    assert progress.errors == []
    assert "1/4" in progress.lines[0]
    assert "[##########..........]" in progress.lines[1]


def test_everything_ready_is_done() -> None:
    status = {
        "bash": {"state": "ready", "pools": [{"ready": 4, "target": 4}]},
        "rag": {"state": "ready", "service": {"state": "ready"}},
    }
    assert describe(status, ["bash", "rag"]).done


def test_failures_are_reported() -> None:
    status = {
        "vm": {"state": "failed", "error": "apt-get failed"},
        "rag": {"state": "ready", "service": {"state": "failed", "error": "bad corpus"}},
    }
    progress = describe(status, ["vm", "rag"])
    assert not progress.done
    assert progress.errors == [
        "vm: image build failed: apt-get failed",
        "rag: service failed: bad corpus",
    ]
