"""vm.start_recording / stop_recording / recording_read with a stand-in for ffmpeg.

The stand-in writes to its stdout as ffmpeg would (until SIGINT, then a last
fragment); the real ffmpeg records a real desktop in
tests/integration/test_desktop_recording.py.
"""

from __future__ import annotations

import base64
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.agent import InvalidParams, Params, ToolFailed
from sandbox.agent.toolsets._desktop_input import Screen
from sandbox.agent.toolsets._desktop_recording import RecordingTools

from .desktop_fakes import FakeDesktop

FAKE_FFMPEG = textwrap.dedent(
    """
    import os, signal, sys, time
    mode = os.environ.get("FAKE_MODE", "normal")
    if mode == "fail":
        sys.stderr.write("cannot open display\\n")
        sys.exit(1)
    stopping = False
    def stop(*_):
        global stopping
        stopping = True
    signal.signal(signal.SIGINT, stop)
    out = sys.stdout.buffer
    out.write(b"HEAD"); out.flush()
    chunk = b"x" * (1 << 16 if mode == "flood" else 10)
    while not stopping:
        out.write(chunk); out.flush()
        if mode != "flood":
            time.sleep(0.01)
    out.write(b"TAIL"); out.flush()
    sys.exit(255)
    """
)


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingTools]:
    script = tmp_path / "fake_ffmpeg.py"
    script.write_text(FAKE_FFMPEG)
    tools = RecordingTools(
        Screen(FakeDesktop()),  # type: ignore[arg-type]
        directory=str(tmp_path),
        env={"DISPLAY": ":0", "PATH": "/usr/bin:/bin"},
        user=None,
        program=[sys.executable, str(script)],
    )
    yield tools
    tools.close()


def call(tools: RecordingTools, name: str, **params: Any) -> dict[str, Any]:
    return dict(tools.handlers()[name](Params(params)))


def read_all(tools: RecordingTools) -> bytes:
    data, offset = b"", 0
    while True:
        chunk = call(tools, "recording_read", offset=offset, length=7)
        data += base64.b64decode(chunk["data"])
        offset += 7
        if chunk["eof"]:
            return data


def test_a_recording_is_started_stopped_and_read_through_the_agents_descriptor(
    recorder: RecordingTools, tmp_path: Path
) -> None:
    assert call(recorder, "start_recording", fps=5) == {"recording": True, "fps": 5.0}
    assert call(recorder, "start_recording")["already_recording"] is True
    (directory,) = tmp_path.glob(".recording-*")
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    stopped = call(recorder, "stop_recording")
    assert stopped["recording"] is False
    assert stopped["exit_code"] == 255
    assert stopped["truncated"] is False
    assert "ended_early" not in stopped
    video = read_all(recorder)
    assert video.startswith(b"HEAD")
    assert video.endswith(b"TAIL")  # it finished on SIGINT
    assert len(video) == stopped["size"]
    # Stopping again answers the same; the video stays until discarded.
    assert call(recorder, "stop_recording")["size"] == stopped["size"]
    assert call(recorder, "recording_read", length=0, discard=True)["size"] == stopped["size"]
    assert list(tmp_path.glob(".recording-*")) == []
    with pytest.raises(InvalidParams):
        call(recorder, "stop_recording")
    with pytest.raises(ToolFailed):
        call(recorder, "recording_read")


def test_a_recorder_that_writes_past_its_cap_is_stopped_by_the_file_size_limit(
    recorder: RecordingTools, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stand-in ignores -fs, as a hijacked ffmpeg would: prlimit's hard limit holds.
    monkeypatch.setitem(recorder._env, "FAKE_MODE", "flood")
    call(recorder, "start_recording", max_bytes=1 << 20)
    recorder._recording.process.wait(20)  # type: ignore[union-attr]
    stopped = call(recorder, "stop_recording")
    assert stopped["ended_early"] is True
    assert (1 << 20) <= stopped["size"] <= (2 << 20)
    assert stopped["truncated"] is True


def test_a_recorder_that_cannot_start_says_why(
    recorder: RecordingTools, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(recorder._env, "FAKE_MODE", "fail")
    with pytest.raises(ToolFailed, match="cannot open display"):
        call(recorder, "start_recording")
    assert list(tmp_path.glob(".recording-*")) == []


def test_closing_kills_the_recorder_and_drops_its_video(
    recorder: RecordingTools, tmp_path: Path
) -> None:
    call(recorder, "start_recording")
    process = recorder._recording.process  # type: ignore[union-attr]
    recorder.close()
    assert process.poll() is not None
    assert list(tmp_path.glob(".recording-*")) == []
