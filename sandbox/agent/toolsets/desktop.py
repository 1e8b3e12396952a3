"""The ``desktop`` toolset: a Linux desktop driven by screenshots, mouse and keyboard.

Creating the toolset connects to Xvfb (started, or adopted from the image's
entry point) and starts the window manager (`desktop.session`); the agent
answers ``/health`` only afterwards, when the screen can be captured. Tools that
need the window manager (input, programs) wait until it has taken over the
screen. Input goes through XTEST on that one connection and screenshots through
MIT-SHM, both in this process, so an action costs a few X requests rather than
a new process.

Tools (``vm.*``): screenshot, click, double_click, right_click, move, drag,
scroll, type, key, hotkey, key_down, key_up, mouse_down, mouse_up,
cursor_position, wait, run_command, launch, pyautogui, done, fail.

Coordinates are screen pixels from the top-left corner; one outside the screen
is an ``invalid_params`` error naming its parameter, and nothing is sent.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..code_runner import CodeRunner
from ..desktop import pyautogui_code
from ..desktop.early import XVFB_ENV
from ..desktop.keyboard import Keyboard, KeyboardError
from ..desktop.keys import Key, UnknownKey, split_chord
from ..desktop.png import bgrx_to_png
from ..desktop.session import Desktop, DesktopError, DesktopSettings
from ..desktop.xlib import XDisplay, XError
from ..errors import ConfigError, InvalidParams, ToolFailed, ToolTimeout
from ..identity import acting_as, popen_kwargs, prefer_for_oom
from ..params import Params
from ..processes import exit_status
from ..registry import AgentContext, Tool, Toolset

BUTTONS = {"left": 1, "middle": 2, "right": 3}
_WHEEL_UP, _WHEEL_DOWN = 4, 5
MAX_WAIT_S = 30.0
MAX_SCROLL_CLICKS = 200
DEFAULT_TIMEOUT_S = 120.0
# pyautogui sleeps this long after each of its calls (its default is 0.1 s).
PYAUTOGUI_PAUSE_S = 0.02
_DRAG_STEPS = 10
_DRAG_STEP_S = 0.01
_WINDOW_WAIT_S = 10.0
_WINDOW_POLL_S = 0.01
# Tools that work before the window manager has taken over the screen; the
# others (input, programs) wait for it, as a window needs it to get the focus.
_LOST = (
    "the agent's connection to the X display was closed (by a program of the session?); "
    "the next call reconnects"
)
_NO_WINDOW_MANAGER_NEEDED = frozenset({"screenshot", "cursor_position", "wait", "done", "fail"})


class DesktopToolset(Toolset):
    """The tools of a `vm` session over one running desktop.

    Args:
        context: The agent's home, state directory, output limit and environment.
        settings: The desktop to start (from the environment when None).
        desktop: An already started desktop to use instead (tests); closed with
            the toolset.
    """

    name = "desktop"

    def __init__(
        self,
        context: AgentContext,
        settings: DesktopSettings | None = None,
        *,
        desktop: Desktop | None = None,
    ) -> None:
        self._settings = settings or DesktopSettings.from_environ(context.child_env)
        self._home = context.home
        self._limit = context.output_limit
        self._env = {key: value for key, value in context.child_env.items() if key != XVFB_ENV}
        self._env["DISPLAY"] = self._settings.display
        self._user = context.user
        if desktop is None:
            desktop = Desktop(self._settings, self._env, user=context.user)
            desktop.start()
        self._desktop = desktop
        try:
            self._display: XDisplay = self._desktop.display
            self._keyboard = Keyboard(self._display)
        except BaseException:
            self._desktop.close()
            raise
        self._runner = CodeRunner(
            cwd=context.home,
            scratch_dir=context.state_dir,
            env=self._env,
            output_limit=context.output_limit,
            user=context.user,
        )
        self._launched: list[subprocess.Popen[bytes]] = []
        self._launch_count = itertools.count(1)
        self._launch_lock = threading.Lock()
        self._reconnect_lock = threading.Lock()
        # Launched programs' output, on disk rather than with the agent's state
        # in /dev/shm: a chatty program must not eat the session's memory.
        self._log_dir: str | None = None
        self.status: dict[str, Any] = {"status": "running"}

    @property
    def width(self) -> int:
        """Screen width in pixels."""
        return self._display.width

    @property
    def height(self) -> int:
        """Screen height in pixels."""
        return self._display.height

    def tools(self) -> Sequence[Tool]:
        """Every ``vm.*`` tool."""
        table: list[tuple[str, Callable[[Params], dict[str, Any]], str]] = [
            ("screenshot", self.screenshot, "The screen as a base64 PNG."),
            ("click", self.click, "Click a button at (x, y)."),
            ("double_click", self.double_click, "Double-click the left button at (x, y)."),
            ("right_click", self.right_click, "Click the right button, at (x, y) if given."),
            ("move", self.move, "Move the pointer to (x, y)."),
            ("drag", self.drag, "Drag with the left button from start to end."),
            ("scroll", self.scroll, "Scroll the wheel at (x, y); positive clicks scroll up."),
            ("type", self.type_text, "Type text, any Unicode character."),
            ("key", self.key, "Press and release a key or an xdotool chord (ctrl+c)."),
            ("hotkey", self.hotkey, "Press keys in order, release them in reverse."),
            ("key_down", self.key_down, "Press a key and keep it down."),
            ("key_up", self.key_up, "Release a key."),
            ("mouse_down", self.mouse_down, "Press a mouse button and keep it down."),
            ("mouse_up", self.mouse_up, "Release a mouse button."),
            ("cursor_position", self.cursor_position, "Where the pointer is."),
            ("wait", self.wait, "Sleep a while (at most 30 s)."),
            ("run_command", self.run_command, "Run a bash command; stdout, stderr, exit_code."),
            ("launch", self.launch, "Start a program in the background; returns at once."),
            ("pyautogui", self.pyautogui, "Run pyautogui calls with the real pyautogui."),
            ("done", self.done, "Mark the task done."),
            ("fail", self.fail, "Mark the task failed."),
        ]
        return tuple(
            Tool(
                f"vm.{name}",
                self._connected(handler)
                if name in _NO_WINDOW_MANAGER_NEEDED
                else self._managed(handler),
                text,
            )
            for name, handler, text in table
        )

    def _managed(
        self, handler: Callable[[Params], dict[str, Any]]
    ) -> Callable[[Params], dict[str, Any]]:
        """`handler`, run once the window manager has taken over the screen."""

        def run(params: Params) -> dict[str, Any]:
            self._ensure_connected()
            try:
                self._desktop.wait_until_managed()
            except DesktopError as exc:
                raise ToolFailed(str(exc)) from None
            return handler(params)

        return run

    def _connected(
        self, handler: Callable[[Params], dict[str, Any]]
    ) -> Callable[[Params], dict[str, Any]]:
        """`handler`, run on a live X connection."""

        def run(params: Params) -> dict[str, Any]:
            self._ensure_connected()
            return handler(params)

        return run

    def _ensure_connected(self) -> None:
        """Reconnect if a program of the session killed the agent's X connection."""
        if not self._display.lost:
            return
        with self._reconnect_lock:
            if not self._display.lost:
                return  # another call reconnected meanwhile
            try:
                self._display = self._desktop.reconnect()
            except DesktopError as exc:
                raise ToolFailed(str(exc)) from None
            self._keyboard = Keyboard(self._display)

    def close(self) -> None:
        """Release held keys, stop launched programs, the window manager and Xvfb."""
        with contextlib.suppress(Exception):
            self._keyboard.release_all()
        with self._launch_lock:
            launched, self._launched = self._launched, []
        for process in launched:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log_dir, self._log_dir = self._log_dir, None
        if log_dir is not None:
            shutil.rmtree(log_dir, ignore_errors=True)
        self._desktop.close()

    # -- screen -------------------------------------------------------------------

    def screenshot(self, params: Params) -> dict[str, Any]:
        """``vm.screenshot``: the whole screen, PNG in base64."""
        with self._x_errors():
            frame = self._display.capture()
        # Encoding runs outside the display's lock: other calls may go on meanwhile.
        png = bgrx_to_png(frame.pixels, frame.width, frame.height, stride=frame.stride)
        return {
            "image": base64.b64encode(png).decode("ascii"),
            "size": [frame.width, frame.height],
            "format": "png",
        }

    def cursor_position(self, params: Params) -> dict[str, Any]:
        """``vm.cursor_position``: the pointer's screen coordinates."""
        x, y = self._display.pointer()
        return {"x": x, "y": y}

    # -- mouse ----------------------------------------------------------------------

    def click(self, params: Params) -> dict[str, Any]:
        """``vm.click``: `x`, `y`, `button` (left, right or middle)."""
        x, y = self._point(params, "x", "y")
        button = _button(params)
        self._click_at(x, y, BUTTONS[button], 1)
        return {"x": x, "y": y, "button": button}

    def double_click(self, params: Params) -> dict[str, Any]:
        """``vm.double_click``: `x`, `y`."""
        x, y = self._point(params, "x", "y")
        self._click_at(x, y, BUTTONS["left"], 2)
        return {"x": x, "y": y, "button": "left"}

    def right_click(self, params: Params) -> dict[str, Any]:
        """``vm.right_click``: `x` and `y`, or neither to click where the pointer is."""
        if params.raw().get("x") is None and params.raw().get("y") is None:
            x, y = self._display.pointer()
        else:
            x, y = self._point(params, "x", "y")
        self._click_at(x, y, BUTTONS["right"], 1)
        return {"x": x, "y": y, "button": "right"}

    def move(self, params: Params) -> dict[str, Any]:
        """``vm.move``: `x`, `y`."""
        x, y = self._point(params, "x", "y")
        with self._display.lock, self._x_errors():
            self._display.fake_motion(x, y)
            self._display.sync()
        return {"x": x, "y": y}

    def drag(self, params: Params) -> dict[str, Any]:
        """``vm.drag``: `start_x`, `start_y` to `end_x`, `end_y` with the left button."""
        start = self._point(params, "start_x", "start_y")
        end = self._point(params, "end_x", "end_y")
        display = self._display
        with display.lock, self._x_errors():
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
        """``vm.scroll``: `x`, `y`, `clicks` (positive up, negative down)."""
        x, y = self._point(params, "x", "y")
        clicks = _integer(params, "clicks", -MAX_SCROLL_CLICKS, MAX_SCROLL_CLICKS)
        button = _WHEEL_UP if clicks > 0 else _WHEEL_DOWN
        with self._display.lock, self._x_errors():
            self._display.fake_motion(x, y)
            for _ in range(abs(clicks)):
                self._display.fake_button(button, True)
                self._display.fake_button(button, False)
            self._display.sync()
        return {"x": x, "y": y, "clicks": clicks}

    def mouse_down(self, params: Params) -> dict[str, Any]:
        """``vm.mouse_down``: `button`, pressed where the pointer is."""
        button = _button(params)
        with self._display.lock, self._x_errors():
            self._display.fake_button(BUTTONS[button], True)
            self._display.sync()
        return {"button": button}

    def mouse_up(self, params: Params) -> dict[str, Any]:
        """``vm.mouse_up``: `button`, released where the pointer is."""
        button = _button(params)
        with self._display.lock, self._x_errors():
            self._display.fake_button(BUTTONS[button], False)
            self._display.sync()
        return {"button": button}

    def _click_at(self, x: int, y: int, button: int, count: int) -> None:
        with self._display.lock, self._x_errors():
            self._display.fake_motion(x, y)
            for _ in range(count):
                self._display.fake_button(button, True)
                self._display.fake_button(button, False)
            self._display.sync()

    def _point(self, params: Params, x_name: str, y_name: str) -> tuple[int, int]:
        return (
            _integer(params, x_name, 0, self.width - 1, what="the screen"),
            _integer(params, y_name, 0, self.height - 1, what="the screen"),
        )

    # -- keyboard ---------------------------------------------------------------------

    def type_text(self, params: Params) -> dict[str, Any]:
        """``vm.type``: `text`, typed as is (no length limit); a CR LF is one Return."""
        text = params.string("text")
        with self._key_errors("text"):
            self._keyboard.type_text(text.replace("\r\n", "\n"))
        return {"typed": len(text)}

    def key(self, params: Params) -> dict[str, Any]:
        """``vm.key``: `key`, one key name or an xdotool chord like ``ctrl+shift+t``."""
        name = _key_name(params, "key")
        with self._key_errors("key"):
            keys = [self._keyboard.resolve(part) for part in split_chord(name)]
            self._keyboard.press(keys)
        return {"keys": [key.name for key in keys]}

    def hotkey(self, params: Params) -> dict[str, Any]:
        """``vm.hotkey``: `keys`, a list pressed in order and released in reverse."""
        raw = params.raw().get("keys")
        if not isinstance(raw, list) or not raw:
            raise InvalidParams("keys must be a non-empty list of key names", field="keys")
        keys: list[Key] = []
        for index, name in enumerate(raw):
            field = f"keys.{index}"
            if not isinstance(name, str) or not name:
                raise InvalidParams(f"{field} must be a key name", field=field)
            with self._key_errors(field):
                keys.append(self._keyboard.resolve(name))
        with self._key_errors("keys"):
            self._keyboard.press(keys)
        return {"keys": [key.name for key in keys]}

    def key_down(self, params: Params) -> dict[str, Any]:
        """``vm.key_down``: `key`."""
        name = _key_name(params, "key")
        with self._key_errors("key"):
            key = self._keyboard.resolve(name)
            self._keyboard.key_down(key)
        return {"key": key.name}

    def key_up(self, params: Params) -> dict[str, Any]:
        """``vm.key_up``: `key`."""
        name = _key_name(params, "key")
        with self._key_errors("key"):
            key = self._keyboard.resolve(name)
            self._keyboard.key_up(key)
        return {"key": key.name}

    # -- programs ---------------------------------------------------------------------

    def run_command(self, params: Params) -> dict[str, Any]:
        """``vm.run_command``: `command` run by bash in a new process (`timeout`)."""
        command = params.string("command")
        timeout = params.seconds("timeout", default=DEFAULT_TIMEOUT_S)
        result = self._runner.run(command, "bash", timeout)
        data = {
            "stdout": result.stdout,
            "stderr": result.stderr,
            "exit_code": result.return_code,
            "truncated": result.truncated,
        }
        if result.timed_out:
            raise ToolTimeout(
                f"command did not finish within {timeout:g}s and was killed", data=data
            )
        return data

    def launch(self, params: Params) -> dict[str, Any]:
        """``vm.launch``: `command` started detached; `wait_for_window` waits for its window."""
        command = params.string("command")
        if not command.strip():
            raise InvalidParams("command must not be empty", field="command")
        wait = params.raw().get("wait_for_window", False)
        if not isinstance(wait, bool):
            raise InvalidParams("wait_for_window must be true or false", field="wait_for_window")
        windows_before = set(self._client_windows()) if wait else set()
        with self._launch_lock:
            self._reap()
            # The user's files: it may read its programs' logs with read_file.
            with acting_as(self._user):
                if self._log_dir is None:
                    self._log_dir = tempfile.mkdtemp(prefix="launched-")
                log_path = os.path.join(self._log_dir, f"{next(self._launch_count)}.log")
                log = os.fdopen(_new_file(log_path), "wb")
            with log:
                process = subprocess.Popen(
                    ["bash", "-c", command],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._home if os.path.isdir(self._home) else "/",
                    env=self._env,
                    start_new_session=True,
                    **popen_kwargs(self._user),
                )
            prefer_for_oom(process.pid, self._user)
            self._launched.append(process)
        data: dict[str, Any] = {"pid": process.pid, "log": log_path}
        if wait:
            data["window"], data["focused"] = self._wait_for_window(windows_before, process)
            if process.poll() is not None:
                data["exit_code"] = exit_status(process.returncode)
        return data

    def pyautogui(self, params: Params) -> dict[str, Any]:
        """``vm.pyautogui``: `command` (one program) or `commands` (several), `timeout`."""
        named = _programs(params)
        timeout = params.seconds("timeout", default=DEFAULT_TIMEOUT_S)
        return self._run_pyautogui(named, timeout)

    def wait(self, params: Params) -> dict[str, Any]:
        """``vm.wait``: `seconds` (0 to 30)."""
        value = params.raw().get("seconds")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidParams("seconds must be a number", field="seconds")
        seconds = float(value)
        if not math.isfinite(seconds) or not 0 <= seconds <= MAX_WAIT_S:
            raise InvalidParams(f"seconds must be between 0 and {MAX_WAIT_S:g}", field="seconds")
        time.sleep(seconds)
        return {"waited": seconds}

    def done(self, params: Params) -> dict[str, Any]:
        """``vm.done``: record that the task is done."""
        self.status = {"status": "done"}
        return dict(self.status)

    def fail(self, params: Params) -> dict[str, Any]:
        """``vm.fail``: record that the task failed, with an optional `reason`."""
        reason = params.optional_string("reason")
        self.status = {"status": "failed", "reason": reason}
        return dict(self.status)

    # -- helpers ------------------------------------------------------------------------

    def _reap(self) -> None:
        """Forget launched programs that ended (collecting their exit status)."""
        self._launched = [process for process in self._launched if process.poll() is None]

    def _client_windows(self) -> list[int]:
        """The top-level windows the window manager manages (EWMH ``_NET_CLIENT_LIST``)."""
        return self._display.window_property(self._display.root, "_NET_CLIENT_LIST")

    def _wait_for_window(
        self, before: set[int], process: subprocess.Popen[bytes]
    ) -> tuple[int | None, bool]:
        """The window a launch opened, and whether it got the focus, within a while.

        Asks the window manager (``_NET_CLIENT_LIST``, ``_NET_ACTIVE_WINDOW``)
        rather than X's input focus, which passes through the window manager's
        own windows while it settles.
        """
        deadline = time.monotonic() + _WINDOW_WAIT_S
        new: list[int] = []
        while time.monotonic() < deadline:
            new = [window for window in self._client_windows() if window not in before]
            if new:
                active = self._display.window_property(self._display.root, "_NET_ACTIVE_WINDOW")
                if active[:1] == new[-1:]:
                    return new[-1], True
            elif process.poll() is not None and process.returncode != 0:
                return None, False  # it failed: no window is coming
            time.sleep(_WINDOW_POLL_S)
        return (new[-1] if new else None), False

    def _run_pyautogui(self, named: list[tuple[str, str]], timeout: float) -> dict[str, Any]:
        programs = [text for _, text in named]
        read_fd, write_fd = os.pipe()
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    pyautogui_code.RUNNER,
                    str(PYAUTOGUI_PAUSE_S),
                    str(write_fd),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self._home if os.path.isdir(self._home) else "/",
                env=self._env,
                pass_fds=(write_fd,),
                start_new_session=True,
                **popen_kwargs(self._user),
            )
            prefer_for_oom(process.pid, self._user)
        finally:
            os.close(write_fd)
        try:
            try:
                stdout, stderr = process.communicate(json.dumps(programs).encode(), timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                stdout, stderr = process.communicate()
                raise ToolTimeout(
                    f"pyautogui did not finish within {timeout:g}s and was killed",
                    data=self._outputs(stdout, stderr, None),
                ) from None
            with os.fdopen(read_fd, "rb") as result_pipe:
                read_fd = -1
                raw_result = result_pipe.read()
        finally:
            if read_fd >= 0:
                os.close(read_fd)
        data = self._outputs(stdout, stderr, exit_status(process.returncode))
        try:
            result = json.loads(raw_result) if raw_result else None
        except ValueError:
            result = None
        if not isinstance(result, dict):
            raise ToolFailed(
                f"pyautogui's runner ended with status {data['exit_code']} and no result", data=data
            )
        if result.get("ok"):
            data["values"] = result.get("values", [])
            return data
        if result.get("stage") == "import":
            raise ToolFailed(
                f"cannot import pyautogui in the desktop: {result.get('type')}: "
                f"{result.get('message')}",
                data=data,
            )
        index = result.get("command")
        field = named[index][0] if isinstance(index, int) and 0 <= index < len(named) else "?"
        where = f"{field} line {result.get('line')}"
        data["values"] = result.get("values", [])
        raise ToolFailed(
            f"pyautogui failed at {where}: {result.get('type')}: {result.get('message')}",
            data=data,
        )

    def _outputs(self, stdout: bytes, stderr: bytes, exit_code: int | None) -> dict[str, Any]:
        truncated = len(stdout) > self._limit or len(stderr) > self._limit
        return {
            "stdout": stdout[: self._limit].decode("utf-8", "replace"),
            "stderr": stderr[: self._limit].decode("utf-8", "replace"),
            "exit_code": exit_code,
            "truncated": truncated,
        }

    @contextlib.contextmanager
    def _key_errors(self, field: str) -> Any:
        try:
            with self._x_errors():
                yield
        except UnknownKey as exc:
            raise InvalidParams(f"{field}: {exc}", field=field) from None
        except KeyboardError as exc:
            raise ToolFailed(str(exc)) from None

    @contextlib.contextmanager
    def _x_errors(self) -> Any:
        try:
            yield
        except XError as exc:
            if self._display.lost:
                raise ToolFailed(_LOST) from None
            raise ToolFailed(str(exc)) from None
        if self._display.lost:
            raise ToolFailed(_LOST)


def create_toolset(context: AgentContext) -> Toolset:
    """The factory the agent looks up in every toolset module.

    Raises:
        ConfigError: The desktop cannot start (its reason is in the message).
    """
    try:
        return DesktopToolset(context)
    except DesktopError as exc:
        raise ConfigError(f"cannot start the desktop: {exc}") from None


# -- parameter checks -----------------------------------------------------------------


def _integer(params: Params, name: str, low: int, high: int, *, what: str = "") -> int:
    """An integer parameter within [low, high]; integral floats (12.0) are accepted."""
    value = params.raw().get(name)
    if value is None:
        raise InvalidParams(f"{name} is required", field=name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParams(f"{name} must be an integer", field=name)
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidParams(f"{name} must be an integer, not {value}", field=name)
        value = int(value)
    if not low <= value <= high:
        where = f" of {what}" if what else ""
        raise InvalidParams(
            f"{name}={value} is outside{where}: it must be between {low} and {high}", field=name
        )
    return value


def _button(params: Params) -> str:
    return params.choice("button", BUTTONS, default="left")


def _key_name(params: Params, name: str) -> str:
    value = params.string(name)
    if not value:
        raise InvalidParams(f"{name} must not be empty", field=name)
    return value


def _new_file(path: str) -> int:
    """`path` made anew for writing: whatever the session user put there first (a
    FIFO whose open would block the agent, a symlink) is replaced, not followed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o644)
    except FileExistsError:
        os.unlink(path)
        return os.open(path, flags, 0o644)


def _programs(params: Params) -> list[tuple[str, str]]:
    """The pyautogui programs of a call, each checked, with the field naming it."""
    raw: Mapping[str, Any] = params.raw()
    single, several = raw.get("command"), raw.get("commands")
    if (single is None) == (several is None):
        raise InvalidParams("give either command (a string) or commands (a list)", field="command")
    if single is not None:
        if not isinstance(single, str):
            raise InvalidParams("command must be a string of Python", field="command")
        named = [("command", single)]
    else:
        if not isinstance(several, list) or not several:
            raise InvalidParams("commands must be a non-empty list of strings", field="commands")
        named = [(f"commands.{index}", text) for index, text in enumerate(several)]
    for field, text in named:
        if not isinstance(text, str):
            raise InvalidParams(f"{field} must be a string of Python", field=field)
        try:
            pyautogui_code.check_program(text)
        except pyautogui_code.RejectedCode as exc:
            raise InvalidParams(f"{field}: {exc}", field=field) from None
    return named
