"""Reading the free-form objects of task files (step parameters, getter configs).

OSWorld's files are loose JSON; `Fields` reads one object's values by type and
names the offending field (``steps.2.parameters.command``) when one is wrong.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidParams


class Fields:
    """One JSON object of a task file and where it sits in the call.

    Args:
        raw: The object (anything else is refused, naming `where`).
        where: Its path in the call's parameters (``evaluator.result``).
    """

    def __init__(self, raw: Any, where: str) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise InvalidParams(f"{where} must be an object", field=where)
        self.raw: Mapping[str, Any] = raw
        self.where = where

    def at(self, name: str) -> str:
        """The path of field `name`."""
        return f"{self.where}.{name}" if self.where else name

    def refuse(self, name: str, text: str) -> InvalidParams:
        """An error naming field `name`."""
        return InvalidParams(f"{self.at(name)} {text}", field=self.at(name))

    def string(self, name: str, default: str | None = None) -> str:
        """A string field; required when `default` is None."""
        value = self.raw.get(name)
        if value is None:
            if default is None:
                raise self.refuse(name, "is required")
            return default
        if not isinstance(value, str):
            raise self.refuse(name, "must be a string")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        """A boolean field."""
        value = self.raw.get(name, default)
        if not isinstance(value, bool):
            raise self.refuse(name, "must be true or false")
        return value

    def number(
        self, name: str, default: float | None = None, *, maximum: float = math.inf
    ) -> float:
        """A finite number from 0 to `maximum`; required when `default` is None."""
        value = self.raw.get(name)
        if value is None:
            if default is None:
                raise self.refuse(name, "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.refuse(name, "must be a number")
        if not math.isfinite(value) or not 0 <= value <= maximum:
            raise self.refuse(name, f"is {value}: it must be between 0 and {maximum:g}")
        return float(value)

    def command(self, name: str = "command") -> str:
        """A command line for bash: a string, or OSWorld's argument list (quoted here)."""
        value = self.raw.get(name)
        if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
            # shell: true with a list is OSWorld's way of passing one shell line.
            if self.raw.get("shell") is True and len(value) == 1:
                line: str = value[0]
                return line
            return shlex.join(value)
        if isinstance(value, str) and value.strip():
            return value
        if value is None:
            raise self.refuse(name, "is required")
        raise self.refuse(name, "must be a command line or a non-empty list of arguments")

    def objects(self, name: str) -> list[Fields]:
        """A list of objects (or one object, taken as a list of one)."""
        value = self.raw.get(name)
        if value is None:
            raise self.refuse(name, "is required")
        if isinstance(value, Mapping):
            return [Fields(value, self.at(name))]
        if not isinstance(value, list) or not value:
            raise self.refuse(name, "must be an object or a non-empty list of objects")
        return [Fields(item, f"{self.at(name)}.{index}") for index, item in enumerate(value)]
