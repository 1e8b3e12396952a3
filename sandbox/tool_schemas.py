"""Tool descriptions for LLM prompts, in the shape AgentFlow's pipelines read.

``from sandbox.tool_schemas import get_tool_schemas`` is what AgentFlow's rollout
and synthesis code calls to tell a model which tools it may use. Each schema is
built from the tools this package declares (the same declarations the server
validates calls with and publishes at ``GET /tools``)::

    {"name": "vm-click",
     "description": "...",
     "parameters": [{"name": "x", "type": "integer", "description": "...",
                     "required": True}, ...]}

Names join the resource type and the tool with ``-`` because OpenAI function
names may not contain ``:``; the server takes ``vm-click`` for ``vm:click``. A
parameter has ``array_type`` when it is an array and ``enum`` when it takes one
of a few values; a default, when there is one, ends its description.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sandbox.backends import RESOURCE_TYPES
from sandbox.sessions.registry import ToolRegistry

__all__ = ["get_all_tool_names", "get_tool_schemas", "get_tools_by_resource"]

_SEPARATORS = (":", "-", "_", ".")
# JSON-schema types a prompt schema may name; anything else is described as a string.
_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "object"})


def _type_of(schema: Mapping[str, Any]) -> str:
    """The JSON type of a property; for ``X | None`` the type of ``X``."""
    kind = schema.get("type")
    if isinstance(kind, str) and kind != "null":
        return kind if kind in _TYPES else "string"
    for option in schema.get("anyOf", []):
        if isinstance(option, Mapping) and option.get("type") not in (None, "null"):
            return _type_of(option)
    # A `$ref` is a nested model (a document, ...): an object.
    return "object" if "$ref" in schema or "anyOf" in schema else "string"


def _items_of(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    if schema.get("type") == "array":
        items = schema.get("items", {})
        return items if isinstance(items, Mapping) else {}
    for option in schema.get("anyOf", []):
        if isinstance(option, Mapping) and option.get("type") == "array":
            return _items_of(option)
    return {}


def _enum_of(schema: Mapping[str, Any]) -> list[Any] | None:
    if isinstance(schema.get("enum"), list):
        return list(schema["enum"])
    for option in schema.get("anyOf", []):
        if isinstance(option, Mapping) and isinstance(option.get("enum"), list):
            return list(option["enum"])
    return None


def _parameter(name: str, schema: Mapping[str, Any], required: bool) -> dict[str, Any]:
    description = str(schema.get("description") or schema.get("title") or name)
    default = schema.get("default")
    if not required and default is not None:
        description = f"{description.rstrip('.')} (default: {default})"
    parameter: dict[str, Any] = {
        "name": name,
        "type": _type_of(schema),
        "description": description,
        "required": required,
    }
    if parameter["type"] == "array":
        parameter["array_type"] = _type_of(_items_of(schema))
    enum = _enum_of(schema)
    if enum is not None:
        parameter["enum"] = enum
    return parameter


def _prompt_schema(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A registry tool description (name ``vm:click``, JSON-schema parameters) as
    AgentFlow's prompt schema."""
    resource, _, simple = str(tool["name"]).partition(":")
    parameters = tool.get("parameters", {})
    required = set(parameters.get("required", []))
    return {
        "name": f"{resource}-{simple}",
        "description": str(tool.get("description", "")),
        "parameters": [
            _parameter(name, schema, name in required)
            for name, schema in parameters.get("properties", {}).items()
        ],
    }


@functools.cache
def _all_schemas() -> tuple[dict[str, Any], ...]:
    registry = ToolRegistry(RESOURCE_TYPES)
    return tuple(_prompt_schema(tool) for tool in registry.describe())


@functools.cache
def _resource_names() -> tuple[str, ...]:
    # Longest first, so a resource type whose name starts another's wins.
    return tuple(sorted(ToolRegistry(RESOURCE_TYPES).resource_names, key=len, reverse=True))


def _canonical(name: str) -> str:
    """``vm:click``, ``vm_click``, ``vm.click`` and ``vm-click`` all as ``vm-click``."""
    for resource in _resource_names():
        for separator in _SEPARATORS:
            if name.startswith(resource + separator):
                return f"{resource}-{name[len(resource) + 1 :]}"
    return name


def _selected(schemas: Iterable[dict[str, Any]], patterns: Sequence[str]) -> list[dict[str, Any]]:
    wanted = [_canonical(pattern.strip()) for pattern in patterns]
    return [
        schema
        for schema in schemas
        if any(fnmatch.fnmatchcase(schema["name"], pattern) for pattern in wanted)
    ]


def get_tool_schemas(allowed_tools: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Prompt schemas of the tools, all or those `allowed_tools` names.

    Args:
        allowed_tools: Tool names or patterns: ``"vm-click"`` (or ``vm:click``,
            ``vm_click``, ``vm.click``), ``"vm:*"`` / ``"vm_*"`` / ``"vm-*"`` for every
            tool of a resource type, any ``fnmatch`` pattern (``"vm-key*"``).
            Names of tools this package does not have select nothing. ``None`` or
            an empty list: every tool.

    Returns:
        One ``{name, description, parameters}`` per tool, in declaration order;
        the caller may change them freely.
    """
    schemas = _all_schemas()
    chosen = _selected(schemas, allowed_tools) if allowed_tools else list(schemas)
    return copy.deepcopy(chosen)


def get_all_tool_names() -> list[str]:
    """The prompt names of every tool (``bash-run``, ``vm-click``, ...)."""
    return [schema["name"] for schema in _all_schemas()]


def get_tools_by_resource(resource_type: str) -> list[dict[str, Any]]:
    """Prompt schemas of every tool of one resource type (``"vm"``, ``"rag"``, ...)."""
    return get_tool_schemas([f"{resource_type}-*"])
