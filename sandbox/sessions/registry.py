"""Tool registry: resolves action names, validates parameters, lists tools.

The same pydantic models validate a call and produce the JSON schema `/tools`
publishes, so the two cannot drift apart.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..backends import ResourceType, SessionConfig, ToolSpec
from ..errors import InvalidParams, ToolNotFound

_SEPARATORS = (":", ".", "_", "-")

M = TypeVar("M", bound=BaseModel)


class ToolRegistry:
    """Every resource type and tool the server offers."""

    def __init__(self, resource_types: Iterable[ResourceType]) -> None:
        self._resources = {resource.name: resource for resource in resource_types}
        self._tools: dict[str, ToolSpec] = {}
        self._by_simple_name: dict[str, list[ToolSpec]] = {}
        for resource in self._resources.values():
            for tool in resource.tools:
                self._tools[tool.full_name] = tool
                self._by_simple_name.setdefault(tool.name, []).append(tool)

    @property
    def resource_names(self) -> list[str]:
        """Names of all resource types, sorted."""
        return sorted(self._resources)

    def resource_types(self) -> list[ResourceType]:
        """All resource types."""
        return list(self._resources.values())

    def resource(self, name: str, *, field: str = "resource_type") -> ResourceType:
        """The resource type called `name`.

        Raises:
            InvalidParams: No such resource type (the message lists the known ones).
        """
        try:
            return self._resources[name]
        except KeyError:
            known = ", ".join(self.resource_names)
            raise InvalidParams(
                f"{field}: unknown resource type {name!r}; known types: {known}", field=field
            ) from None

    def has_tool(self, full_name: str) -> bool:
        """Whether a tool of exactly this name (``vm:start_recording``) exists."""
        return full_name in self._tools

    def resolve(self, action: str) -> ToolSpec:
        """The tool an action names.

        Accepts ``bash:run``, ``bash.run``, ``bash_run``, ``bash-run`` and a bare
        ``run`` when only one resource type has a tool of that name.

        Raises:
            ToolNotFound: Nothing matches, or a bare name is ambiguous.
        """
        name = action.strip()
        if name in self._tools:
            return self._tools[name]
        for resource in self._resources:
            for separator in _SEPARATORS:
                prefix = resource + separator
                if name.startswith(prefix):
                    tool = self._tools.get(f"{resource}:{name[len(prefix) :]}")
                    if tool is not None:
                        return tool
        candidates = self._by_simple_name.get(name, [])
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            names = ", ".join(tool.full_name for tool in candidates)
            raise ToolNotFound(f"tool name {name!r} is ambiguous: use one of {names}", tool=name)
        close = difflib.get_close_matches(name, list(self._tools), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; GET /tools lists them"
        raise ToolNotFound(f"no tool named {name!r}{hint}", tool=name)

    def validate_params(self, tool: ToolSpec, params: dict[str, Any]) -> dict[str, Any]:
        """Check `params` against the tool's model; returns them with defaults filled.

        Raises:
            InvalidParams: Naming the first offending field as ``params.<field>``.
        """
        model = _validated(tool.params, params, "params", tool=tool.full_name)
        return model.model_dump(exclude_none=True)

    def drop_unknown(
        self, tool: ToolSpec, params: dict[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        """`params` without those `tool` does not take, and a warning naming each.

        Raises:
            InvalidParams: A name is not text (a lone surrogate): it could not
                even be named in a warning.
        """
        known = tool.params.model_fields
        unknown = [name for name in params if name not in known]
        if not unknown:
            return params, []
        try:
            "".join(unknown).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidParams(
                "params: a parameter name is not valid text", field="params", tool=tool.full_name
            ) from None
        kept = {name: value for name, value in params.items() if name in known}
        warnings = [
            f"params.{name[:100]}: {tool.full_name} takes no such parameter; ignored"
            for name in unknown[:20]
        ]
        if len(unknown) > 20:
            warnings.append(f"... and {len(unknown) - 20} more parameters ignored")
        return kept, warnings

    def validate_config(self, resource: ResourceType, config: dict[str, Any]) -> SessionConfig:
        """Check a session's `config` against its resource type's model.

        Raises:
            InvalidParams: Naming the first offending field as ``config.<field>``.
        """
        return _validated(resource.config_model, config, "config")

    def describe(self) -> list[dict[str, Any]]:
        """Every tool with its description and JSON-schema parameters."""
        return [
            {
                "name": tool.full_name,
                "resource_type": tool.resource_type,
                "description": tool.description,
                "parameters": tool.params.model_json_schema(),
            }
            for tool in self._tools.values()
        ]


def _validated(model: type[M], values: dict[str, Any], root: str, *, tool: str | None = None) -> M:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise invalid_from_errors(errors, root, tool=tool) from None


def invalid_from_errors(
    errors: Sequence[Mapping[str, Any]], root: str, *, tool: str | None = None
) -> InvalidParams:
    """A 1002 error naming the first failing field of pydantic-style `errors`."""
    described = [
        {"field": _dotted(root, error.get("loc", ())), "error": str(error.get("msg", "invalid"))}
        for error in errors
    ] or [{"field": root or "body", "error": "invalid"}]
    first = described[0]
    more = f" (and {len(described) - 1} more)" if len(described) > 1 else ""
    return InvalidParams(
        f"{first['field']}: {first['error']}{more}",
        field=first["field"],
        data={"errors": described},
        tool=tool,
    )


def _dotted(root: str, loc: Iterable[Any]) -> str:
    parts = [root] if root else []
    parts.extend(str(part) for part in loc)
    return ".".join(parts) or root
