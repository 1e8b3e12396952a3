"""The ``desktop`` toolset's action-space tools: ``vm.computer_13`` and ``vm.computer_use``.

An action is mapped to steps, each a call of one of our vm tools
(`sandbox/agent/desktop/action_spaces.py`), and every step runs through that
tool's own declaration check and handler: no second input implementation.
Every step's parameters are checked before the first one runs, so a bad
value leaves the desktop as it was; a refusal names the action's own field
(``parameters.x``, ``coordinate.0``). Keys an action holds (hold_key, a click
with modifiers) are released even when a step in between fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..desktop import action_spaces
from ..desktop.action_spaces import Step
from ..errors import InvalidParams, ToolError
from ..params import Params
from ..registry import ToolHandler
from ..tools.spec import ToolDeclaration
from ._desktop_input import Screen


class ActionSpaceTools:
    """Runs other action spaces' actions as our tools.

    Args:
        screen: Where the pointer is read, for actions that act there.
        declarations: Our vm tools' declarations, by the tool's own name.
        handlers: Their handlers, by the same names (set before the first call).
    """

    def __init__(
        self,
        screen: Screen,
        declarations: Mapping[str, ToolDeclaration],
        handlers: Mapping[str, ToolHandler],
    ) -> None:
        self._screen = screen
        self._declarations = declarations
        self._handlers = handlers

    def handlers(self) -> dict[str, Any]:
        """Each tool's handler, by the tool's own name."""
        return {"computer_13": self.computer_13, "computer_use": self.computer_use}

    def computer_13(self, params: Params) -> dict[str, Any]:
        """``vm.computer_13``: `action_type` and its `parameters`, as OSWorld names them."""
        raw = params.raw()
        steps = action_spaces.computer_13(
            raw["action_type"], raw.get("parameters") or {}, self._pointer
        )
        return {**self._run(steps, "parameters"), "action_type": raw["action_type"]}

    def computer_use(self, params: Params) -> dict[str, Any]:
        """``vm.computer_use``: Anthropic's `action` with its fields."""
        steps = action_spaces.computer_use(params.raw(), self._pointer)
        return {**self._run(steps, "action"), "action": params.raw()["action"]}

    def _pointer(self) -> tuple[int, int]:
        with self._screen.x_errors():
            return self._screen.display.pointer()

    def _run(self, steps: list[Step], fallback: str) -> dict[str, Any]:
        checked = []
        for step in steps:
            try:
                checked.append(self._declarations[step.tool].check(step.params))
            except InvalidParams as exc:
                raise _renamed(exc, step, fallback) from None
        done: list[dict[str, Any]] = []
        result: dict[str, Any] = {}
        failure: ToolError | None = None
        for step, values in zip(steps, checked, strict=True):
            if failure is not None and not step.always:
                continue
            try:
                result = self._handlers[step.tool](Params(values))
            except InvalidParams as exc:
                failure = failure or _renamed(exc, step, fallback)
            except ToolError as exc:
                failure = failure or exc
            else:
                done.append({"tool": f"vm:{step.tool}", "params": step.params})
        if failure is not None:
            raise failure
        return {**result, "steps": done}


def _renamed(exc: InvalidParams, step: Step, fallback: str) -> InvalidParams:
    """`exc` naming the action's field rather than our tool's parameter."""
    theirs = step.caller_field(exc.field, fallback)
    message = exc.message
    if exc.field and message.startswith(exc.field):
        message = theirs + message[len(exc.field) :]
    else:
        message = f"{theirs}: {message}"
    return InvalidParams(message, field=theirs, data=exc.data)
