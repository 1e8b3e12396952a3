"""`sandbox.tool_schemas`: prompt schemas in the shape AgentFlow's pipelines read."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sandbox.backends import RESOURCE_TYPES
from sandbox.tool_schemas import get_all_tool_names, get_tool_schemas, get_tools_by_resource

# OpenAI function names: what rollout/ hands the model as the tool's name.
FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def by_name(schemas: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {schema["name"]: schema for schema in schemas}


def test_every_declared_tool_has_a_schema_with_a_function_name() -> None:
    declared = {f"{r.name}-{tool.name}" for r in RESOURCE_TYPES for tool in r.tools}

    schemas = get_tool_schemas()

    assert {schema["name"] for schema in schemas} == declared
    assert get_all_tool_names() == [schema["name"] for schema in schemas]
    for schema in schemas:
        assert FUNCTION_NAME.fullmatch(schema["name"]), schema["name"]
        assert schema["description"]
        assert isinstance(schema["parameters"], list)


def test_parameters_carry_what_the_prompt_builders_read() -> None:
    schemas = by_name(get_tool_schemas())

    click = by_name(schemas["vm-click"]["parameters"])
    assert click["x"] == {
        "name": "x",
        "type": "integer",
        "description": "Pixels from the screen's left edge.",
        "required": True,
    }
    assert click["button"]["required"] is False
    assert click["button"]["enum"] == ["left", "right", "middle"]
    assert click["button"]["description"].endswith("(default: left)")
    hotkey = by_name(schemas["vm-hotkey"]["parameters"])["keys"]
    assert (hotkey["type"], hotkey["array_type"]) == ("array", "string")
    # An optional number (`float | None`) is a number, not a union.
    assert by_name(schemas["bash-run"]["parameters"])["timeout"]["type"] == "number"
    documents = by_name(schemas["rag-index"]["parameters"])["documents"]
    assert (documents["type"], documents["array_type"]) == ("array", "object")
    assert schemas["vm-cursor_position"]["parameters"] == []


@pytest.mark.parametrize(
    ("allowed", "names"),
    [
        (["rag:*"], {"rag-search", "rag-batch_search", "rag-index", "rag-stats"}),
        (["rag_*"], {"rag-search", "rag-batch_search", "rag-index", "rag-stats"}),
        (["rag-search", "bash:run"], {"rag-search", "bash-run"}),
        (["rag_search", "bash.run"], {"rag-search", "bash-run"}),
        (["vm-mouse_*"], {"vm-mouse_down", "vm-mouse_up"}),
        (["web-search", "mcp:*"], set()),  # AgentFlow tools we do not have select nothing
    ],
)
def test_allowed_tools_select_by_name_or_pattern(allowed: list[str], names: set[str]) -> None:
    assert {schema["name"] for schema in get_tool_schemas(allowed)} == names


def test_none_or_empty_means_every_tool() -> None:
    assert get_tool_schemas(None) == get_tool_schemas([]) == get_tool_schemas()


def test_callers_may_change_what_they_get() -> None:
    first = get_tool_schemas(["vm-click"])
    first[0]["parameters"].clear()

    assert get_tool_schemas(["vm-click"])[0]["parameters"] != []


def test_tools_by_resource() -> None:
    names = [schema["name"] for schema in get_tools_by_resource("code")]

    assert names == ["code-execute"]
