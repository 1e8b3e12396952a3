"""The ``desktop`` toolset's tools: the ``vm`` resource type's.

Coordinates are bounded here by the largest screen a session may have; the
agent also refuses a point outside the session's own screen, naming the
parameter, since only it knows the screen's size.
"""

from __future__ import annotations

from .common import timeout
from .desktop_a11y import TOOLS as A11Y_TOOLS
from .desktop_actions import TOOLS as ACTION_SPACE_TOOLS
from .desktop_recording import TOOLS as RECORDING_TOOLS
from .desktop_tasks import TOOLS as TASK_TOOLS
from .spec import Param, Rule, ToolDeclaration

MAX_SCREEN_SIZE = (7680, 4320)
"""Largest screen [width, height] a session may ask for."""
MAX_WAIT_S = 30
MAX_TYPE_INTERVAL_S = 1.0
MAX_TYPING_S = 60.0
"""Longest a `vm:type` with an `interval` may take (characters x interval)."""
MAX_SCROLL_CLICKS = 200
MAX_CLICKS = 3
MAX_HOTKEY_KEYS = 16
MAX_FILE_BYTES = 16 << 20
"""Largest file `vm:upload_file` writes and `vm:download_file` reads (16 MiB)."""
MAX_FILE_BASE64 = 4 * -(-MAX_FILE_BYTES // 3)
"""Length of `MAX_FILE_BYTES` in base64."""
IMAGE_FORMATS = ("png", "jpeg")
DEFAULT_JPEG_QUALITY = 75
BUTTONS = ("left", "right", "middle")

_X = "Pixels from the screen's left edge."
_Y = "Pixels from the screen's top edge."
_KEY = (
    "A key: an X keysym name (Return, Page_Down, F5, Control_L), a pyautogui "
    "name (enter, pgdn, f5, ctrl, alt, shift, win) or one character."
)
_PATH = "Absolute, or relative to the session user's home."
_TIMEOUT = "Seconds before it is killed and the call answers 2002."


def _x(name: str, *, required: bool = True) -> Param:
    return Param(
        name, "integer", _X, required=required, minimum=0, exclusive_maximum=MAX_SCREEN_SIZE[0]
    )


def _y(name: str, *, required: bool = True) -> Param:
    return Param(
        name, "integer", _Y, required=required, minimum=0, exclusive_maximum=MAX_SCREEN_SIZE[1]
    )


_POINT = (_x("x"), _y("y"))
_BUTTON = Param("button", "string", "Mouse button.", default="left", enum=BUTTONS)
_HELD_KEY = Param("key", "string", _KEY, required=True, min_length=1)


def _vm(
    name: str,
    description: str,
    *params: Param,
    rules: tuple[Rule, ...] = (),
    replay_fields: tuple[str, ...] = (),
    observes: bool = False,
) -> ToolDeclaration:
    return ToolDeclaration(
        "vm", name, description, params, rules, replay_fields=replay_fields, observes=observes
    )


TOOLS: tuple[ToolDeclaration, ...] = (
    _vm(
        "screenshot",
        "The whole screen: `image` (base64), `size` [width, height] of the image, "
        "`format`; when `max_width` or `max_height` is given, also `screen_size`, the "
        "screen's own size (multiply image coordinates by screen_size / size).",
        Param("format", "string", "Image format.", default="png", enum=IMAGE_FORMATS),
        Param(
            "quality",
            "integer",
            f"JPEG quality (jpeg only; {DEFAULT_JPEG_QUALITY} unless given).",
            minimum=1,
            maximum=95,
        ),
        Param(
            "max_width",
            "integer",
            "Downscale (keeping the aspect ratio) to at most this many pixels wide.",
            minimum=1,
            maximum=MAX_SCREEN_SIZE[0],
        ),
        Param(
            "max_height",
            "integer",
            "Downscale (keeping the aspect ratio) to at most this many pixels high.",
            minimum=1,
            maximum=MAX_SCREEN_SIZE[1],
        ),
        Param("cursor", "boolean", "Draw the mouse pointer into the image.", default=False),
        observes=True,
    ),
    _vm(
        "click",
        "Move to (x, y) and click `button` (`clicks` times: 2 is a double, 3 a triple click).",
        *_POINT,
        _BUTTON,
        Param(
            "clicks",
            "integer",
            "How many clicks in a row.",
            default=1,
            minimum=1,
            maximum=MAX_CLICKS,
        ),
    ),
    _vm("double_click", "Move to (x, y) and double-click the left button.", *_POINT),
    _vm(
        "right_click",
        "Click the right button at (x, y), or where the pointer is when both are left out.",
        _x("x", required=False),
        _y("y", required=False),
        rules=(
            Rule(
                "together",
                ("x", "y"),
                "give both x and y, or neither to click where the pointer is",
            ),
        ),
    ),
    _vm("move", "Move the pointer to (x, y).", *_POINT),
    _vm(
        "drag",
        "Press the left button at (start_x, start_y), move to (end_x, end_y), release.",
        _x("start_x"),
        _y("start_y"),
        _x("end_x"),
        _y("end_y"),
    ),
    _vm(
        "scroll",
        "Move to (x, y) and turn the wheel `clicks` notches: positive up, negative down "
        "(and `horizontal_clicks`: positive right, negative left).",
        *_POINT,
        Param(
            "clicks",
            "integer",
            "Wheel clicks: positive scrolls up, negative down.",
            required=True,
            minimum=-MAX_SCROLL_CLICKS,
            maximum=MAX_SCROLL_CLICKS,
        ),
        Param(
            "horizontal_clicks",
            "integer",
            "Sideways wheel clicks, after the vertical ones: positive scrolls right, "
            "negative left.",
            default=0,
            minimum=-MAX_SCROLL_CLICKS,
            maximum=MAX_SCROLL_CLICKS,
        ),
    ),
    _vm(
        "type",
        "Type `text` into the focused window.",
        Param(
            "text",
            "string",
            "Text to type, any Unicode; newlines press Return. Never truncated.",
            required=True,
            min_length=1,
        ),
        Param(
            "interval",
            "number",
            f"Seconds between keystrokes (none by default); the whole text may take "
            f"at most {MAX_TYPING_S:g} s.",
            minimum=0,
            maximum=MAX_TYPE_INTERVAL_S,
        ),
    ),
    _vm(
        "key",
        "Press and release one key (enter, Return, f5) or an xdotool chord (ctrl+s).",
        Param(
            "key",
            "string",
            f"{_KEY} xdotool chords like ctrl+shift+t work too.",
            required=True,
            min_length=1,
        ),
    ),
    _vm(
        "hotkey",
        'Press `keys` in order and release them in reverse, e.g. ["ctrl", "shift", "t"].',
        Param(
            "keys",
            "array",
            'Keys pressed in order and released in reverse, e.g. ["ctrl", "c"].',
            required=True,
            min_length=1,
            max_length=MAX_HOTKEY_KEYS,
            items=Param("key", "string"),
        ),
    ),
    _vm("key_down", "Press `key` and keep it down until key_up.", _HELD_KEY),
    _vm("key_up", "Release `key`.", _HELD_KEY),
    _vm("mouse_down", "Press `button` where the pointer is; keep it down.", _BUTTON),
    _vm("mouse_up", "Release `button` where the pointer is.", _BUTTON),
    _vm("cursor_position", "The pointer's position: `x`, `y`.", replay_fields=("x", "y")),
    _vm(
        "wait",
        f"Sleep `seconds` (1 unless given, at most {MAX_WAIT_S}) and return.",
        Param(
            "seconds",
            "number",
            f"Seconds to sleep, at most {MAX_WAIT_S}.",
            default=1.0,
            minimum=0,
            maximum=MAX_WAIT_S,
        ),
    ),
    _vm(
        "run_command",
        "Run a bash command in the desktop (DISPLAY is set); returns stdout, stderr, exit_code.",
        Param("command", "string", "Shell command line, run by bash.", required=True, min_length=1),
        timeout(_TIMEOUT),
        replay_fields=("stdout", "stderr", "exit_code"),
    ),
    _vm(
        "launch",
        "Start a program in the background and return at once with its `pid` and `log` "
        "file (its output).",
        Param(
            "command",
            "string",
            "Shell command line started in the background (xterm, ...).",
            required=True,
            min_length=1,
        ),
        Param(
            "wait_for_window",
            "boolean",
            "Return only once the program's window is open and has the focus (at most "
            "10 s); its X id is in `window`, and `focused` says whether it got the focus.",
            default=False,
        ),
    ),
    _vm(
        "pyautogui",
        "Run pyautogui code (as OSWorld-style agents write it) with the real pyautogui; "
        "only pyautogui calls and time.sleep are accepted. Returns stdout, stderr, "
        "exit_code and the `values` returned by calls such as pyautogui.position().",
        Param(
            "command",
            "string",
            "Python made of `import pyautogui`, `import time`, `time.sleep(...)` and "
            "`pyautogui.<function>(...)` calls with literal arguments (a list of such "
            "programs is taken as `commands`).",
            list_into="commands",
        ),
        Param(
            "commands",
            "array",
            "Several such programs, run in order.",
            min_length=1,
            items=Param("command", "string"),
        ),
        timeout(_TIMEOUT),
        rules=(
            Rule(
                "exactly_one",
                ("command", "commands"),
                "give either command (a string) or commands (a list of strings)",
            ),
        ),
    ),
    _vm(
        "upload_file",
        f"Write a file into the desktop as the session user (parent directories are "
        f"created; at most {MAX_FILE_BYTES >> 20} MiB); returns its absolute `path` and `size`.",
        Param("path", "string", _PATH, required=True, min_length=1),
        Param(
            "content_base64",
            "string",
            "The file's bytes, base64.",
            required=True,
            max_length=MAX_FILE_BASE64,
        ),
        replay_fields=("path", "size"),
    ),
    _vm(
        "download_file",
        f"Read a file of the desktop as the session user (at most {MAX_FILE_BYTES >> 20} "
        "MiB): `path`, `content_base64`, `size`.",
        Param("path", "string", _PATH, required=True, min_length=1),
        # Not content_base64: the recording keeps an image's bytes as a reference.
        replay_fields=("path", "size"),
    ),
    _vm("done", "Declare the task done."),
    _vm(
        "fail",
        "Declare the task failed, with an optional `reason`.",
        Param("reason", "string", "Why the task failed."),
    ),
    *TASK_TOOLS,
    *A11Y_TOOLS,
    *ACTION_SPACE_TOOLS,
    *RECORDING_TOOLS,
)
"""Every ``vm`` tool, in the order ``GET /tools`` lists them."""
