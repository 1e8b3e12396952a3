"""Server and agent agree on every tool of every resource type.

Both sides are made from one declaration per tool (`sandbox.agent.tools`): these
tests prove the agent's toolsets implement exactly the declared tools, that each
resource type offers exactly its toolsets' public tools in its namespace, and
that the server's models accept the same values as the agent's check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.agent import AgentContext, Toolset
from sandbox.agent.desktop.session import DesktopSettings
from sandbox.agent.errors import InvalidParams as AgentInvalidParams
from sandbox.agent.rag.settings import RagSettings
from sandbox.agent.registry import load_toolset
from sandbox.agent.tools import TOOLSETS, Param, ToolDeclaration
from sandbox.agent.toolsets.desktop import DesktopToolset
from sandbox.agent.toolsets.rag import RagToolset
from sandbox.backends import RESOURCE_TYPES, ResourceType
from sandbox.errors import InvalidParams
from sandbox.sessions.registry import ToolRegistry
from tests.unit.agent.desktop_fakes import FakeDesktop

REGISTRY = ToolRegistry(RESOURCE_TYPES)
PUBLIC = [
    declaration
    for declarations in TOOLSETS.values()
    for declaration in declarations
    if not declaration.internal
]


@contextlib.contextmanager
def running_toolset(name: str, tmp_path: Path) -> Iterator[Toolset]:
    """The agent's toolset `name`, made as in a container but without X or Docker."""
    context = AgentContext(
        home=str(tmp_path), state_dir=str(tmp_path), output_limit=1 << 16, child_env={}
    )
    toolset: Toolset
    if name == "desktop":
        toolset = DesktopToolset(context, DesktopSettings(), desktop=FakeDesktop())  # type: ignore[arg-type]
    elif name == "rag":
        toolset = RagToolset(RagSettings(db=str(tmp_path / "index.sqlite3"), corpus=None))
    else:
        toolset = load_toolset(name, context)
    try:
        yield toolset
    finally:
        toolset.close()


@pytest.mark.parametrize("name", sorted(TOOLSETS))
def test_each_toolset_implements_exactly_its_declared_tools(name: str, tmp_path: Path) -> None:
    declared = TOOLSETS[name]
    with running_toolset(name, tmp_path) as toolset:
        tools = {tool.name: tool for tool in toolset.tools()}
    assert sorted(tools) == sorted(declaration.agent_name for declaration in declared)
    for declaration in declared:
        assert tools[declaration.agent_name].description == declaration.description


@pytest.mark.parametrize("resource", RESOURCE_TYPES, ids=lambda resource: resource.name)
def test_each_resource_type_offers_its_toolsets_public_tools(
    resource: ResourceType, tmp_path: Path
) -> None:
    declared = [
        declaration
        for toolset in resource.toolsets
        for declaration in TOOLSETS[toolset]
        if declaration.namespace == resource.name and not declaration.internal
    ]
    assert declared, f"{resource.name} offers no tool"
    assert [tool.full_name for tool in resource.tools] == [d.full_name for d in declared]
    agent_tools: set[str] = set()
    for toolset in resource.toolsets:
        with running_toolset(toolset, tmp_path / toolset) as running:
            agent_tools.update(tool.name for tool in running.tools())
    for tool, declaration in zip(resource.tools, declared, strict=True):
        assert tool.agent_tool == declaration.agent_name
        assert tool.agent_tool in agent_tools
        assert tool.description == declaration.description
        assert tool.timeout_param == ("timeout" in {param.name for param in declaration.params})


@pytest.mark.parametrize(
    "resource", [r for r in RESOURCE_TYPES if r.shared], ids=lambda resource: resource.name
)
def test_a_shared_service_has_the_tools_the_server_runs_it_with(resource: ResourceType) -> None:
    internal = {
        declaration.name
        for toolset in resource.toolsets
        for declaration in TOOLSETS[toolset]
        if declaration.internal and declaration.namespace == resource.name
    }
    # sandbox/sessions/service_sessions.py calls these as f"{resource.name}.<tool>".
    assert {"open_session", "close_session", "sessions", "status"} <= internal


def test_every_agent_has_the_meta_tool_pool_claims_use() -> None:
    assert [declaration.agent_name for declaration in TOOLSETS["agent"]] == ["agent.meta"]


# -- the server's models and the agent's check accept the same values -----------------


def sample(param: Param) -> Any:
    """A value `param` accepts."""
    if param.enum:
        return param.enum[-1]
    if param.type == "string":
        return "a" * max(1, param.min_length or 0)
    if param.type in ("integer", "number"):
        low = param.minimum if param.minimum is not None else param.exclusive_minimum
        value = 1 if low is None else low + 1
        return int(value) if param.type == "integer" else float(value)
    if param.type == "boolean":
        return True
    if param.type == "array":
        assert param.items is not None
        return [sample(param.items)] * max(1, param.min_length or 0)
    if param.shape is not None:
        return {field.name: sample(field) for field in param.shape.fields if field.required}
    return {"NAME": sample(param.values)} if param.values is not None else {}


def candidates(param: Param) -> list[Any]:
    """Values of `param`'s JSON type at and beyond each of its bounds."""
    if param.type == "boolean":
        return [True, False]
    if param.type in ("integer", "number"):
        step = 1 if param.type == "integer" else 0.5
        values: list[Any] = [0, 1, -1, 2.0, 2.5]
        for bound in (param.minimum, param.maximum):
            if bound is not None:
                values += [bound - step, bound, bound + step]
        for bound in (param.exclusive_minimum, param.exclusive_maximum):
            if bound is not None:
                values += [bound - step, bound, bound + step]
        return values
    if param.type == "string":
        values = ["", "a", *param.enum, "not-a-choice"]
        for bound in (param.min_length, param.max_length):
            if bound is not None:
                values += ["a" * max(0, bound - 1), "a" * bound, "a" * (bound + 1)]
        return values
    if param.type == "array":
        assert param.items is not None
        item = sample(param.items)
        values = [[], [item]]
        for bound in (param.min_length, param.max_length):
            if bound is not None:
                values += [[item] * max(0, bound - 1), [item] * bound, [item] * (bound + 1)]
        if param.items.shape is not None:
            values += [[{**item, field.name: ""}] for field in param.items.shape.fields]
            values += [[{}]]
        return values
    return [{}, sample(param), {"A": 1}, {"A": "b"}]


def server_accepts(declaration: ToolDeclaration, params: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return REGISTRY.validate_params(REGISTRY.resolve(declaration.full_name), params)
    except InvalidParams:
        return None


def agent_accepts(declaration: ToolDeclaration, params: dict[str, Any]) -> bool:
    try:
        declaration.check(params)
    except AgentInvalidParams:
        return False
    return True


def valid_call(declaration: ToolDeclaration) -> dict[str, Any]:
    """The required parameters, and the first of those a rule wants exactly one of."""
    by_name = {param.name: param for param in declaration.params}
    call = {param.name: sample(param) for param in declaration.params if param.required}
    for rule in declaration.rules:
        if rule.kind == "exactly_one":
            call[rule.names[0]] = sample(by_name[rule.names[0]])
    return call


def cases(declaration: ToolDeclaration) -> Iterator[dict[str, Any]]:
    """Calls with every public parameter at and beyond its bounds, one at a time."""
    public = [param for param in declaration.params if not param.internal]
    base = valid_call(declaration)
    assert server_accepts(declaration, base) is not None
    yield base
    yield {}
    for param in public:
        for value in candidates(param):
            yield {**base, param.name: value}
    for rule in declaration.rules:
        names = rule.names
        by_name = {param.name: param for param in public}
        for count in range(len(names) + 1):
            yield {**base, **{name: sample(by_name[name]) for name in names[:count]}}


@pytest.mark.parametrize("declaration", PUBLIC, ids=lambda declaration: declaration.full_name)
def test_server_and_agent_accept_the_same_calls(declaration: ToolDeclaration) -> None:
    disagreements = []
    for params in cases(declaration):
        passed = server_accepts(declaration, params)
        if (passed is not None) != agent_accepts(declaration, params):
            disagreements.append(params)
        elif passed is not None:
            # What the server sends on is what the agent then checks.
            assert agent_accepts(declaration, passed), passed
    shown = [{key: str(value)[:40] for key, value in case.items()} for case in disagreements]
    assert not disagreements, shown


@pytest.mark.parametrize("declaration", PUBLIC, ids=lambda declaration: declaration.full_name)
def test_the_server_refuses_what_the_server_supplies(declaration: ToolDeclaration) -> None:
    for param in declaration.params:
        if param.internal:
            assert server_accepts(declaration, {param.name: sample(param)}) is None


@pytest.mark.parametrize("declaration", PUBLIC, ids=lambda declaration: declaration.full_name)
def test_unknown_parameters_are_refused_by_the_server_and_ignored_by_the_agent(
    declaration: ToolDeclaration,
) -> None:
    # The agent ignores them so that an older agent works with a newer server.
    base = valid_call(declaration)
    assert server_accepts(declaration, {**base, "unknown": 1}) is None
    assert agent_accepts(declaration, {**base, "unknown": 1})
