"""The ``vm.*`` tools over a recording stand-in for the X display: no X server needed.

What reaches X is checked as the list of requests the tools sent; what the
caller sees is checked as the answers, errors naming their field included.
"""

from __future__ import annotations

import base64
import ctypes
import os
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox.agent import AgentContext, ToolFailed
from sandbox.agent.desktop.session import DesktopError, DesktopSettings, parse_size
from sandbox.agent.desktop.xlib import XDisplay, XError
from sandbox.agent.tools.desktop import TOOLS as DECLARED
from sandbox.agent.toolsets.desktop import DesktopToolset

from .desktop_fakes import FakeDesktop, FakeDisplay, call, refused


@pytest.fixture
def desktop() -> FakeDesktop:
    return FakeDesktop()


@pytest.fixture
def tools(tmp_path: Path, desktop: FakeDesktop) -> Iterator[DesktopToolset]:
    context = AgentContext(
        home=str(tmp_path), state_dir=str(tmp_path / "state"), output_limit=1 << 20, child_env={}
    )
    toolset = DesktopToolset(context, DesktopSettings(), desktop=desktop)  # type: ignore[arg-type]
    desktop.display.sent.clear()
    yield toolset
    toolset.close()


def test_every_declared_tool_is_there(tools: DesktopToolset) -> None:
    assert sorted(tool.name for tool in tools.tools()) == sorted(
        declaration.agent_name for declaration in DECLARED
    )


def test_a_click_moves_then_presses_and_releases(
    tools: DesktopToolset, desktop: FakeDesktop
) -> None:
    assert call(tools, "click", x=10, y=20, button="right") == {"x": 10, "y": 20, "button": "right"}
    call(tools, "double_click", x=1023, y=767.0)
    assert desktop.display.sent == [
        ("motion", 10, 20),
        ("button", 3, True),
        ("button", 3, False),
        ("motion", 1023, 767),
        *[("button", 1, True), ("button", 1, False)] * 2,
    ]


@pytest.mark.parametrize(
    ("tool", "params", "field"),
    [
        ("click", {"x": 1024, "y": 0}, "x"),
        ("click", {"x": 0, "y": 768}, "y"),
        ("click", {"x": -1, "y": 0}, "x"),
        ("click", {"x": 1.5, "y": 0}, "x"),
        ("click", {"x": True, "y": 0}, "x"),
        ("click", {"x": "1", "y": 0}, "x"),
        ("click", {"y": 0}, "x"),
        ("click", {"x": 1, "y": 1, "button": "fourth"}, "button"),
        ("move", {"x": 5, "y": 9999}, "y"),
        ("right_click", {"x": 5}, "y"),
        ("drag", {"start_x": 0, "start_y": 0, "end_x": 2000, "end_y": 0}, "end_x"),
        ("drag", {"start_x": 0, "start_y": -5, "end_x": 0, "end_y": 0}, "start_y"),
        ("scroll", {"x": 0, "y": 0, "clicks": 1000}, "clicks"),
        ("wait", {"seconds": 31}, "seconds"),
        ("wait", {"seconds": "1"}, "seconds"),
    ],
)
def test_bad_coordinates_are_refused_naming_the_field(
    tools: DesktopToolset, desktop: FakeDesktop, tool: str, params: dict[str, Any], field: str
) -> None:
    error = refused(tools, tool, **params)
    assert error.field == field
    assert desktop.display.sent == []  # nothing reached the screen


def test_an_out_of_screen_message_gives_the_bounds(tools: DesktopToolset) -> None:
    error = refused(tools, "click", x=1500, y=3)
    assert error.message == "x=1500 is outside of the screen: it must be between 0 and 1023"


def test_right_click_without_a_point_clicks_where_the_pointer_is(
    tools: DesktopToolset, desktop: FakeDesktop
) -> None:
    desktop.display.position = (7, 8)
    assert call(tools, "right_click") == {"x": 7, "y": 8, "button": "right"}


def test_drag_presses_moves_in_steps_and_releases(
    tools: DesktopToolset, desktop: FakeDesktop
) -> None:
    call(tools, "drag", start_x=0, start_y=0, end_x=100, end_y=50)
    sent = desktop.display.sent
    assert sent[:2] == [("motion", 0, 0), ("button", 1, True)]
    assert sent[-2:] == [("motion", 100, 50), ("button", 1, False)]
    assert len([item for item in sent if item[0] == "motion"]) > 3
    assert call(tools, "cursor_position") == {"x": 100, "y": 50}


def test_scroll_turns_the_wheel_up_for_positive_clicks(
    tools: DesktopToolset, desktop: FakeDesktop
) -> None:
    call(tools, "scroll", x=5, y=5, clicks=2)
    call(tools, "scroll", x=5, y=5, clicks=-1)
    buttons = [item[1] for item in desktop.display.sent if item[0] == "button" and item[2]]
    assert buttons == [4, 4, 5]


def test_typing_uses_the_layout_with_shift_and_spare_keys_beyond_it(
    tools: DesktopToolset, desktop: FakeDesktop
) -> None:
    call(tools, "type", text="aA\né")
    sent = desktop.display.sent
    assert sent == [
        ("key", 10, True),
        ("key", 10, False),
        ("key", 50, True),  # Shift for `A`
        ("key", 10, True),
        ("key", 10, False),
        ("key", 50, False),
        ("key", 36, True),  # Return for the newline
        ("key", 36, False),
        ("bind", 40, (0xE9, 0xE9)),  # `é` is not on this keyboard: a spare key gets it
        ("key", 40, True),
        ("key", 40, False),
    ]
    sent.clear()
    call(tools, "type", text="éé")  # bound already: no rebinding
    assert [item[0] for item in sent] == ["key"] * 4


def test_more_foreign_characters_than_spare_keys_recycle_them(
    tools: DesktopToolset, desktop: FakeDesktop
) -> None:
    call(tools, "type", text="€λ中")
    binds = [item for item in desktop.display.sent if item[0] == "bind"]
    assert binds == [
        ("bind", 40, (0x10020AC, 0x10020AC)),
        ("bind", 41, (0x10003BB, 0x10003BB)),
        ("bind", 40, (0x1004E2D, 0x1004E2D)),
    ]


def test_a_windows_line_end_is_one_return(tools: DesktopToolset, desktop: FakeDesktop) -> None:
    call(tools, "type", text="\r\n")
    assert desktop.display.sent == [("key", 36, True), ("key", 36, False)]


def test_an_interval_spaces_the_keystrokes_and_bounds_the_whole(
    tools: DesktopToolset, desktop: FakeDesktop, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr("sandbox.agent.desktop.keyboard.time.sleep", slept.append)
    assert call(tools, "type", text="aa\r\na", interval=0.25) == {"typed": 5}
    assert slept == [0.25, 0.25, 0.25]  # between the four keystrokes, not after the last
    assert [item[1] for item in desktop.display.sent] == [10, 10, 10, 10, 36, 36, 10, 10]
    refusal = refused(tools, "type", text="a" * 1000, interval=0.1)
    assert refusal.field == "interval"
    assert "would take over 60 s" in refusal.message
    assert refused(tools, "type", text="a", interval=2).field == "interval"


def test_long_text_is_typed_whole(tools: DesktopToolset, desktop: FakeDesktop) -> None:
    assert call(tools, "type", text="a" * 10_000) == {"typed": 10_000}
    assert len(desktop.display.sent) == 20_000


def test_hotkeys_press_in_order_and_release_in_reverse(
    tools: DesktopToolset, desktop: FakeDesktop
) -> None:
    call(tools, "hotkey", keys=["ctrl", "shift", "c"])
    assert desktop.display.sent == [
        ("key", 37, True),
        ("key", 50, True),
        ("key", 11, True),
        ("key", 11, False),
        ("key", 50, False),
        ("key", 37, False),
    ]
    desktop.display.sent.clear()
    call(tools, "key", key="ctrl+c")
    assert [item[1:] for item in desktop.display.sent] == [
        (37, True),
        (11, True),
        (11, False),
        (37, False),
    ]


def test_keys_can_be_held_and_released(tools: DesktopToolset, desktop: FakeDesktop) -> None:
    call(tools, "key_down", key="Control_L")
    call(tools, "key_up", key="ctrl")
    call(tools, "key_down", key="shift")
    tools.close()
    assert desktop.display.sent == [
        ("key", 37, True),
        ("key", 37, False),
        ("key", 50, True),
        ("key", 50, False),  # close releases what is still down
    ]
    assert desktop.closed


@pytest.mark.parametrize(
    ("tool", "params", "field"),
    [
        ("key", {"key": "nokey"}, "key"),
        ("key", {"key": "ctrl+"}, "key"),
        ("key", {"key": ""}, "key"),
        ("key_down", {"key": "Hyperdrive"}, "key"),
        ("hotkey", {"keys": ["ctrl", "nokey"]}, "keys.1"),
        ("hotkey", {"keys": ["ctrl", 3]}, "keys.1"),
        ("hotkey", {"keys": []}, "keys"),
        ("hotkey", {"keys": "ctrl+c"}, "keys"),
        ("type", {"text": "a\x01b"}, "text"),
        ("type", {}, "text"),
    ],
)
def test_unknown_keys_are_refused_naming_the_field(
    tools: DesktopToolset, desktop: FakeDesktop, tool: str, params: dict[str, Any], field: str
) -> None:
    assert refused(tools, tool, **params).field == field
    assert desktop.display.sent == []


def test_keysym_names_beyond_the_table_come_from_libx11(
    tools: DesktopToolset, desktop: FakeDesktop
) -> None:
    call(tools, "key", key="XF86Calculator")
    assert desktop.display.sent[0] == ("bind", 40, (0x1008FF1D, 0x1008FF1D))


def test_a_killed_x_connection_is_reported_then_replaced(
    tools: DesktopToolset, desktop: FakeDesktop
) -> None:
    # A program of the session closed the agent's connection (XKillClient) mid-call.
    broken = desktop.display
    broken.lost = True
    result = call(tools, "click", x=10, y=20)  # reconnects first, then clicks
    assert desktop.reconnects == 1
    assert desktop.display is not broken
    assert ("motion", 10, 20) in desktop.display.sent, result
    assert broken.sent == [], "nothing more goes to the dead connection"


def test_a_display_that_died_answers_every_call_with_an_error(
    tools: DesktopToolset, desktop: FakeDesktop
) -> None:
    # The session killed Xvfb: the connection breaks and reconnecting fails.
    def gone() -> FakeDisplay:
        desktop.reconnects += 1
        raise DesktopError("the X display died and does not come back")

    desktop.reconnect = gone  # type: ignore[method-assign]
    broken = desktop.display
    broken.lost = True
    for name, params in [("screenshot", {}), ("click", {"x": 1, "y": 2}), ("screenshot", {})]:
        with pytest.raises(ToolFailed, match="display died"):
            call(tools, name, **params)
    assert desktop.reconnects == 3, "each call tries again rather than using a dead display"
    assert broken.sent == []


def test_a_closed_x_connection_counts_as_lost_and_calls_nothing_in_libx11() -> None:
    # A failed reconnect closes the old connection (NULL Display*); libX11
    # would dereference it (the agent died of SIGSEGV).
    class Refusing:
        def __getattr__(self, name: str) -> Any:
            def function(*args: Any) -> Any:
                raise AssertionError(f"libX11 called with a closed display: {name}")

            return function

    display = XDisplay.__new__(XDisplay)
    display._lib = SimpleNamespace(x11=Refusing(), xtst=Refusing(), lost=set(), errors=[])  # type: ignore[assignment]
    display._dpy = ctypes.c_void_p()
    display.lock = threading.RLock()
    display._shm, display._shm_tried = None, True
    display.width, display.height, display.root, display._screen = 8, 8, 1, 0

    assert display.lost
    for request in (display.capture, display.sync, display.pointer, display.mapping_changes):
        with pytest.raises(XError, match="closed"):
            request()
    with pytest.raises(XError, match="closed"):
        display.fake_motion(1, 1)
    display.close()  # twice closed is still fine


def test_screenshot_is_a_png_of_the_screen(tools: DesktopToolset) -> None:
    data = call(tools, "screenshot")
    png = base64.b64decode(data["image"])
    assert data["size"] == [1024, 768]
    assert data["format"] == "png"
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert int.from_bytes(png[16:20], "big") == 1024
    idat_length = int.from_bytes(png[33:37], "big")
    assert len(zlib.decompress(png[41 : 41 + idat_length])) == (3 * 1024 + 1) * 768


def test_done_and_fail_are_acknowledged(tools: DesktopToolset) -> None:
    assert call(tools, "done") == {"status": "done"}
    assert call(tools, "fail", reason="no such file") == {
        "status": "failed",
        "reason": "no such file",
    }
    assert tools.status == {"status": "failed", "reason": "no such file"}


def test_run_command_returns_its_output_and_exit_code(tools: DesktopToolset) -> None:
    data = call(tools, "run_command", command="echo out; echo err >&2; exit 4", timeout=10)
    assert (data["stdout"], data["stderr"], data["exit_code"]) == ("out\n", "err\n", 4)


def test_launch_returns_at_once_with_a_log(tools: DesktopToolset) -> None:
    data = call(tools, "launch", command="echo started; sleep 5")
    assert data["pid"] > 0
    os.kill(data["pid"], 0)  # still running: launch did not wait for it
    assert "exit_code" not in data
    started = time.monotonic()
    log = Path(data["log"])
    while not log.read_text() and time.monotonic() - started < 5:
        time.sleep(0.01)
    assert log.read_text() == "started\n"
    tools.close()  # kills what was launched, removes the logs
    assert not log.exists()


def test_launch_can_wait_for_the_window(tools: DesktopToolset) -> None:
    data = call(tools, "launch", command="sleep 5", wait_for_window=True)
    assert (data["window"], data["focused"]) == (0x600001, True)
    tools.close()


def test_launch_of_a_failing_command_does_not_wait(
    tools: DesktopToolset, desktop: FakeDesktop, monkeypatch: pytest.MonkeyPatch
) -> None:
    desktop.display.window_property = lambda window, name: []  # type: ignore[method-assign]
    # With an hour to wait for a window, only the failure can end the call.
    monkeypatch.setattr("sandbox.agent.toolsets._desktop_programs._WINDOW_WAIT_S", 3600.0)
    answers: list[dict[str, Any]] = []
    waiter = threading.Thread(
        target=lambda: answers.append(
            call(tools, "launch", command="exit 7", wait_for_window=True)
        ),
        daemon=True,
    )
    waiter.start()
    waiter.join(60)
    assert answers, "launch kept waiting for a window after its program failed"
    data = answers[0]
    assert (data["window"], data["focused"], data["exit_code"]) == (None, False, 7)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "command"),
        ({"command": "x = 1"}, "command"),
        ({"command": "pyautogui.click()", "commands": ["pyautogui.click()"]}, "command"),
        ({"commands": ["pyautogui.click()", "import os"]}, "commands.1"),
        ({"commands": []}, "commands"),
        ({"commands": [1]}, "commands.0"),
    ],
)
def test_pyautogui_code_is_checked_before_it_runs(
    tools: DesktopToolset, params: dict[str, Any], field: str
) -> None:
    assert refused(tools, "pyautogui", **params).field == field


@pytest.mark.parametrize(
    ("text", "size"),
    [("1280x800", (1280, 800)), ("1024X768", (1024, 768)), ("320x240", (320, 240))],
)
def test_screen_sizes_parse(text: str, size: tuple[int, int]) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1280", "x800", "12a0x800", "100x100", "9000x800"])
def test_bad_screen_sizes_are_refused(text: str) -> None:
    with pytest.raises(DesktopError):
        parse_size(text)


def test_settings_come_from_the_environment() -> None:
    settings = DesktopSettings.from_environ(
        {
            "SANDBOX_SCREEN_SIZE": "1024x768",
            "DISPLAY": ":3",
            "SANDBOX_DESKTOP_MANAGE": "0",
            "SANDBOX_DESKTOP_XVFB": "41:5",
        }
    )
    assert (settings.size, settings.display, settings.manage) == ((1024, 768), ":3", False)
    assert settings.started_xvfb == (41, 5)
    assert DesktopSettings.from_environ({}).size == (1280, 800)
    assert DesktopSettings.from_environ({"SANDBOX_DESKTOP_WM": ""}).window_manager == ()
