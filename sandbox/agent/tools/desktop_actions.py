"""``vm:computer_13`` and ``vm:computer_use``: other action spaces (declarations only).

Appended to the ``vm`` tools in `desktop` (`sandbox/agent/tools/desktop.py`).
The agent maps each action onto our input tools
(`sandbox/agent/desktop/action_spaces.py`) and runs them with those tools'
handlers (`sandbox/agent/toolsets/_desktop_actions.py`).
"""

from __future__ import annotations

from ..desktop.action_spaces import COMPUTER_13_ACTIONS, COMPUTER_USE_ACTIONS, SCROLL_DIRECTIONS
from .spec import Param, ToolDeclaration, WhenParam

MAX_SCROLL_AMOUNT = 200
MAX_DURATION_S = 30


def _pair(name: str, description: str) -> Param:
    return Param(
        name, "array", description, min_length=2, max_length=2, items=Param("pixel", "number")
    )


TOOLS = (
    ToolDeclaration(
        "vm",
        "computer_13",
        "One action of OSWorld's computer_13 action space: `action_type` (MOVE_TO, CLICK, "
        "MOUSE_DOWN, MOUSE_UP, RIGHT_CLICK, DOUBLE_CLICK, DRAG_TO, SCROLL, TYPING, PRESS, "
        "KEY_DOWN, KEY_UP, HOTKEY, WAIT, FAIL, DONE) and its `parameters` by OSWorld's names "
        "(x, y, button, num_clicks, dx, dy, text, key, keys). Runs as the matching vm tools "
        "do; returns `action_type`, `steps` (each tool run and its result) and the last "
        "result's fields.",
        (
            Param(
                "action_type",
                "string",
                "The action, as OSWorld names it.",
                required=True,
                enum=COMPUTER_13_ACTIONS,
            ),
            Param(
                "parameters",
                "object",
                "The action's parameters: MOVE_TO x y; CLICK button? x? y? num_clicks?; "
                "MOUSE_DOWN, MOUSE_UP button?; RIGHT_CLICK, DOUBLE_CLICK x? y?; DRAG_TO x y "
                "(from the pointer); SCROLL dx? dy? (at the pointer; positive: right, up); "
                "TYPING text; PRESS, KEY_DOWN, KEY_UP key; HOTKEY keys; none for WAIT (2 s), "
                "FAIL, DONE.",
                default={},
            ),
        ),
    ),
    ToolDeclaration(
        "vm",
        "computer_use",
        "One action of Anthropic's computer-use tool, with its field names: `action` (key, "
        "type, mouse_move, left_click, left_click_drag, right_click, middle_click, "
        "double_click, triple_click, scroll, left_mouse_down, left_mouse_up, hold_key, "
        "wait, screenshot, cursor_position), `coordinate`, `start_coordinate`, `text`, "
        "`scroll_direction`, `scroll_amount`, `duration`. Runs as the matching vm tools "
        "do; returns `action`, `steps` (each tool run and its result) and the last "
        "result's fields (the image of a screenshot, x and y of cursor_position).",
        (
            Param("action", "string", "The action.", required=True, enum=COMPUTER_USE_ACTIONS),
            _pair("coordinate", "[x, y] in screen pixels: where the action acts."),
            _pair("start_coordinate", "[x, y] where left_click_drag starts (else the pointer)."),
            Param(
                "text",
                "string",
                "What `type` types; the key or keys (xdotool names, chords like ctrl+s, "
                "several separated by spaces) of `key` and `hold_key`; keys held during a "
                "click or scroll (shift, ctrl+alt).",
            ),
            Param(
                "scroll_direction", "string", "Which way `scroll` scrolls.", enum=SCROLL_DIRECTIONS
            ),
            Param(
                "scroll_amount",
                "integer",
                "Wheel clicks of `scroll`.",
                minimum=0,
                maximum=MAX_SCROLL_AMOUNT,
            ),
            Param(
                "duration",
                "number",
                "Seconds of `wait` and `hold_key`.",
                minimum=0,
                maximum=MAX_DURATION_S,
            ),
        ),
        # Its screenshot action is vm.screenshot: the image is in the result already.
        observes=WhenParam("action", ("screenshot",)),
    ),
)
"""The action-space tools, appended to the ``vm`` tools."""
