"""Screen recording on a real desktop: ffmpeg records as the session user, the server
copies the video out and keeps it past the session, and the session cannot reach it."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator

import pytest

from sandbox import Sandbox

from .support import ServerProcess, ok, wait_until, worker


@pytest.fixture
def sb(server: ServerProcess) -> Iterator[Sandbox]:
    with worker(server, "rec") as sandbox:
        yield sandbox


def track_size(video: bytes) -> tuple[int, int]:
    """Width and height in the MP4's track header (``tkhd``, 16.16 fixed point)."""
    at = video.index(b"tkhd")
    (box_size,) = struct.unpack(">I", video[at - 4 : at])
    end = at - 4 + box_size
    width, height = struct.unpack(">II", video[end - 8 : end])
    return width >> 16, height >> 16


def probe(sb: Sandbox, video: bytes) -> list[str]:
    """Width, height and decoded frames of `video`, by the desktop's own ffprobe."""
    ok(sb, "vm:upload_file", path="probe.mp4", content_base64=base64.b64encode(video).decode())
    out = ok(
        sb,
        "vm:run_command",
        command="ffprobe -v error -count_frames -select_streams v:0 "
        "-show_entries stream=width,height,nb_read_frames -of csv=p=0 probe.mp4",
    )
    assert out["exit_code"] == 0, out
    return str(out["stdout"]).strip().split(",")


def test_a_recorded_session_leaves_its_video_after_it_is_destroyed(sb: Sandbox) -> None:
    sb.create_session_sync("vm", {"screen_size": [640, 480], "recording": True})
    ffmpeg = ok(sb, "vm:run_command", command="ps -o user=,args= -C ffmpeg")
    assert ffmpeg["stdout"].startswith("sandbox "), ffmpeg  # the session user, not the agent
    assert "-framerate 5 " in ffmpeg["stdout"]  # the server's default rate
    ok(sb, "vm:launch", command="xterm", wait_for_window=True)
    time.sleep(2.5)
    session_id = sb.list_sessions_sync()[0]["session_id"]
    sb.destroy_session_sync("vm")

    listed = sb.client.list_recordings_sync(worker_id=sb.worker_id)["data"]
    assert listed["count"] == 1
    video_info = listed["recordings"][0]
    assert video_info["session_id"] == session_id
    assert video_info["complete"] is True
    got = sb.client.get_recording_sync(session_id)
    assert got["code"] == 0, got
    video = got["data"]["content"]
    assert got["data"]["content_type"] == "video/mp4"
    assert len(video) == video_info["size"] > 1000
    assert video[4:8] == b"ftyp"
    assert b"moof" in video  # fragmented: playable however it ended
    assert track_size(video) == (640, 480)


def test_start_and_stop_keep_a_video_of_the_screen(sb: Sandbox) -> None:
    sb.create_session_sync("vm", {"screen_size": [800, 600]})
    started = ok(sb, "vm:start_recording", fps=10)
    assert started == {"recording": True, "fps": 10.0}
    ok(sb, "vm:launch", command="xterm", wait_for_window=True)
    time.sleep(2)
    stopped = ok(sb, "vm:stop_recording")
    assert stopped["recording"] is False
    assert stopped["complete"] is True
    assert stopped["kept_bytes"] == stopped["size"] > 0
    assert 2 <= stopped["duration_s"] < 30
    video = sb.client.get_recording_sync(stopped["recording_id"])["data"]["content"]
    assert len(video) == stopped["size"]
    width, height, frames = probe(sb, video)
    assert (width, height) == ("800", "600")
    assert int(frames) >= 15  # 10 frames a second for over 2 s
    # Nothing is left in the session's disk quota.
    assert ok(sb, "vm:run_command", command="ls -d /home/.recording-* | wc -l")["stdout"] == "0\n"


def test_the_session_cannot_reach_the_video_and_killing_ffmpeg_keeps_what_it_wrote(
    sb: Sandbox,
) -> None:
    sb.create_session_sync("vm", {"screen_size": [640, 480]})
    ok(sb, "vm:start_recording")
    # The agent's directory: closed to the session user, who can plant nothing in it.
    listing = ok(
        sb,
        "vm:run_command",
        command="ls /home/.recording-*/; echo x > /home/.recording-*/video.mp4",
    )
    assert listing["exit_code"] != 0
    assert "Permission denied" in listing["stderr"]
    time.sleep(3)  # a key frame, hence a fragment, every 2 s
    ok(sb, "vm:run_command", command="pkill -KILL -x ffmpeg")
    # Dead (a zombie until the agent collects it).
    wait_until(sb, 'test -z "$(ps -o stat= -C ffmpeg | grep -v Z)"')
    stopped = ok(sb, "vm:stop_recording")
    assert stopped["ended_early"] is True
    assert stopped["size"] > 0
    video = sb.client.get_recording_sync(stopped["recording_id"])["data"]["content"]
    width, height, frames = probe(sb, video)
    assert (width, height) == ("640", "480")
    assert int(frames) >= 5
