"""Typed access to a call's JSON parameters.

The server validates parameters before calling, but the agent still checks what it
relies on so a bad value is an ``invalid_params`` answer naming the field, never a
crash. Unknown parameters are ignored so an older agent tolerates a newer server.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from typing import Any

from .errors import InvalidParams

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Params:
    """The parameters of one call, read by name and type.

    Args:
        raw: The decoded JSON object of the request body.
    """

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw

    def raw(self) -> Mapping[str, Any]:
        """The parameters as received."""
        return self._raw

    def string(self, name: str, *, default: str | None = None) -> str:
        """A required string (or `default` when absent or null)."""
        value = self._raw.get(name)
        if value is None:
            if default is not None:
                return default
            raise InvalidParams(f"{name} is required", field=name)
        if not isinstance(value, str):
            raise InvalidParams(f"{name} must be a string", field=name)
        return value

    def optional_string(self, name: str) -> str | None:
        """A string, or None when absent or null."""
        value = self._raw.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidParams(f"{name} must be a string or null", field=name)
        return value

    def path(self, name: str) -> str:
        """A non-empty string the OS can take as a path."""
        value = self.string(name)
        if not value:
            raise InvalidParams(f"{name} must not be empty", field=name)
        if "\0" in value:
            raise InvalidParams(f"{name} must not contain NUL characters", field=name)
        return value

    def seconds(self, name: str, *, default: float) -> float:
        """A positive, finite number of seconds (`default` when absent or null)."""
        value = self._raw.get(name)
        if value is None:
            return default
        # bool is an int subclass, and `true` seconds is a caller's bug.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidParams(f"{name} must be a number of seconds", field=name)
        seconds = float(value)
        if not math.isfinite(seconds) or seconds <= 0:
            raise InvalidParams(f"{name} must be a positive number of seconds", field=name)
        return seconds

    def choice(self, name: str, choices: Collection[str], *, default: str) -> str:
        """One of `choices` (`default` when absent or null)."""
        value = self.string(name, default=default)
        if value not in choices:
            allowed = ", ".join(repr(choice) for choice in sorted(choices))
            raise InvalidParams(f"{name} must be one of {allowed}, not {value!r}", field=name)
        return value

    def environment(self, name: str) -> dict[str, str] | None:
        """A mapping of environment variable names to values, or None when absent."""
        value = self._raw.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise InvalidParams(f"{name} must be an object of strings", field=name)
        env: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
                raise InvalidParams(f"{name}: {key!r} is not a valid variable name", field=name)
            if not isinstance(item, str):
                raise InvalidParams(f"{name}: the value of {key} must be a string", field=name)
            if "\0" in item:
                raise InvalidParams(f"{name}: the value of {key} contains NUL", field=name)
            env[key] = item
        return env


def encode_text(text: str) -> bytes:
    """`text` from a request as UTF-8, never failing.

    JSON can carry lone surrogates: those from undecodable bytes (surrogateescape)
    become those bytes again; any other is replaced rather than refused.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")
