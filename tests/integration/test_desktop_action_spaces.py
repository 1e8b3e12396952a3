"""vm:computer_13 and vm:computer_use on a real desktop: clicks focus windows, typed text lands.

Two xterms side by side; a click in one gives it the focus (openbox focuses on
click), and text typed then reaches a file through ``cat`` in that xterm.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox import ErrorCode, Sandbox

from .support import ServerProcess, ok, wait_until, worker


@pytest.fixture(scope="module")
def sb(server: ServerProcess) -> Iterator[Sandbox]:
    with worker(server, "actions") as sandbox:
        sandbox.create_session_sync("vm", {"screen_size": [1024, 768]})
        yield sandbox


def xterm_at(sb: Sandbox, x: int, y: int) -> int:
    """An xterm whose window is moved to (x, y), its shell started; its window id."""
    launched = ok(sb, "vm:launch", command="xterm -geometry 60x15", wait_for_window=True)
    window = int(launched["window"])
    wait_until(sb, f"pgrep -P {launched['pid']} -x bash")
    ok(sb, "vm:run_command", command=f"xdotool windowmove --sync {window} {x} {y}")
    return window


def use(sb: Sandbox, **params: Any) -> dict[str, Any]:
    """One vm:computer_use action (whose field `action` clashes with `ok`'s)."""
    envelope = sb.execute_sync("vm:computer_use", params)
    assert envelope["code"] == 0, envelope
    return dict(envelope["data"])


def focus_is(sb: Sandbox, window: int) -> None:
    wait_until(sb, f"test $(xdotool getactivewindow) = {window}")


def test_computer_13_clicks_and_types(sb: Sandbox) -> None:
    left, right = xterm_at(sb, 0, 0), xterm_at(sb, 520, 400)
    focus_is(sb, right)  # the newer one

    clicked = ok(sb, "vm:computer_13", action_type="CLICK", parameters={"x": 100.4, "y": 100})
    assert clicked["steps"] == [
        {"tool": "vm:click", "params": {"x": 100, "y": 100, "button": "left", "clicks": 1}}
    ]
    focus_is(sb, left)
    ok(sb, "vm:computer_13", action_type="TYPING", parameters={"text": "cat > ~/c13.txt\n"})
    wait_until(sb, "pgrep -x cat")
    ok(sb, "vm:computer_13", action_type="TYPING", parameters={"text": "typed by computer_13"})
    ok(sb, "vm:computer_13", action_type="PRESS", parameters={"key": "enter"})
    ok(sb, "vm:computer_13", action_type="HOTKEY", parameters={"keys": ["ctrl", "d"]})
    assert wait_until(sb, "! pgrep -x cat >/dev/null && cat ~/c13.txt") == "typed by computer_13\n"

    ok(sb, "vm:computer_13", action_type="MOVE_TO", parameters={"x": 700, "y": 500})
    assert ok(sb, "vm:cursor_position") == {"x": 700, "y": 500}
    assert ok(sb, "vm:computer_13", action_type="DONE")["status"] == "done"


def test_computer_use_clicks_types_and_observes(sb: Sandbox) -> None:
    left, right = xterm_at(sb, 0, 0), xterm_at(sb, 520, 400)
    use(sb, action="left_click", coordinate=[100, 100])
    focus_is(sb, left)
    use(sb, action="left_click", coordinate=[700, 500])
    focus_is(sb, right)
    use(sb, action="type", text="cat > ~/cu.txt\n")
    wait_until(sb, "pgrep -x cat")
    use(sb, action="type", text="typed by computer use")
    use(sb, action="key", text="Return ctrl+d")
    assert wait_until(sb, "! pgrep -x cat >/dev/null && cat ~/cu.txt") == "typed by computer use\n"

    position = use(sb, action="cursor_position")
    assert (position["x"], position["y"]) == (700, 500)
    shot = use(sb, action="screenshot")
    assert shot["size"] == [1024, 768]
    assert shot["format"] == "png"


def test_bad_actions_are_1002_naming_the_field_and_change_nothing(sb: Sandbox) -> None:
    ok(sb, "vm:move", x=10, y=10)
    c13, cu = "vm:computer_13", "vm:computer_use"
    cases: list[tuple[str, dict[str, Any], str]] = [
        (c13, {"action_type": "CLICK", "parameters": {"x": 5000, "y": 0}}, "params.parameters.x"),
        (c13, {"action_type": "CLICK", "parameters": {"x": 5}}, "params.parameters.y"),
        (c13, {"action_type": "PRESS", "parameters": {"key": "nokey"}}, "params.parameters.key"),
        (c13, {"action_type": "JUMP"}, "params.action_type"),
        (cu, {"action": "left_click", "coordinate": [1, 768]}, "params.coordinate.1"),
        (cu, {"action": "zoom"}, "params.action"),
        (cu, {"action": "type"}, "params.text"),
        (cu, {"action": "wait", "duration": 99}, "params.duration"),
    ]
    for tool, params, field in cases:
        envelope = sb.execute_sync(tool, params)
        assert envelope["code"] == ErrorCode.INVALID_PARAMS, envelope
        assert envelope["data"]["field"] == field, envelope
    assert ok(sb, "vm:cursor_position") == {"x": 10, "y": 10}
