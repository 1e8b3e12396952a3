"""Other action spaces as our ``vm`` tools: OSWorld's ``computer_13`` and Anthropic's computer use.

Pure mapping, no X here: an action becomes a list of `Step`s, each a call of
one of our vm tools (``click``, ``move``, ``type``, ``key`` ...) with its
parameters. The toolset runs them through those tools' own handlers
(`sandbox/agent/toolsets/_desktop_actions.py`), so there is one input
implementation whatever space an agent speaks.

Every step says which field of the action each of its parameters came from,
so a value refused later (off the screen, an unknown key) is named as the
caller wrote it: ``parameters.x``, ``coordinate.1``, ``text``.

computer_13 (OSWorld's ``ACTION_SPACE``): ``action_type`` plus ``parameters``
(MOVE_TO x y; CLICK button? x? y? num_clicks?; MOUSE_DOWN, MOUSE_UP button?;
RIGHT_CLICK, DOUBLE_CLICK x? y?; DRAG_TO x y, from where the pointer is;
SCROLL dx? dy? where the pointer is; TYPING text; PRESS, KEY_DOWN, KEY_UP
key; HOTKEY keys; WAIT; FAIL; DONE). Coordinates may be floats, as OSWorld's
are; they are rounded to the pixel.

Anthropic's computer-use tool: ``action`` plus ``coordinate`` [x, y],
``start_coordinate``, ``text``, ``scroll_direction``, ``scroll_amount`` and
``duration``, as its schema names them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidParams

Pointer = Callable[[], tuple[int, int]]
"""Where the pointer is now: read only by actions that act there."""

BUTTONS = ("left", "right", "middle")
OSWORLD_WAIT_S = 2.0
"""What computer_13's WAIT sleeps: OSWorld's ``DesktopEnv.step`` pauses 2 s."""


@dataclass(frozen=True)
class Step:
    """One call of one of our vm tools.

    Attributes:
        tool: The tool's own name (``click``).
        params: Its parameters.
        fields: The action's field each parameter came from (``x`` ->
            ``parameters.x``); a parameter's items follow it (``keys.1``).
        always: Run even when an earlier step failed (releasing held keys).
    """

    tool: str
    params: dict[str, Any]
    fields: dict[str, str] = field(default_factory=dict)
    always: bool = False

    def caller_field(self, name: str | None, fallback: str) -> str:
        """The action's field behind our parameter `name` (or one of its items)."""
        if name is not None:
            for ours, theirs in self.fields.items():
                if name == ours:
                    return theirs
                if name.startswith(ours + "."):
                    return theirs + name[len(ours) :]
        return fallback


# -- OSWorld computer_13 ------------------------------------------------------------

COMPUTER_13_PARAMETERS: dict[str, tuple[str, ...]] = {
    "MOVE_TO": ("x", "y"),
    "CLICK": ("button", "x", "y", "num_clicks"),
    "MOUSE_DOWN": ("button",),
    "MOUSE_UP": ("button",),
    "RIGHT_CLICK": ("x", "y"),
    "DOUBLE_CLICK": ("x", "y"),
    "DRAG_TO": ("x", "y"),
    "SCROLL": ("dx", "dy"),
    "TYPING": ("text",),
    "PRESS": ("key",),
    "KEY_DOWN": ("key",),
    "KEY_UP": ("key",),
    "HOTKEY": ("keys",),
    "WAIT": (),
    "FAIL": (),
    "DONE": (),
}
"""Each computer_13 action type and the parameters it takes."""
COMPUTER_13_ACTIONS = tuple(COMPUTER_13_PARAMETERS)


def computer_13(action_type: str, parameters: Mapping[str, Any], pointer: Pointer) -> list[Step]:
    """The steps of one computer_13 action.

    Raises:
        InvalidParams: A parameter the action does not take, lacks or cannot
            use, naming it (``parameters.x``).
    """
    taken = COMPUTER_13_PARAMETERS.get(action_type)
    if taken is None:
        raise InvalidParams(
            f"action_type must be one of {', '.join(COMPUTER_13_ACTIONS)}, not {action_type!r}",
            field="action_type",
        )
    for name in parameters:
        if name not in taken:
            takes = f"takes {', '.join(taken)}" if taken else "takes no parameters"
            raise InvalidParams(
                f"parameters.{name}: {action_type} {takes}", field=f"parameters.{name}"
            )
    args = _Args(parameters, "parameters.")
    xy = {"x": "parameters.x", "y": "parameters.y"}
    if action_type == "MOVE_TO":
        x, y = args.required_point()
        return [Step("move", {"x": x, "y": y}, xy)]
    if action_type in ("CLICK", "DOUBLE_CLICK"):
        x, y = args.point(required=False) or pointer()
        button = args.choice("button", BUTTONS, "left")
        clicks = 2 if action_type == "DOUBLE_CLICK" else args.count("num_clicks", 1, 3)
        params = {"x": x, "y": y, "button": button, "clicks": clicks}
        return [Step("click", params, {**xy, "clicks": "parameters.num_clicks"})]
    if action_type in ("MOUSE_DOWN", "MOUSE_UP"):
        tool = "mouse_down" if action_type == "MOUSE_DOWN" else "mouse_up"
        return [Step(tool, {"button": args.choice("button", BUTTONS, "left")})]
    if action_type == "RIGHT_CLICK":
        point = args.point(required=False)
        return [Step("right_click", {"x": point[0], "y": point[1]} if point else {}, xy)]
    if action_type == "DRAG_TO":
        x, y = args.required_point()
        start_x, start_y = pointer()
        params = {"start_x": start_x, "start_y": start_y, "end_x": x, "end_y": y}
        return [Step("drag", params, {"end_x": "parameters.x", "end_y": "parameters.y"})]
    if action_type == "SCROLL":
        if "dx" not in parameters and "dy" not in parameters:
            raise InvalidParams(
                "parameters.dy: SCROLL needs dy (up is positive), dx (right is positive) or both",
                field="parameters.dy",
            )
        x, y = pointer()
        params = {
            "x": x,
            "y": y,
            "clicks": args.integer("dy", 0),
            "horizontal_clicks": args.integer("dx", 0),
        }
        fields = {"clicks": "parameters.dy", "horizontal_clicks": "parameters.dx"}
        return [Step("scroll", params, fields)]
    if action_type == "TYPING":
        return [Step("type", {"text": args.string("text")}, {"text": "parameters.text"})]
    if action_type == "PRESS":
        # hotkey, not key: a key is taken whole ("+" is the plus key, not a chord).
        fields = {"keys.0": "parameters.key", "keys": "parameters.key"}
        return [Step("hotkey", {"keys": [args.string("key")]}, fields)]
    if action_type in ("KEY_DOWN", "KEY_UP"):
        tool = "key_down" if action_type == "KEY_DOWN" else "key_up"
        return [Step(tool, {"key": args.string("key")}, {"key": "parameters.key"})]
    if action_type == "HOTKEY":
        return [Step("hotkey", {"keys": args.strings("keys")}, {"keys": "parameters.keys"})]
    if action_type == "WAIT":
        return [Step("wait", {"seconds": OSWORLD_WAIT_S})]
    return [Step("done" if action_type == "DONE" else "fail", {})]


# -- Anthropic computer use ------------------------------------------------------

COMPUTER_USE_ACTIONS = (
    "key",
    "type",
    "mouse_move",
    "left_click",
    "left_click_drag",
    "right_click",
    "middle_click",
    "double_click",
    "triple_click",
    "scroll",
    "left_mouse_down",
    "left_mouse_up",
    "hold_key",
    "wait",
    "screenshot",
    "cursor_position",
)
"""The actions of Anthropic's computer-use tool (``computer_20250124``)."""
SCROLL_DIRECTIONS = ("up", "down", "left", "right")
_CLICKS = {
    "left_click": ("left", 1),
    "right_click": ("right", 1),
    "middle_click": ("middle", 1),
    "double_click": ("left", 2),
    "triple_click": ("left", 3),
}
_XY = {"x": "coordinate.0", "y": "coordinate.1"}


def computer_use(params: Mapping[str, Any], pointer: Pointer) -> list[Step]:
    """The steps of one Anthropic computer-use action (``params["action"]``).

    Fields an action does not use are ignored, as Anthropic's own tool does.

    Raises:
        InvalidParams: A field the action needs is missing or unusable, naming it.
    """
    action = params.get("action")
    if action not in COMPUTER_USE_ACTIONS:
        raise InvalidParams(
            f"action must be one of {', '.join(COMPUTER_USE_ACTIONS)}, not {action!r}",
            field="action",
        )
    args = _Args(params, "")
    if action == "key":
        # xdotool's `key` takes several keys (chords) separated by spaces.
        chords = args.string("text").split()
        if not chords:
            raise InvalidParams("text: name a key, e.g. Return or ctrl+s", field="text")
        return [Step("key", {"key": chord}, {"key": "text"}) for chord in chords]
    if action == "type":
        return [Step("type", {"text": args.string("text")}, {"text": "text"})]
    if action == "mouse_move":
        x, y = args.required_coordinate("coordinate")
        return [Step("move", {"x": x, "y": y}, _XY)]
    if action in _CLICKS:
        button, clicks = _CLICKS[action]
        x, y = args.coordinate("coordinate", required=False) or pointer()
        click = Step("click", {"x": x, "y": y, "button": button, "clicks": clicks}, _XY)
        return _holding(args.optional_string("text"), [click])
    if action == "left_click_drag":
        end_x, end_y = args.required_coordinate("coordinate")
        start_x, start_y = args.coordinate("start_coordinate", required=False) or pointer()
        drag = {"start_x": start_x, "start_y": start_y, "end_x": end_x, "end_y": end_y}
        fields = {
            "start_x": "start_coordinate.0",
            "start_y": "start_coordinate.1",
            "end_x": "coordinate.0",
            "end_y": "coordinate.1",
        }
        return [Step("drag", drag, fields)]
    if action == "scroll":
        return _holding(args.optional_string("text"), [_scroll(args, pointer)])
    if action in ("left_mouse_down", "left_mouse_up"):
        steps = []
        point = args.coordinate("coordinate", required=False)
        if point is not None:
            steps.append(Step("move", {"x": point[0], "y": point[1]}, _XY))
        tool = "mouse_down" if action == "left_mouse_down" else "mouse_up"
        return [*steps, Step(tool, {"button": "left"})]
    if action == "hold_key":
        key = args.string("text")
        seconds = args.number("duration")
        return [
            Step("key_down", {"key": key}, {"key": "text"}),
            Step("wait", {"seconds": seconds}, {"seconds": "duration"}),
            Step("key_up", {"key": key}, {"key": "text"}, always=True),
        ]
    if action == "wait":
        return [Step("wait", {"seconds": args.number("duration")}, {"seconds": "duration"})]
    if action == "screenshot":
        return [Step("screenshot", {})]
    return [Step("cursor_position", {})]


def _scroll(args: _Args, pointer: Pointer) -> Step:
    direction = args.choice("scroll_direction", SCROLL_DIRECTIONS, None)
    amount = args.integer("scroll_amount", None)
    if amount < 0:
        raise InvalidParams(
            "scroll_amount must be at least 0 (the direction says which way)",
            field="scroll_amount",
        )
    x, y = args.coordinate("coordinate", required=False) or pointer()
    vertical = {"up": amount, "down": -amount}.get(direction, 0)
    sideways = {"right": amount, "left": -amount}.get(direction, 0)
    params = {"x": x, "y": y, "clicks": vertical, "horizontal_clicks": sideways}
    fields = {**_XY, "clicks": "scroll_amount", "horizontal_clicks": "scroll_amount"}
    return Step("scroll", params, fields)


def _holding(modifiers: str | None, steps: list[Step]) -> list[Step]:
    """`steps` with the `text` keys (``shift``, ``ctrl+alt``) held down around them."""
    if modifiers is None or not modifiers.strip():
        return steps
    keys = [key for key in modifiers.strip().split("+") if key]
    down = [Step("key_down", {"key": key}, {"key": "text"}) for key in keys]
    up = [Step("key_up", {"key": key}, {"key": "text"}, always=True) for key in reversed(keys)]
    return [*down, *steps, *up]


class _Args:
    """An action's fields, read by name and type; errors name ``prefix + name``."""

    def __init__(self, values: Mapping[str, Any], prefix: str) -> None:
        self._values = values
        self._prefix = prefix

    def _refuse(self, name: str, text: str) -> InvalidParams:
        where = self._prefix + name
        return InvalidParams(f"{where} {text}", field=where)

    def _get(self, name: str) -> Any:
        value = self._values.get(name)
        if value is None:
            raise self._refuse(name, "is required")
        return value

    def string(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str):
            raise self._refuse(name, "must be a string")
        if not value:
            raise self._refuse(name, "must not be empty")
        return value

    def optional_string(self, name: str) -> str | None:
        return None if self._values.get(name) is None else self.string(name)

    def strings(self, name: str) -> list[str]:
        value = self._get(name)
        if not isinstance(value, list) or not value:
            raise self._refuse(name, "must be a non-empty list of keys")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise self._refuse(f"{name}.{index}", "must be a key name")
        return value

    def number(self, name: str) -> float:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._refuse(name, "must be a number")
        if not math.isfinite(value):
            raise self._refuse(name, "must be a finite number")
        return float(value)

    def integer(self, name: str, default: int | None) -> int:
        if default is not None and self._values.get(name) is None:
            return default
        value = self.number(name)
        if not value.is_integer():
            raise self._refuse(name, f"must be a whole number, not {value:g}")
        return int(value)

    def count(self, name: str, default: int, most: int) -> int:
        value = self.integer(name, default)
        if not 1 <= value <= most:
            raise self._refuse(name, f"is {value}: it must be between 1 and {most}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str | None) -> str:
        if default is not None and self._values.get(name) is None:
            return default
        value = self.string(name)
        if value not in choices:
            raise self._refuse(name, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def pixel(self, name: str) -> int:
        """A coordinate: a number (OSWorld's are floats), rounded to the pixel."""
        return round(self.number(name))

    def required_point(self) -> tuple[int, int]:
        """``x`` and ``y``, both."""
        point = self.point(required=True)
        assert point is not None
        return point

    def required_coordinate(self, name: str) -> tuple[int, int]:
        """An ``[x, y]`` pair that must be given."""
        pair = self.coordinate(name, required=True)
        assert pair is not None
        return pair

    def point(self, *, required: bool) -> tuple[int, int] | None:
        """``x`` and ``y``: both, or (when not `required`) neither."""
        given = [name for name in ("x", "y") if self._values.get(name) is not None]
        if len(given) == 1 or (required and not given):
            missing = "y" if given == ["x"] else "x"
            raise self._refuse(missing, "is required (give both x and y, or neither)")
        if not given:
            return None
        return self.pixel("x"), self.pixel("y")

    def coordinate(self, name: str, *, required: bool) -> tuple[int, int] | None:
        """An ``[x, y]`` pair of pixels."""
        value = self._values.get(name)
        if value is None:
            if required:
                raise self._refuse(name, "is required: [x, y] in pixels")
            return None
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise self._refuse(name, "must be [x, y] in pixels")
        pair = _Args({"0": value[0], "1": value[1]}, f"{self._prefix}{name}.")
        return pair.pixel("0"), pair.pixel("1")
