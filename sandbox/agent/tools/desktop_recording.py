"""Screen recording of a ``vm`` session: ``vm:start_recording``, ``vm:stop_recording``
(declarations only).

Appended to the ``vm`` tools in `desktop` (`sandbox/agent/tools/desktop.py`);
the agent's handlers are in ``sandbox/agent/toolsets/_desktop_recording.py``.
The server fills in the internal parameters from its settings
(``screen_recording`` in `sandbox/config.py`, whose defaults are these) and
copies the video out when the recording stops or the session ends, reading it
with the internal ``vm:recording_read``.
"""

from __future__ import annotations

from .spec import Param, ToolDeclaration

DEFAULT_FPS = 5.0
"""Frames per second of a recording unless asked otherwise (setting ``screen_recording.fps``)."""
MAX_FPS = 30.0
DEFAULT_MAX_BYTES = 512 << 20
"""Largest video one recording may make (setting ``screen_recording.max_bytes``)."""
DEFAULT_MAX_SECONDS = 4 * 3600.0
"""Longest one recording may run (setting ``screen_recording.max_seconds``)."""
MAX_READ_BYTES = 8 << 20
"""Most bytes of video one ``vm:recording_read`` returns."""

TOOLS = (
    ToolDeclaration(
        "vm",
        "start_recording",
        "Start recording the screen to an MP4 video (H.264, the pointer drawn in); it runs "
        "until vm:stop_recording or the session's end, when the server keeps it: GET "
        "/recordings lists the videos. Starting while a recording runs changes nothing.",
        (
            Param(
                "fps",
                "number",
                f"Frames per second (the server's setting screen_recording.fps, {DEFAULT_FPS:g} "
                "unless set, when not given).",
                minimum=1,
                maximum=MAX_FPS,
            ),
            Param(
                "max_bytes",
                "integer",
                "Largest video: the recording stops there.",
                minimum=1,
                internal=True,
            ),
            Param(
                "max_seconds",
                "number",
                "Longest recording: it stops then.",
                exclusive_minimum=0,
                internal=True,
            ),
        ),
        observes=True,
    ),
    ToolDeclaration(
        "vm",
        "stop_recording",
        "Stop the recording and keep its video on the server: `recording_id` (GET "
        "/recordings/{recording_id} returns the MP4), `size`, `kept_bytes` and `complete` "
        "(all of it copied), `duration_s`, `truncated` (the size or time cap ended it), "
        "`ended_early` (ffmpeg had ended before, with its `log`).",
        observes=True,
    ),
    ToolDeclaration(
        "vm",
        "recording_read",
        "Bytes of the stopped recording's video, for the server to copy out: `data` "
        "(base64), `size` of the whole video; `discard` drops the video after this read.",
        (
            Param("offset", "integer", "First byte.", default=0, minimum=0),
            Param(
                "length",
                "integer",
                "Most bytes.",
                default=MAX_READ_BYTES,
                minimum=0,
                maximum=MAX_READ_BYTES,
            ),
            Param("discard", "boolean", "Drop the video after this read.", default=False),
        ),
        internal=True,
    ),
)
"""The recording tools, appended to the ``vm`` tools."""
