"""What a tool declaration is, and how the agent checks a call against it.

A `ToolDeclaration` names a tool, describes it and lists its `Param`s, each with
its JSON type and bounds; `Rule`s tie parameters together (both or neither,
exactly one). The server turns a declaration into a pydantic model, its JSON
schema and its 1002 answers (`sandbox/backends/declared.py`); the agent checks
each call with `ToolDeclaration.check` before the tool runs, so both sides
enforce the same bounds from the same text.

The agent's check answers ``invalid_params`` naming the field (``x``,
``keys.1``, ``documents.3.text``); parameters the declaration does not name are
left out of what the tool sees, so an older agent tolerates a newer server.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError, InvalidParams
from ..params import Params
from ..registry import Tool, ToolHandler

JsonType = Literal["string", "integer", "number", "boolean", "array", "object"]


@dataclass(frozen=True)
class Shape:
    """An object with named fields, such as one document of ``rag.index``.

    Attributes:
        name: What the server calls its model (the JSON schema's ``$defs`` key).
        description: One line on what the object is.
        fields: Its fields; unknown ones are errors at the server.
    """

    name: str
    description: str
    fields: tuple[Param, ...]


@dataclass(frozen=True)
class Param:
    """One parameter of a tool (or an item of a list, a field of an object).

    Attributes:
        name: The key in the call's JSON object.
        type: Its JSON type.
        description: One line for callers (the JSON schema's ``description``).
        required: A call without it (or with null) is refused.
        default: Its value when absent; None: absent stays absent.
        enum: The only strings allowed.
        minimum: Smallest number allowed.
        maximum: Largest number allowed.
        exclusive_minimum: Numbers must be greater.
        exclusive_maximum: Numbers must be less.
        min_length: Fewest characters of a string, items of a list.
        max_length: Most characters of a string, items of a list.
        items: What each item of a list is.
        values: What each value of an object with free keys is.
        shape: The fields of an object with named fields.
        per_item: The tool checks each item itself and answers a bad one alone
            (a batch): the agent checks only the list.
        internal: The server supplies it (a shared service's ``session``); callers
            may not, and the published schema leaves it out.
        list_into: A list given here is taken as the list parameter this names
            (AgentFlow's callers send ``vm:pyautogui`` ``command`` as a list of
            programs, which is our ``commands``); see `ToolDeclaration.normalize`.
    """

    name: str
    type: JsonType
    description: str = ""
    required: bool = False
    default: Any = None
    enum: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    items: Param | None = None
    values: Param | None = None
    shape: Shape | None = None
    per_item: bool = False
    internal: bool = False
    list_into: str | None = None

    def check(self, value: Any, where: str) -> Any:
        """`value` (not None) if it fits this parameter, as the tool should see it.

        Integral floats become ints for ``integer``, numbers floats for ``number``.

        Raises:
            InvalidParams: Naming `where` (or an item or field below it).
        """
        return _CHECKS[self.type](self, value, where)

    def bounds_text(self) -> str:
        """The allowed range in words: ``between 0 and 30``, ``less than 7680``."""
        if self.minimum is not None and self.maximum is not None:
            return f"between {_number(self.minimum)} and {_number(self.maximum)}"
        parts = []
        if self.minimum is not None:
            parts.append(f"at least {_number(self.minimum)}")
        if self.exclusive_minimum is not None:
            parts.append(f"greater than {_number(self.exclusive_minimum)}")
        if self.maximum is not None:
            parts.append(f"at most {_number(self.maximum)}")
        if self.exclusive_maximum is not None:
            parts.append(f"less than {_number(self.exclusive_maximum)}")
        return " and ".join(parts)


@dataclass(frozen=True)
class Rule:
    """A constraint between parameters, checked after each one alone.

    Attributes:
        kind: ``together``: all of `names` or none; ``exactly_one``: one of them.
        names: The parameters it ties.
        message: What the caller should do, for a person.
    """

    kind: Literal["together", "exactly_one"]
    names: tuple[str, ...]
    message: str

    def broken_by(self, values: Mapping[str, Any]) -> str | None:
        """The parameter to name if `values` break the rule, else None."""
        given = [name for name in self.names if values.get(name) is not None]
        if self.kind == "together":
            if given and len(given) < len(self.names):
                return next(name for name in self.names if name not in given)
            return None
        if len(given) != 1:
            return self.names[0]
        return None


@dataclass(frozen=True)
class WhenParam:
    """Calls whose parameter `name` is one of `values` (``action: screenshot``)."""

    name: str
    values: tuple[str, ...]

    def holds(self, params: Mapping[str, Any]) -> bool:
        """Whether the call with `params` is one of them."""
        return params.get(self.name) in self.values


@dataclass(frozen=True)
class ToolDeclaration:
    """One tool, as both the server and the agent know it.

    Attributes:
        namespace: The resource type whose tool it is (``vm``), or ``agent``.
        name: The tool's own name (``click``).
        description: What it does and returns, for callers (``GET /tools``).
        params: Its parameters, in the order the schema lists them.
        rules: Constraints between parameters.
        internal: The server's own plumbing (``rag.open_session``): the agent
            has it, but the server does not offer it to callers.
        replay_fields: The result fields that the same calls in a fresh session
            give again (the tool is deterministic in them), which ``sandbox
            trajectories replay`` compares; empty: a replay compares only the
            result's code (a screenshot, a timing, a search over a changing corpus).
        observes: Its result is an observation of the session itself, or records
            them (a screenshot, the tree, a screen recording): True for every call,
            a `WhenParam` for the calls it picks. A session's ``observation`` option
            adds nothing to such a call's result.
    """

    namespace: str
    name: str
    description: str
    params: tuple[Param, ...] = ()
    rules: tuple[Rule, ...] = ()
    internal: bool = False
    replay_fields: tuple[str, ...] = ()
    observes: bool | WhenParam = False
    _names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", frozenset(param.name for param in self.params))
        for rule in self.rules:
            unknown = set(rule.names) - self._names
            if unknown:
                raise ValueError(f"{self.agent_name}: a rule names unknown {sorted(unknown)}")
        for param in self.params:
            if param.list_into is not None and param.list_into not in self._names:
                raise ValueError(f"{self.agent_name}: {param.name} lists into unknown name")
        if isinstance(self.observes, WhenParam) and self.observes.name not in self._names:
            raise ValueError(f"{self.agent_name}: observes names unknown {self.observes.name}")

    @property
    def agent_name(self) -> str:
        """The agent's name of the tool (``vm.click``)."""
        return f"{self.namespace}.{self.name}"

    @property
    def full_name(self) -> str:
        """The server's canonical name of the tool (``vm:click``)."""
        return f"{self.namespace}:{self.name}"

    def observes_in(self, params: Mapping[str, Any]) -> bool:
        """Whether the call with `params` is an observation (`observes`)."""
        return self.observes if isinstance(self.observes, bool) else self.observes.holds(params)

    @property
    def takes_timeout(self) -> bool:
        """Whether the tool has a ``timeout`` parameter (the server fills it in)."""
        return "timeout" in self._names

    def normalize(self, raw: Mapping[str, Any]) -> Mapping[str, Any]:
        """`raw` with each list given for a `Param.list_into` parameter moved to the
        list parameter it names (unless that one is given too: then the list stays
        and fails the check, naming it)."""
        moved: dict[str, Any] | None = None
        for param in self.params:
            value = raw.get(param.name)
            if param.list_into and isinstance(value, list) and param.list_into not in raw:
                moved = dict(raw) if moved is None else moved
                moved[param.list_into] = moved.pop(param.name)
        return raw if moved is None else moved

    def check(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """The declared parameters of `raw`, each checked, defaults filled in.

        Raises:
            InvalidParams: Naming the first parameter at fault.
        """
        values = _check_fields(self.params, self.normalize(raw), "")
        for rule in self.rules:
            broken = rule.broken_by(values)
            if broken is not None:
                raise InvalidParams(rule.message, field=broken)
        return values


def bind(
    declarations: Iterable[ToolDeclaration],
    handlers: Mapping[str, ToolHandler],
    wrap: Callable[[str, ToolHandler], ToolHandler] | None = None,
) -> tuple[Tool, ...]:
    """The agent's tools: each declared tool's handler, behind its declaration's check.

    Args:
        declarations: The tools a toolset declares.
        handlers: The toolset's handler of each, by the tool's own name (``click``).
        wrap: Called with each name and handler; returns what runs a call once its
            parameters passed the check (the desktop waits for its window manager).

    Raises:
        ConfigError: A declared tool has no handler, or a handler no declaration.
    """
    declared = {declaration.name: declaration for declaration in declarations}
    if set(declared) != set(handlers):
        missing = sorted(set(declared) - set(handlers))
        extra = sorted(set(handlers) - set(declared))
        raise ConfigError(f"tools declared but not implemented: {missing}; undeclared: {extra}")
    tools = []
    for name, declaration in declared.items():
        handler = handlers[name] if wrap is None else wrap(name, handlers[name])
        tools.append(
            Tool(declaration.agent_name, _checked(declaration, handler), declaration.description)
        )
    return tuple(tools)


def _checked(declaration: ToolDeclaration, handler: ToolHandler) -> ToolHandler:
    def run(params: Params) -> dict[str, Any]:
        return handler(Params(declaration.check(params.raw())))

    return run


def _check_fields(params: Iterable[Param], raw: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for param in params:
        value = raw.get(param.name)
        if value is None:
            if param.required:
                where = prefix + param.name
                raise InvalidParams(f"{where} is required", field=where)
            if param.default is not None:
                values[param.name] = param.default
            continue
        values[param.name] = param.check(value, prefix + param.name)
    return values


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _refuse(where: str, text: str) -> InvalidParams:
    return InvalidParams(f"{where} {text}", field=where)


def _check_length(param: Param, length: int, where: str, unit: str) -> None:
    if param.min_length is not None and length < param.min_length:
        if param.min_length == 1:
            raise _refuse(where, "must not be empty")
        raise _refuse(where, f"must hold at least {param.min_length} {unit}")
    if param.max_length is not None and length > param.max_length:
        raise _refuse(where, f"holds {length} {unit}; at most {param.max_length} are allowed")


def _check_bounds(param: Param, value: float, where: str) -> None:
    if (
        (param.minimum is not None and value < param.minimum)
        or (param.maximum is not None and value > param.maximum)
        or (param.exclusive_minimum is not None and value <= param.exclusive_minimum)
        or (param.exclusive_maximum is not None and value >= param.exclusive_maximum)
    ):
        raise _refuse(where, f"is {_number(value)}: it must be {param.bounds_text()}")


def _string(param: Param, value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _refuse(where, "must be a string")
    if param.enum and value not in param.enum:
        allowed = ", ".join(repr(choice) for choice in sorted(param.enum))
        raise _refuse(where, f"must be one of {allowed}, not {value!r}")
    _check_length(param, len(value), where, "characters")
    return value


def _integer(param: Param, value: Any, where: str) -> int:
    # bool is an int subclass, and `true` pixels is a caller's bug.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _refuse(where, "must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise _refuse(where, f"must be an integer, not {value}")
        value = int(value)
    _check_bounds(param, value, where)
    return int(value)


def _float(param: Param, value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _refuse(where, "must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise _refuse(where, "must be a finite number")
    _check_bounds(param, number, where)
    return number


def _boolean(param: Param, value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _refuse(where, "must be true or false")
    return value


def _array(param: Param, value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _refuse(where, "must be a list")
    _check_length(param, len(value), where, "items")
    item = param.items
    if item is None or param.per_item:
        return value
    return [item.check(each, f"{where}.{index}") for index, each in enumerate(value)]


def _object(param: Param, value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _refuse(where, "must be an object")
    if param.shape is not None:
        return _check_fields(param.shape.fields, value, f"{where}.")
    if param.values is not None:
        each = param.values
        return {key: each.check(item, f"{where}.{key}") for key, item in value.items()}
    return value


_CHECKS: dict[str, Callable[[Param, Any, str], Any]] = {
    "string": _string,
    "integer": _integer,
    "number": _float,
    "boolean": _boolean,
    "array": _array,
    "object": _object,
}
