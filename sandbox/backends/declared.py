"""Server-side tools made from the agent's declarations (`sandbox.agent.tools`).

Each declared parameter becomes a pydantic field with the same type and bounds,
so ``GET /tools`` publishes the declaration as JSON schema and a call that breaks
it is a 1002 naming the field before anything reaches a container. Parameters the
server supplies itself (`Param.internal`) are left out: a caller naming one gets
the 1002 of any unknown parameter.

Unknown parameters are refused by `ToolParams` (``extra="forbid"``), in that one
place; the declaration knows every name, should unknown ones ever be accepted
and reported instead.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from ..agent.tools import Param, Rule, Shape, ToolDeclaration

_SCALARS: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool}


class ToolParams(BaseModel):
    """Base of every tool's parameter model: unknown parameters are errors."""

    model_config = ConfigDict(extra="forbid")

    rules: ClassVar[tuple[Rule, ...]] = ()
    """The declaration's constraints between parameters."""
    declaration: ClassVar[ToolDeclaration | None] = None
    """What the model was made from."""

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, values: Any) -> Any:
        """The declaration's own rewrites of a call (`ToolDeclaration.normalize`), and
        null for an optional parameter read as absent, as the agent reads it
        (AgentFlow's callers send ``top_k: null`` for the default)."""
        if cls.declaration is None or not isinstance(values, dict):
            return values
        values = dict(cls.declaration.normalize(values))
        for param in cls.declaration.params:
            if not param.required and values.get(param.name, ...) is None:
                del values[param.name]
        return values

    @model_validator(mode="after")
    def _follow_rules(self) -> ToolParams:
        values = self.__dict__
        for rule in self.rules:
            if rule.broken_by(values) is not None:
                raise ValueError(rule.message)
        return self


def params_model(declaration: ToolDeclaration) -> type[ToolParams]:
    """The pydantic model of `declaration`'s parameters (those callers may give)."""
    fields: dict[str, Any] = {
        param.name: _field(param) for param in declaration.params if not param.internal
    }
    name = "".join(part.capitalize() for part in declaration.name.split("_")) + "Params"
    model = create_model(name, __base__=ToolParams, **fields)
    model.rules = declaration.rules
    model.declaration = declaration
    return model


def _field(param: Param) -> tuple[Any, Any]:
    """The annotation and `Field` of one parameter."""
    annotation = _annotation(param)
    kwargs = _constraints(param)
    if param.description:
        kwargs["description"] = param.description
    if param.required:
        return annotation, Field(**kwargs)
    if param.default is None:
        return annotation | None, Field(default=None, **kwargs)
    return annotation, Field(default=param.default, **kwargs)


def _constraints(param: Param) -> dict[str, Any]:
    constraints = {
        "ge": param.minimum,
        "le": param.maximum,
        "gt": param.exclusive_minimum,
        "lt": param.exclusive_maximum,
        "min_length": param.min_length,
        "max_length": param.max_length,
    }
    return {key: value for key, value in constraints.items() if value is not None}


def _annotation(param: Param) -> Any:
    """The Python type pydantic checks a value of `param` against."""
    if param.enum:
        return Literal[param.enum]
    if param.type == "array":
        return list[_item(param.items)]  # type: ignore[misc]
    if param.type == "object":
        if param.shape is not None:
            return _shape_model(param.shape)
        return dict[str, _item(param.values)]  # type: ignore[misc]
    return _SCALARS[param.type]


def _item(param: Param | None) -> Any:
    """The type of a list's items or an object's values, with bounds of their own."""
    if param is None:
        return Any
    constraints = _constraints(param)
    annotation = _annotation(param)
    return Annotated[annotation, Field(**constraints)] if constraints else annotation


@cache
def _shape_model(shape: Shape) -> type[BaseModel]:
    model_config = ConfigDict(extra="forbid")
    fields: dict[str, Any] = {param.name: _field(param) for param in shape.fields}
    return create_model(shape.name, __config__=model_config, __doc__=shape.description, **fields)
