"""The recorder and its store: durability, retention, redaction, image dedup."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from sandbox.recording import IMAGE_KEY, REDACTED, Call, ImageFiles, Recorder, SQLiteStore, redact

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def call(
    session_id: str = "bash_w1_001_aaaaaaaa", *, data: Any = None, at: float = 1000.0, **kw: Any
) -> Call:
    fields: dict[str, Any] = {
        "tenant": "default",
        "worker_id": "w1",
        "session_id": session_id,
        "resource_type": "bash",
        "action": "bash:run",
        "tool": "bash:run",
        "params": {"command": "true"},
        "code": 0,
        "message": "success",
        "data": data if data is not None else {"stdout": ""},
        "started_at": at,
        "execution_time_ms": 1.0,
        "trace_id": "t",
    }
    fields.update(kw)
    return Call(**fields)


def test_committed_steps_survive_a_sigkill(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})
        from tests.unit.recording.test_recorder import call
        from sandbox.recording import Recorder
        recorder = Recorder(Path({str(tmp_path)!r}))
        for i in range(50):
            recorder.submit(call(params={{"command": f"c{{i}}"}}))
        assert recorder.flush()
        print("stored", flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "stored"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    store = SQLiteStore(tmp_path / "trajectories.db")
    steps = store.steps("default", "bash_w1_001_aaaaaaaa")
    assert steps is not None
    assert [s.params["command"] for s in steps] == [f"c{i}" for i in range(50)]
    store.close()


def test_numbering_continues_after_a_reopen(tmp_path: Path) -> None:
    for _ in range(2):
        recorder = Recorder(tmp_path)
        recorder.submit(call())
        recorder.close()
    store = SQLiteStore(tmp_path / "trajectories.db")
    steps = store.steps("default", "bash_w1_001_aaaaaaaa")
    assert steps is not None
    assert [s.seq for s in steps] == [1, 2]
    store.close()


def test_retention_drops_old_trajectories_then_the_least_recent_past_the_size(
    tmp_path: Path,
) -> None:
    now = [10_000.0]
    recorder = Recorder(tmp_path, max_age_s=100, max_bytes=1 << 30, clock=lambda: now[0])
    shot = base64.b64encode(PNG).decode()
    recorder.submit(call("old", at=9_000.0, data={"image": shot}))
    recorder.submit(call("mid", at=9_950.0))
    recorder.submit(call("new", at=9_990.0))
    assert recorder.flush()

    recorder.prune()
    assert [t.session_id for t in recorder.find("default")] == ["new", "mid"]
    assert list((tmp_path / "images").rglob("*.png")) == [], "the old one's image went with it"

    now[0] = 10_020.0
    sizes = {t.session_id: t.bytes for t in recorder.find("default")}
    recorder.max_bytes = sizes["new"]  # room for the most recent only
    recorder.prune()
    assert [t.session_id for t in recorder.find("default")] == ["new"]
    recorder.close()


def test_redaction_hides_secret_names_at_any_depth_and_keeps_the_rest() -> None:
    keys = frozenset({"password", "token", "api_key", "secret"})
    params = {
        "command": "login",
        "password": "p",
        "env": {"GITHUB_TOKEN": "t", "api-key": "k", "PATH": "/bin"},
        "items": [{"client_secret": "s", "max_tokens": 5}],
    }
    assert redact(params, keys) == {
        "command": "login",
        "password": REDACTED,
        "env": {"GITHUB_TOKEN": REDACTED, "api-key": REDACTED, "PATH": "/bin"},
        "items": [{"client_secret": REDACTED, "max_tokens": 5}],
    }
    assert params["password"] == "p", "the caller's params are not changed"


def test_an_image_is_stored_once_and_other_strings_stay(tmp_path: Path) -> None:
    files = ImageFiles(tmp_path)
    shot = base64.b64encode(PNG).decode()
    found: dict[str, int] = {}
    data = {"image": shot, "again": [shot], "text": "iVBORw0KGgo short", "n": 3}
    out = files.extract(data, found)
    assert out["image"] == out["again"][0]
    assert out["image"][IMAGE_KEY] in found
    assert out["text"] == "iVBORw0KGgo short"
    assert out["n"] == 3
    assert data["image"] == shot, "the result itself is not changed"
    assert len(list(tmp_path.rglob("*.png"))) == 1
    assert files.inline(out)["image"] == shot
