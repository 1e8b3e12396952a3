"""OSWorld's computer_13 and Anthropic's computer-use actions, mapped onto our vm tools.

The mapping is checked as steps, then through the toolset over the recording
stand-in for X: what reaches X is what our own tools send, and a bad action is
refused naming the action's field before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.agent import AgentContext, InvalidParams
from sandbox.agent.desktop.action_spaces import (
    COMPUTER_13_ACTIONS,
    COMPUTER_USE_ACTIONS,
    Step,
    computer_13,
    computer_use,
)
from sandbox.agent.desktop.session import DesktopSettings
from sandbox.agent.toolsets.desktop import DesktopToolset

from .desktop_fakes import FakeDesktop, call, refused

POINTER = (5, 6)


def pointer() -> tuple[int, int]:
    return POINTER


def tools_of(steps: list[Step]) -> list[tuple[str, dict[str, Any]]]:
    return [(step.tool, step.params) for step in steps]


@pytest.mark.parametrize(
    ("action_type", "parameters", "expected"),
    [
        ("MOVE_TO", {"x": 10.6, "y": 20}, [("move", {"x": 11, "y": 20})]),
        (
            "CLICK",
            {"x": 1, "y": 2, "button": "right", "num_clicks": 3},
            [("click", {"x": 1, "y": 2, "button": "right", "clicks": 3})],
        ),
        ("CLICK", {}, [("click", {"x": 5, "y": 6, "button": "left", "clicks": 1})]),
        ("MOUSE_DOWN", {}, [("mouse_down", {"button": "left"})]),
        ("MOUSE_UP", {"button": "middle"}, [("mouse_up", {"button": "middle"})]),
        ("RIGHT_CLICK", {}, [("right_click", {})]),
        ("RIGHT_CLICK", {"x": 3, "y": 4}, [("right_click", {"x": 3, "y": 4})]),
        (
            "DOUBLE_CLICK",
            {"x": 3, "y": 4},
            [("click", {"x": 3, "y": 4, "button": "left", "clicks": 2})],
        ),
        (
            "DRAG_TO",
            {"x": 30, "y": 40},
            [("drag", {"start_x": 5, "start_y": 6, "end_x": 30, "end_y": 40})],
        ),
        (
            "SCROLL",
            {"dy": -3},
            [("scroll", {"x": 5, "y": 6, "clicks": -3, "horizontal_clicks": 0})],
        ),
        (
            "SCROLL",
            {"dx": 2, "dy": 1},
            [("scroll", {"x": 5, "y": 6, "clicks": 1, "horizontal_clicks": 2})],
        ),
        ("TYPING", {"text": "hi"}, [("type", {"text": "hi"})]),
        ("PRESS", {"key": "+"}, [("hotkey", {"keys": ["+"]})]),
        ("KEY_DOWN", {"key": "shift"}, [("key_down", {"key": "shift"})]),
        ("KEY_UP", {"key": "shift"}, [("key_up", {"key": "shift"})]),
        ("HOTKEY", {"keys": ["ctrl", "c"]}, [("hotkey", {"keys": ["ctrl", "c"]})]),
        ("WAIT", {}, [("wait", {"seconds": 2.0})]),
        ("FAIL", {}, [("fail", {})]),
        ("DONE", {}, [("done", {})]),
    ],
)
def test_computer_13_actions_become_our_tools(
    action_type: str, parameters: dict[str, Any], expected: list[tuple[str, dict[str, Any]]]
) -> None:
    assert tools_of(computer_13(action_type, parameters, pointer)) == expected


def test_every_computer_13_action_is_mapped() -> None:
    assert set(COMPUTER_13_ACTIONS) == {
        "MOVE_TO", "CLICK", "MOUSE_DOWN", "MOUSE_UP", "RIGHT_CLICK", "DOUBLE_CLICK", "DRAG_TO",
        "SCROLL", "TYPING", "PRESS", "KEY_DOWN", "KEY_UP", "HOTKEY", "WAIT", "FAIL", "DONE",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("action_type", "parameters", "field"),
    [
        ("CLICK", {"x": 1}, "parameters.y"),
        ("CLICK", {"y": 1}, "parameters.x"),
        ("CLICK", {"x": "1", "y": 2}, "parameters.x"),
        ("CLICK", {"x": 1, "y": 2, "num_clicks": 4}, "parameters.num_clicks"),
        ("CLICK", {"button": "side"}, "parameters.button"),
        ("CLICK", {"clicks": 2}, "parameters.clicks"),
        ("MOVE_TO", {}, "parameters.x"),
        ("MOVE_TO", {"x": float("nan"), "y": 1}, "parameters.x"),
        ("SCROLL", {}, "parameters.dy"),
        ("SCROLL", {"dy": 1.5}, "parameters.dy"),
        ("TYPING", {}, "parameters.text"),
        ("TYPING", {"text": 3}, "parameters.text"),
        ("HOTKEY", {"keys": []}, "parameters.keys"),
        ("HOTKEY", {"keys": ["ctrl", 3]}, "parameters.keys.1"),
        ("WAIT", {"seconds": 3}, "parameters.seconds"),
        ("JUMP", {}, "action_type"),
    ],
)
def test_bad_computer_13_actions_name_the_field(
    action_type: str, parameters: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidParams) as caught:
        computer_13(action_type, parameters, pointer)
    assert caught.value.field == field
    assert field in caught.value.message


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"action": "key", "text": "ctrl+a Delete"},
            [("key", {"key": "ctrl+a"}), ("key", {"key": "Delete"})],
        ),
        ({"action": "type", "text": "hi\n"}, [("type", {"text": "hi\n"})]),
        ({"action": "mouse_move", "coordinate": [7, 8]}, [("move", {"x": 7, "y": 8})]),
        (
            {"action": "left_click", "coordinate": [7, 8]},
            [("click", {"x": 7, "y": 8, "button": "left", "clicks": 1})],
        ),
        (
            {"action": "middle_click"},
            [("click", {"x": 5, "y": 6, "button": "middle", "clicks": 1})],
        ),
        ({"action": "right_click"}, [("click", {"x": 5, "y": 6, "button": "right", "clicks": 1})]),
        ({"action": "double_click"}, [("click", {"x": 5, "y": 6, "button": "left", "clicks": 2})]),
        ({"action": "triple_click"}, [("click", {"x": 5, "y": 6, "button": "left", "clicks": 3})]),
        (
            {"action": "left_click", "coordinate": [1, 2], "text": "ctrl+shift"},
            [
                ("key_down", {"key": "ctrl"}),
                ("key_down", {"key": "shift"}),
                ("click", {"x": 1, "y": 2, "button": "left", "clicks": 1}),
                ("key_up", {"key": "shift"}),
                ("key_up", {"key": "ctrl"}),
            ],
        ),
        (
            {"action": "left_click_drag", "coordinate": [9, 9]},
            [("drag", {"start_x": 5, "start_y": 6, "end_x": 9, "end_y": 9})],
        ),
        (
            {"action": "left_click_drag", "start_coordinate": [1, 1], "coordinate": [9, 9]},
            [("drag", {"start_x": 1, "start_y": 1, "end_x": 9, "end_y": 9})],
        ),
        (
            {
                "action": "scroll",
                "coordinate": [3, 3],
                "scroll_direction": "down",
                "scroll_amount": 5,
            },
            [("scroll", {"x": 3, "y": 3, "clicks": -5, "horizontal_clicks": 0})],
        ),
        (
            {"action": "scroll", "scroll_direction": "left", "scroll_amount": 2},
            [("scroll", {"x": 5, "y": 6, "clicks": 0, "horizontal_clicks": -2})],
        ),
        ({"action": "left_mouse_down"}, [("mouse_down", {"button": "left"})]),
        (
            {"action": "left_mouse_up", "coordinate": [4, 4]},
            [("move", {"x": 4, "y": 4}), ("mouse_up", {"button": "left"})],
        ),
        (
            {"action": "hold_key", "text": "shift", "duration": 0.5},
            [
                ("key_down", {"key": "shift"}),
                ("wait", {"seconds": 0.5}),
                ("key_up", {"key": "shift"}),
            ],
        ),
        ({"action": "wait", "duration": 1}, [("wait", {"seconds": 1.0})]),
        ({"action": "screenshot"}, [("screenshot", {})]),
        ({"action": "cursor_position"}, [("cursor_position", {})]),
    ],
)
def test_computer_use_actions_become_our_tools(
    params: dict[str, Any], expected: list[tuple[str, dict[str, Any]]]
) -> None:
    assert tools_of(computer_use(params, pointer)) == expected


def test_every_computer_use_action_is_mapped() -> None:
    for action in COMPUTER_USE_ACTIONS:
        params = {"action": action, "text": "a", "coordinate": [1, 1], "duration": 0}
        params.update(scroll_direction="up", scroll_amount=1)
        assert computer_use(params, pointer)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"action": "zoom"}, "action"),
        ({}, "action"),
        ({"action": "key"}, "text"),
        ({"action": "key", "text": "   "}, "text"),
        ({"action": "type", "text": ""}, "text"),
        ({"action": "mouse_move"}, "coordinate"),
        ({"action": "mouse_move", "coordinate": [1]}, "coordinate"),
        ({"action": "mouse_move", "coordinate": [1, "2"]}, "coordinate.1"),
        ({"action": "left_click_drag", "start_coordinate": [1, 1]}, "coordinate"),
        ({"action": "scroll", "scroll_amount": 1}, "scroll_direction"),
        ({"action": "scroll", "scroll_direction": "up"}, "scroll_amount"),
        ({"action": "scroll", "scroll_direction": "up", "scroll_amount": -1}, "scroll_amount"),
        ({"action": "hold_key", "text": "a"}, "duration"),
        ({"action": "wait"}, "duration"),
    ],
)
def test_bad_computer_use_actions_name_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        computer_use(params, pointer)
    assert caught.value.field == field


# -- through the toolset: our tools' own input code ------------------------------------


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


def test_a_computer_13_click_sends_what_vm_click_sends(
    tools: DesktopToolset, desktop: FakeDesktop
) -> None:
    answer = call(
        tools, "computer_13", action_type="CLICK", parameters={"x": 10, "y": 20, "num_clicks": 2}
    )
    assert answer["action_type"] == "CLICK"
    assert answer["x"] == 10
    assert answer["clicks"] == 2
    assert answer["steps"] == [
        {"tool": "vm:click", "params": {"x": 10, "y": 20, "button": "left", "clicks": 2}}
    ]
    via_action = list(desktop.display.sent)
    desktop.display.sent.clear()
    call(tools, "click", x=10, y=20, clicks=2)
    assert (
        desktop.display.sent
        == via_action
        == [
            ("motion", 10, 20),
            *[("button", 1, True), ("button", 1, False)] * 2,
        ]
    )


def test_scrolling_sideways_uses_the_horizontal_wheel_buttons(
    tools: DesktopToolset, desktop: FakeDesktop
) -> None:
    desktop.display.position = (7, 8)
    call(tools, "computer_13", action_type="SCROLL", parameters={"dx": -1, "dy": 1})
    assert desktop.display.sent == [
        ("motion", 7, 8),
        ("button", 4, True),
        ("button", 4, False),
        ("button", 6, True),
        ("button", 6, False),
    ]


def test_a_computer_use_typed_text_and_screenshot(
    tools: DesktopToolset, desktop: FakeDesktop
) -> None:
    assert call(tools, "computer_use", action="type", text="a")["typed"] == 1
    assert [item[0] for item in desktop.display.sent] == ["key", "key"]
    shot = call(tools, "computer_use", action="screenshot")
    assert shot["size"] == [1024, 768]
    assert shot["action"] == "screenshot"
    desktop.display.position = (3, 4)
    assert call(tools, "computer_use", action="cursor_position")["x"] == 3


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        (
            "computer_13",
            {"action_type": "CLICK", "parameters": {"x": 1024, "y": 0}},
            "parameters.x",
        ),
        (
            "computer_13",
            {"action_type": "MOVE_TO", "parameters": {"x": 0, "y": -1}},
            "parameters.y",
        ),
        ("computer_13", {"action_type": "PRESS", "parameters": {"key": "nokey"}}, "parameters.key"),
        (
            "computer_13",
            {"action_type": "HOTKEY", "parameters": {"keys": ["ctrl", "nokey"]}},
            "parameters.keys.1",
        ),
        ("computer_13", {"action_type": "SCROLL", "parameters": {"dy": 999}}, "parameters.dy"),
        ("computer_13", {"action_type": "CLICK", "parameters": []}, "parameters"),
        ("computer_use", {"action": "left_click", "coordinate": [5, 800]}, "coordinate.1"),
        (
            "computer_use",
            {"action": "left_click_drag", "start_coordinate": [9999, 0], "coordinate": [1, 1]},
            "start_coordinate.0",
        ),
        ("computer_use", {"action": "key", "text": "ctrl+nokey"}, "text"),
        ("computer_use", {"action": "hold_key", "text": "a", "duration": 31}, "duration"),
        (
            "computer_use",
            {"action": "scroll", "scroll_direction": "up", "scroll_amount": 201},
            "scroll_amount",
        ),
    ],
)
def test_a_bad_action_is_refused_naming_its_field_and_sends_nothing(
    tools: DesktopToolset, desktop: FakeDesktop, name: str, params: dict[str, Any], field: str
) -> None:
    error = refused(tools, name, **params)
    assert error.field == field
    assert error.message.startswith(field)
    assert [item for item in desktop.display.sent if item[0] != "bind"] == []


def test_held_modifiers_are_released_when_the_click_fails(
    tools: DesktopToolset, desktop: FakeDesktop
) -> None:
    # The point is on the declaration's range but off this 1024x768 screen: the
    # click itself refuses it, after shift went down; shift still comes up.
    error = refused(tools, "computer_use", action="left_click", coordinate=[2000, 1], text="shift")
    assert error.field == "coordinate.0"
    assert desktop.display.sent == [("key", 50, True), ("key", 50, False)]
