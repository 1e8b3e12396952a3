"""`vm` sessions: a Linux desktop (Xvfb, openbox, xterm) driven by its tools.

The parameter models check types and absolute ranges; the agent in the
container knows the session's screen size and refuses coordinates outside it,
naming the parameter (1002 ``params.x``).

Sessions have no network unless their config asks (``network: true``), as for
``bash``: most desktop tasks need none, and a browser task says so.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import ResourceType, SessionConfig, ToolParams, ToolSpec

DEFAULT_SCREEN_SIZE = (1280, 800)
MIN_SCREEN_SIZE = (320, 240)
MAX_SCREEN_SIZE = (7680, 4320)

_X = Field(ge=0, lt=MAX_SCREEN_SIZE[0], description="Pixels from the screen's left edge.")
_Y = Field(ge=0, lt=MAX_SCREEN_SIZE[1], description="Pixels from the screen's top edge.")
_BUTTON: Any = Field(default="left", description="Mouse button.")
_KEY = Field(
    min_length=1,
    description="A key: an X keysym name (Return, Page_Down, F5, Control_L), a pyautogui "
    "name (enter, pgdn, f5, ctrl, alt, shift, win) or one character.",
)
_TIMEOUT = Field(
    default=None,
    gt=0,
    le=86_400,
    description="Seconds before it is killed and the call answers 2002.",
)

Button = Literal["left", "right", "middle"]


class VmConfig(SessionConfig):
    """Session config of `vm`: the common limits plus the screen size."""

    screen_size: tuple[int, int] = Field(
        default=DEFAULT_SCREEN_SIZE,
        description="Screen [width, height] in pixels, from 320x240 to 7680x4320.",
    )

    @field_validator("screen_size", mode="before")
    @classmethod
    def _screen_size(cls, value: Any) -> tuple[int, int]:
        if isinstance(value, str) and "x" in value.lower():  # "1280x800" as Xvfb writes it
            value = value.lower().split("x", 1)
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError("screen_size must be [width, height], e.g. [1280, 800]")
        width, height = (_whole_number(item) for item in value)
        if width is None or height is None:
            raise ValueError("screen_size must be two whole numbers, e.g. [1280, 800]")
        if not (
            MIN_SCREEN_SIZE[0] <= width <= MAX_SCREEN_SIZE[0]
            and MIN_SCREEN_SIZE[1] <= height <= MAX_SCREEN_SIZE[1]
        ):
            raise ValueError(
                f"screen_size {width}x{height} is out of bounds: width "
                f"{MIN_SCREEN_SIZE[0]}..{MAX_SCREEN_SIZE[0]}, height "
                f"{MIN_SCREEN_SIZE[1]}..{MAX_SCREEN_SIZE[1]}"
            )
        return width, height


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


class _VmResourceType(ResourceType):
    def environment(self, config: SessionConfig) -> dict[str, str]:
        """The agent's screen size, which Xvfb is started with."""
        environment = super().environment(config)
        size = config.screen_size if isinstance(config, VmConfig) else DEFAULT_SCREEN_SIZE
        environment["SANDBOX_SCREEN_SIZE"] = f"{size[0]}x{size[1]}"
        return environment


class NoParams(ToolParams):
    pass


class PointParams(ToolParams):
    x: int = _X
    y: int = _Y


class ClickParams(PointParams):
    button: Button = _BUTTON


class RightClickParams(ToolParams):
    x: int | None = Field(default=None, ge=0, lt=MAX_SCREEN_SIZE[0], description=_X.description)
    y: int | None = Field(default=None, ge=0, lt=MAX_SCREEN_SIZE[1], description=_Y.description)

    @model_validator(mode="after")
    def _both_or_neither(self) -> RightClickParams:
        if (self.x is None) != (self.y is None):
            raise ValueError("give both x and y, or neither to click where the pointer is")
        return self


class DragParams(ToolParams):
    start_x: int = _X
    start_y: int = _Y
    end_x: int = _X
    end_y: int = _Y


class ScrollParams(PointParams):
    clicks: int = Field(
        ge=-200, le=200, description="Wheel clicks: positive scrolls up, negative down."
    )


class TypeParams(ToolParams):
    text: str = Field(
        min_length=1,
        description="Text to type, any Unicode; newlines press Return. Never truncated.",
    )


class KeyParams(ToolParams):
    key: str = _KEY


class ChordKeyParams(ToolParams):
    key: str = Field(
        min_length=1,
        description=f"{_KEY.description} xdotool chords like ctrl+shift+t work too.",
    )


class HotkeyParams(ToolParams):
    keys: list[str] = Field(
        min_length=1,
        max_length=16,
        description='Keys pressed in order and released in reverse, e.g. ["ctrl", "c"].',
    )


class MouseButtonParams(ToolParams):
    button: Button = _BUTTON


class WaitParams(ToolParams):
    seconds: float = Field(ge=0, le=30, description="Seconds to sleep, at most 30.")


class RunCommandParams(ToolParams):
    command: str = Field(min_length=1, description="Shell command line, run by bash.")
    timeout: float | None = _TIMEOUT


class LaunchParams(ToolParams):
    command: str = Field(
        min_length=1, description="Shell command line started in the background (xterm, ...)."
    )
    wait_for_window: bool = Field(
        default=False,
        description="Return only once the program's window is open and has the focus "
        "(at most 10 s); its X id is in `window`, and `focused` says whether it got the focus.",
    )


class PyautoguiParams(ToolParams):
    command: str | None = Field(
        default=None,
        description="Python made of `import pyautogui`, `import time`, `time.sleep(...)` and "
        "`pyautogui.<function>(...)` calls with literal arguments.",
    )
    commands: list[str] | None = Field(
        default=None, min_length=1, description="Several such programs, run in order."
    )
    timeout: float | None = _TIMEOUT

    @model_validator(mode="after")
    def _one_of(self) -> PyautoguiParams:
        if (self.command is None) == (self.commands is None):
            raise ValueError("give either command (a string) or commands (a list of strings)")
        return self


class FailParams(ToolParams):
    reason: str | None = Field(default=None, description="Why the task failed.")


def _tool(
    name: str, params: type[ToolParams], description: str, *, timeout: bool = False
) -> ToolSpec:
    return ToolSpec("vm", name, params, description, agent_tool=f"vm.{name}", timeout_param=timeout)


VM = _VmResourceType(
    name="vm",
    image="desktop",
    description="A Linux desktop (Xvfb, openbox, xterm): screenshots, mouse and keyboard.",
    toolsets=("desktop",),
    config_model=VmConfig,
    tools=(
        _tool(
            "screenshot",
            NoParams,
            "The whole screen: `image` (base64 PNG), `size` [width, height], `format` 'png'.",
        ),
        _tool("click", ClickParams, "Move to (x, y) and click `button`."),
        _tool("double_click", PointParams, "Move to (x, y) and double-click the left button."),
        _tool(
            "right_click",
            RightClickParams,
            "Click the right button at (x, y), or where the pointer is when both are left out.",
        ),
        _tool("move", PointParams, "Move the pointer to (x, y)."),
        _tool(
            "drag",
            DragParams,
            "Press the left button at (start_x, start_y), move to (end_x, end_y), release.",
        ),
        _tool(
            "scroll",
            ScrollParams,
            "Move to (x, y) and turn the wheel `clicks` notches: positive up, negative down.",
        ),
        _tool("type", TypeParams, "Type `text` into the focused window."),
        _tool(
            "key",
            ChordKeyParams,
            "Press and release one key (enter, Return, f5) or an xdotool chord (ctrl+s).",
        ),
        _tool(
            "hotkey",
            HotkeyParams,
            'Press `keys` in order and release them in reverse, e.g. ["ctrl", "shift", "t"].',
        ),
        _tool("key_down", KeyParams, "Press `key` and keep it down until key_up."),
        _tool("key_up", KeyParams, "Release `key`."),
        _tool(
            "mouse_down", MouseButtonParams, "Press `button` where the pointer is; keep it down."
        ),
        _tool("mouse_up", MouseButtonParams, "Release `button` where the pointer is."),
        _tool("cursor_position", NoParams, "The pointer's position: `x`, `y`."),
        _tool("wait", WaitParams, "Sleep `seconds` (at most 30) and return."),
        _tool(
            "run_command",
            RunCommandParams,
            "Run a bash command in the desktop (DISPLAY is set); returns stdout, stderr, "
            "exit_code.",
            timeout=True,
        ),
        _tool(
            "launch",
            LaunchParams,
            "Start a program in the background and return at once with its `pid` and `log` "
            "file (its output).",
        ),
        _tool(
            "pyautogui",
            PyautoguiParams,
            "Run pyautogui code (as OSWorld-style agents write it) with the real pyautogui; "
            "only pyautogui calls and time.sleep are accepted. Returns stdout, stderr, "
            "exit_code and the `values` returned by calls such as pyautogui.position().",
            timeout=True,
        ),
        _tool("done", NoParams, "Declare the task done."),
        _tool("fail", FailParams, "Declare the task failed, with an optional `reason`."),
    ),
)
