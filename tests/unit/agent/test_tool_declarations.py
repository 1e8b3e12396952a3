"""The agent's check of a call against its tool's declaration (`sandbox.agent.tools`)."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.agent import ConfigError, InvalidParams, Params
from sandbox.agent.desktop import action_spaces
from sandbox.agent.desktop.action_spaces import COMPUTER_13_PARAMETERS, COMPUTER_USE_ACTIONS
from sandbox.agent.tools import TOOLSETS, Param, Rule, Shape, ToolDeclaration, bind
from sandbox.agent.tools.spec import WhenParam

POINT = ToolDeclaration(
    "vm",
    "point",
    "A point.",
    (
        Param("x", "integer", required=True, minimum=0, exclusive_maximum=100),
        Param("y", "integer", minimum=0, maximum=50),
        Param("button", "string", default="left", enum=("left", "right")),
        Param("seconds", "number", exclusive_minimum=0, maximum=30),
        Param("hold", "boolean", default=False),
        Param(
            "keys", "array", min_length=1, max_length=2, items=Param("key", "string", min_length=1)
        ),
        Param("env", "object", values=Param("value", "string")),
        Param(
            "doc",
            "object",
            shape=Shape("Doc", "A document.", (Param("id", "string", required=True),)),
        ),
    ),
)


def refusal(declaration: ToolDeclaration, **params: Any) -> InvalidParams:
    with pytest.raises(InvalidParams) as caught:
        declaration.check(params)
    return caught.value


def test_a_good_call_gets_its_defaults_and_loses_undeclared_parameters() -> None:
    checked = POINT.check({"x": 5, "y": 7.0, "unknown": 1, "seconds": 2})
    assert checked == {"x": 5, "y": 7, "button": "left", "seconds": 2.0, "hold": False}
    assert isinstance(checked["y"], int)
    assert isinstance(checked["seconds"], float)


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({}, "x", "x is required"),
        ({"x": None}, "x", "x is required"),
        ({"x": 100}, "x", "x is 100: it must be at least 0 and less than 100"),
        ({"x": -1}, "x", "at least 0"),
        ({"x": 1.5}, "x", "must be an integer, not 1.5"),
        ({"x": True}, "x", "must be an integer"),
        ({"x": "1"}, "x", "must be an integer"),
        ({"x": 1, "y": 51}, "y", "between 0 and 50"),
        ({"x": 1, "button": "middle"}, "button", "one of 'left', 'right', not 'middle'"),
        ({"x": 1, "button": 3}, "button", "must be a string"),
        ({"x": 1, "seconds": 0}, "seconds", "greater than 0 and at most 30"),
        ({"x": 1, "seconds": float("nan")}, "seconds", "finite"),
        ({"x": 1, "seconds": "2"}, "seconds", "must be a number"),
        ({"x": 1, "hold": 1}, "hold", "true or false"),
        ({"x": 1, "keys": []}, "keys", "must not be empty"),
        ({"x": 1, "keys": ["a", "b", "c"]}, "keys", "holds 3 items; at most 2"),
        ({"x": 1, "keys": "a"}, "keys", "must be a list"),
        ({"x": 1, "keys": ["a", ""]}, "keys.1", "must not be empty"),
        ({"x": 1, "keys": ["a", 2]}, "keys.1", "must be a string"),
        ({"x": 1, "env": {"A": 1}}, "env.A", "must be a string"),
        ({"x": 1, "env": ["A"]}, "env", "must be an object"),
        ({"x": 1, "doc": {}}, "doc.id", "doc.id is required"),
    ],
)
def test_a_bad_call_is_refused_naming_the_field(
    params: dict[str, Any], field: str, words: str
) -> None:
    error = refusal(POINT, **params)
    assert error.field == field
    assert words in error.message


def test_a_shaped_object_keeps_its_declared_fields() -> None:
    assert POINT.check({"x": 1, "doc": {"id": "a", "extra": 1}})["doc"] == {"id": "a"}


def test_rules_tie_parameters_together() -> None:
    both = ToolDeclaration(
        "vm",
        "both",
        "",
        (Param("a", "integer"), Param("b", "integer")),
        (Rule("together", ("a", "b"), "give both or neither"),),
    )
    one = ToolDeclaration(
        "vm",
        "one",
        "",
        (Param("a", "string"), Param("b", "string")),
        (Rule("exactly_one", ("a", "b"), "give one"),),
    )
    assert both.check({}) == {}
    assert both.check({"a": 1, "b": 2}) == {"a": 1, "b": 2}
    assert (refusal(both, a=1).field, refusal(both, b=1).field) == ("b", "a")
    assert refusal(both, b=1).message == "give both or neither"
    assert one.check({"b": "x"}) == {"b": "x"}
    assert refusal(one).field == "a"
    assert refusal(one, a="x", b="y").field == "a"


def test_a_rule_must_name_declared_parameters() -> None:
    with pytest.raises(ValueError, match="unknown"):
        ToolDeclaration("vm", "x", "", (), (Rule("together", ("a",), "?"),))


def test_a_list_checked_per_item_leaves_its_items_to_the_tool() -> None:
    batch = ToolDeclaration(
        "rag",
        "batch",
        "",
        (Param("queries", "array", max_length=3, items=Param("q", "string"), per_item=True),),
    )
    assert batch.check({"queries": ["a", 7]}) == {"queries": ["a", 7]}
    assert refusal(batch, queries=["a"] * 4).field == "queries"


def test_timeout_is_known_from_the_parameters() -> None:
    assert not POINT.takes_timeout
    assert ToolDeclaration("x", "y", "", (Param("timeout", "number"),)).takes_timeout


def test_bound_tools_check_their_parameters_before_running() -> None:
    seen: list[dict[str, Any]] = []

    def handler(params: Params) -> dict[str, Any]:
        seen.append(dict(params.raw()))
        return {}

    (tool,) = bind([POINT], {"point": handler})
    assert (tool.name, tool.description) == ("vm.point", "A point.")
    with pytest.raises(InvalidParams):
        tool.handler(Params({"x": -5}))
    assert seen == []
    tool.handler(Params({"x": 5}))
    assert seen == [{"x": 5, "button": "left", "hold": False}]


def test_binding_refuses_a_toolset_that_differs_from_its_declarations() -> None:
    def handler(params: Params) -> dict[str, Any]:
        return {}

    with pytest.raises(ConfigError, match=r"not implemented: \['point'\]"):
        bind([POINT], {})
    with pytest.raises(ConfigError, match=r"undeclared: \['other'\]"):
        bind([POINT], {"point": handler, "other": handler})


def test_a_list_given_for_a_list_into_parameter_becomes_the_list_it_names() -> None:
    declaration = ToolDeclaration(
        "vm",
        "pyautogui",
        "Run programs.",
        (
            Param("command", "string", list_into="commands"),
            Param("commands", "array", items=Param("command", "string")),
        ),
        (Rule("exactly_one", ("command", "commands"), "one of them"),),
    )
    assert declaration.check({"command": ["a", "b"]}) == {"commands": ["a", "b"]}
    assert declaration.check({"command": "a"}) == {"command": "a"}
    with pytest.raises(InvalidParams) as caught:
        declaration.check({"command": ["a"], "commands": ["b"]})
    assert caught.value.field == "command"
    with pytest.raises(ValueError, match="lists into unknown name"):
        ToolDeclaration("vm", "x", "", (Param("command", "string", list_into="nope"),))


def test_the_observing_tools_are_declared_so() -> None:
    declared = {d.name: d for d in TOOLSETS["desktop"]}
    always = {name for name, d in declared.items() if d.observes is True}
    assert always == {"screenshot", "accessibility_tree", "start_recording", "stop_recording"}
    computer_use = declared["computer_use"]
    assert computer_use.observes_in({"action": "screenshot"})
    assert not computer_use.observes_in({"action": "left_click"})
    assert not declared["computer_13"].observes_in({"action_type": "CLICK"})
    assert not declared["click"].observes_in({"x": 1, "y": 1})


def test_an_action_observes_exactly_when_all_its_steps_do() -> None:
    declared = {d.name: d for d in TOOLSETS["desktop"]}
    for action in COMPUTER_USE_ACTIONS:
        params: dict[str, Any] = {"action": action, "coordinate": [1, 1], "text": "a"}
        params |= {"scroll_direction": "up", "scroll_amount": 1, "duration": 0}
        steps = action_spaces.computer_use(params, lambda: (0, 0))
        observing = all(declared[step.tool].observes_in(step.params) for step in steps)
        assert declared["computer_use"].observes_in(params) is observing, action
    for action_type, taken in COMPUTER_13_PARAMETERS.items():
        values = {"x": 1, "y": 1, "button": "left", "num_clicks": 1, "dx": 0, "dy": 1}
        values |= {"text": "a", "key": "a", "keys": ["ctrl", "a"]}
        steps = action_spaces.computer_13(
            action_type, {name: values[name] for name in taken}, lambda: (0, 0)
        )
        # No computer_13 action is an observation: it declares none.
        assert not any(declared[step.tool].observes_in(step.params) for step in steps), action_type
    assert declared["computer_13"].observes is False


def test_observes_must_name_a_declared_parameter() -> None:
    with pytest.raises(ValueError, match="observes names unknown mode"):
        ToolDeclaration(
            "vm", "t", "d", (Param("action", "string", "a"),), observes=WhenParam("mode", ("x",))
        )
