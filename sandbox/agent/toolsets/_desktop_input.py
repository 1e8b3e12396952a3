"""The ``desktop`` toolset's screen, mouse and keyboard tools, and the X connection.

Input goes through XTEST on the agent's one X connection and screenshots through
MIT-SHM, both in this process, so an action costs a few X requests rather than a
new process. Parameters arrive checked against their declarations
(`sandbox/agent/tools/desktop.py`); what is checked here needs this desktop: a
point on its screen, a key its keyboard can type.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from ..desktop.keyboard import Keyboard, KeyboardError
from ..desktop.keys import Key, UnknownKey, split_chord
from ..desktop.observation import ShotOptions, encode_frame
from ..desktop.session import Desktop, DesktopError
from ..desktop.xlib import XDisplay, XError
from ..errors import InvalidParams, ToolFailed
from ..params import Params
from ..tools.desktop import DEFAULT_JPEG_QUALITY, MAX_TYPING_S

BUTTONS = {"left": 1, "middle": 2, "right": 3}
_WHEEL_UP, _WHEEL_DOWN, _WHEEL_LEFT, _WHEEL_RIGHT = 4, 5, 6, 7
_DRAG_STEPS = 10
_DRAG_STEP_S = 0.01
_LOST = (
    "the agent's connection to the X display was closed (by a program of the session?); "
    "the next call reconnects"
)


class Screen:
    """The agent's connection to a running desktop, and the keyboard over it.

    A program of the session may kill the connection (XKillClient); the next
    call then makes a new one (`ensure_connected`).

    Args:
        desktop: The started desktop; closed with the screen.
    """

    def __init__(self, desktop: Desktop) -> None:
        self._desktop = desktop
        self.display: XDisplay = desktop.display
        self.keyboard = Keyboard(self.display)
        self._reconnect_lock = threading.Lock()

    def ensure_connected(self) -> None:
        """Reconnect if a program of the session killed the agent's X connection."""
        if not self.display.lost:
            return
        with self._reconnect_lock:
            if not self.display.lost:
                return  # another call reconnected meanwhile
            try:
                self.display = self._desktop.reconnect()
            except DesktopError as exc:
                raise ToolFailed(str(exc)) from None
            self.keyboard = Keyboard(self.display)

    def wait_until_managed(self) -> None:
        """Return once the window manager has taken over the screen."""
        try:
            self._desktop.wait_until_managed()
        except DesktopError as exc:
            raise ToolFailed(str(exc)) from None

    def client_windows(self) -> list[int]:
        """The top-level windows the window manager manages (EWMH ``_NET_CLIENT_LIST``)."""
        return self.display.window_property(self.display.root, "_NET_CLIENT_LIST")

    def active_window(self) -> list[int]:
        """The window manager's active window (``_NET_ACTIVE_WINDOW``), if any."""
        return self.display.window_property(self.display.root, "_NET_ACTIVE_WINDOW")

    @contextlib.contextmanager
    def x_errors(self) -> Iterator[None]:
        """X errors, and a connection lost meanwhile, as `ToolFailed`."""
        try:
            yield
        except XError as exc:
            if self.display.lost:
                raise ToolFailed(_LOST) from None
            raise ToolFailed(str(exc)) from None
        if self.display.lost:
            raise ToolFailed(_LOST)

    @contextlib.contextmanager
    def key_errors(self, field: str) -> Iterator[None]:
        """An unknown key as `InvalidParams` naming `field`; X errors as `ToolFailed`."""
        try:
            with self.x_errors():
                yield
        except UnknownKey as exc:
            raise InvalidParams(f"{field}: {exc}", field=field) from None
        except KeyboardError as exc:
            raise ToolFailed(str(exc)) from None

    def close(self) -> None:
        """Release held keys, then stop the desktop."""
        with contextlib.suppress(Exception):
            self.keyboard.release_all()
        self._desktop.close()


class InputTools:
    """``vm.screenshot``, ``vm.cursor_position`` and the mouse and keyboard tools.

    Args:
        screen: The connection they act on.
    """

    def __init__(self, screen: Screen) -> None:
        self._screen = screen

    def handlers(self) -> dict[str, Any]:
        """Each tool's handler, by the tool's own name."""
        return {
            "screenshot": self.screenshot,
            "cursor_position": self.cursor_position,
            "click": self.click,
            "double_click": self.double_click,
            "right_click": self.right_click,
            "move": self.move,
            "drag": self.drag,
            "scroll": self.scroll,
            "mouse_down": self.mouse_down,
            "mouse_up": self.mouse_up,
            "type": self.type_text,
            "key": self.key,
            "hotkey": self.hotkey,
            "key_down": self.key_down,
            "key_up": self.key_up,
        }

    # -- screen -------------------------------------------------------------------

    def screenshot(self, params: Params) -> dict[str, Any]:
        """``vm.screenshot``: the whole screen in base64, as `format` (png or jpeg),
        `quality`, `max_width`/`max_height` and `cursor` ask."""
        raw = params.raw()
        display = self._screen.display
        with self._screen.x_errors():
            frame = display.capture()
            cursor = display.pointer() if raw.get("cursor") else None
        options = ShotOptions(
            format=raw.get("format") or "png",
            quality=raw.get("quality") or DEFAULT_JPEG_QUALITY,
            max_width=raw.get("max_width"),
            max_height=raw.get("max_height"),
            cursor=cursor,
        )
        # Encoding runs outside the display's lock: other calls may go on meanwhile.
        image, size = encode_frame(frame, options)
        data: dict[str, Any] = {
            "image": base64.b64encode(image).decode("ascii"),
            "size": list(size),
            "format": options.format,
        }
        if options.max_width is not None or options.max_height is not None:
            data["screen_size"] = [frame.width, frame.height]
        return data

    def cursor_position(self, params: Params) -> dict[str, Any]:
        """``vm.cursor_position``: the pointer's screen coordinates."""
        x, y = self._screen.display.pointer()
        return {"x": x, "y": y}

    # -- mouse ----------------------------------------------------------------------

    def click(self, params: Params) -> dict[str, Any]:
        """``vm.click``: `x`, `y`, `button` (left, right or middle), `clicks` (1 to 3)."""
        x, y = self._point(params, "x", "y")
        button = params.string("button")
        clicks: int = params.raw().get("clicks") or 1
        self._click_at(x, y, BUTTONS[button], clicks)
        data: dict[str, Any] = {"x": x, "y": y, "button": button}
        if clicks != 1:
            data["clicks"] = clicks
        return data

    def double_click(self, params: Params) -> dict[str, Any]:
        """``vm.double_click``: `x`, `y`."""
        x, y = self._point(params, "x", "y")
        self._click_at(x, y, BUTTONS["left"], 2)
        return {"x": x, "y": y, "button": "left"}

    def right_click(self, params: Params) -> dict[str, Any]:
        """``vm.right_click``: `x` and `y`, or neither to click where the pointer is."""
        if "x" in params.raw():
            x, y = self._point(params, "x", "y")
        else:
            x, y = self._screen.display.pointer()
        self._click_at(x, y, BUTTONS["right"], 1)
        return {"x": x, "y": y, "button": "right"}

    def move(self, params: Params) -> dict[str, Any]:
        """``vm.move``: `x`, `y`."""
        x, y = self._point(params, "x", "y")
        display = self._screen.display
        with display.lock, self._screen.x_errors():
            display.fake_motion(x, y)
            display.sync()
        return {"x": x, "y": y}

    def drag(self, params: Params) -> dict[str, Any]:
        """``vm.drag``: `start_x`, `start_y` to `end_x`, `end_y` with the left button."""
        start = self._point(params, "start_x", "start_y")
        end = self._point(params, "end_x", "end_y")
        display = self._screen.display
        with display.lock, self._screen.x_errors():
            display.fake_motion(*start)
            display.fake_button(BUTTONS["left"], True)
            display.sync()
            # Intermediate motion, spread over a moment: toolkits start a drag
            # only after seeing the pointer move with the button down.
            for step in range(1, _DRAG_STEPS + 1):
                time.sleep(_DRAG_STEP_S)
                display.fake_motion(
                    round(start[0] + (end[0] - start[0]) * step / _DRAG_STEPS),
                    round(start[1] + (end[1] - start[1]) * step / _DRAG_STEPS),
                )
                display.flush()
            display.fake_button(BUTTONS["left"], False)
            display.sync()
        return {"start": list(start), "end": list(end)}

    def scroll(self, params: Params) -> dict[str, Any]:
        """``vm.scroll``: `x`, `y`, `clicks` (positive up, negative down), then
        `horizontal_clicks` (positive right, negative left)."""
        x, y = self._point(params, "x", "y")
        clicks: int = params.raw()["clicks"]
        sideways: int = params.raw().get("horizontal_clicks") or 0
        display = self._screen.display
        with display.lock, self._screen.x_errors():
            display.fake_motion(x, y)
            for button, count in (
                (_WHEEL_UP if clicks > 0 else _WHEEL_DOWN, abs(clicks)),
                (_WHEEL_RIGHT if sideways > 0 else _WHEEL_LEFT, abs(sideways)),
            ):
                for _ in range(count):
                    display.fake_button(button, True)
                    display.fake_button(button, False)
            display.sync()
        data: dict[str, Any] = {"x": x, "y": y, "clicks": clicks}
        if sideways:
            data["horizontal_clicks"] = sideways
        return data

    def mouse_down(self, params: Params) -> dict[str, Any]:
        """``vm.mouse_down``: `button`, pressed where the pointer is."""
        return self._press(params.string("button"), True)

    def mouse_up(self, params: Params) -> dict[str, Any]:
        """``vm.mouse_up``: `button`, released where the pointer is."""
        return self._press(params.string("button"), False)

    def _press(self, button: str, down: bool) -> dict[str, Any]:
        display = self._screen.display
        with display.lock, self._screen.x_errors():
            display.fake_button(BUTTONS[button], down)
            display.sync()
        return {"button": button}

    def _click_at(self, x: int, y: int, button: int, count: int) -> None:
        display = self._screen.display
        with display.lock, self._screen.x_errors():
            display.fake_motion(x, y)
            for _ in range(count):
                display.fake_button(button, True)
                display.fake_button(button, False)
            display.sync()

    def _point(self, params: Params, x_name: str, y_name: str) -> tuple[int, int]:
        """A point the declaration accepted, refused if off this session's screen."""
        display = self._screen.display
        raw = params.raw()
        return _on_screen(raw[x_name], x_name, display.width), _on_screen(
            raw[y_name], y_name, display.height
        )

    # -- keyboard ---------------------------------------------------------------------

    def type_text(self, params: Params) -> dict[str, Any]:
        """``vm.type``: `text`, typed as is (no length limit); a CR LF is one Return;
        `interval` seconds between keystrokes."""
        text = params.string("text").replace("\r\n", "\n")
        interval = float(params.raw().get("interval") or 0.0)
        if interval * len(text) > MAX_TYPING_S:
            raise InvalidParams(
                f"interval: {len(text)} characters {interval:g} s apart would take over "
                f"{MAX_TYPING_S:g} s",
                field="interval",
            )
        with self._screen.key_errors("text"):
            self._screen.keyboard.type_text(text, interval)
        return {"typed": len(params.string("text"))}

    def key(self, params: Params) -> dict[str, Any]:
        """``vm.key``: `key`, one key name or an xdotool chord like ``ctrl+shift+t``."""
        keyboard = self._screen.keyboard
        with self._screen.key_errors("key"):
            keys = [keyboard.resolve(part) for part in split_chord(params.string("key"))]
            keyboard.press(keys)
        return {"keys": [key.name for key in keys]}

    def hotkey(self, params: Params) -> dict[str, Any]:
        """``vm.hotkey``: `keys`, a list pressed in order and released in reverse."""
        keyboard = self._screen.keyboard
        keys: list[Key] = []
        for index, name in enumerate(params.raw()["keys"]):
            with self._screen.key_errors(f"keys.{index}"):
                keys.append(keyboard.resolve(name))
        with self._screen.key_errors("keys"):
            keyboard.press(keys)
        return {"keys": [key.name for key in keys]}

    def key_down(self, params: Params) -> dict[str, Any]:
        """``vm.key_down``: `key`."""
        keyboard = self._screen.keyboard
        with self._screen.key_errors("key"):
            key = keyboard.resolve(params.string("key"))
            keyboard.key_down(key)
        return {"key": key.name}

    def key_up(self, params: Params) -> dict[str, Any]:
        """``vm.key_up``: `key`."""
        keyboard = self._screen.keyboard
        with self._screen.key_errors("key"):
            key = keyboard.resolve(params.string("key"))
            keyboard.key_up(key)
        return {"key": key.name}


def _on_screen(value: int, name: str, size: int) -> int:
    """`value` if it is a pixel of a screen `size` pixels wide (or high)."""
    if not 0 <= value < size:
        raise InvalidParams(
            f"{name}={value} is outside of the screen: it must be between 0 and {size - 1}",
            field=name,
        )
    return value
