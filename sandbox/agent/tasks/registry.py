"""A name -> function table for step types, getters and metrics.

Adding one is a decorator on the function::

    @METRICS.register("exact_match")
    def exact_match(result, expected, options): ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from ..errors import InvalidParams

F = TypeVar("F", bound=Callable[..., object])


class Registry(Generic[F]):
    """Functions of one kind (``getter``, ``metric``, ``step type``) by name.

    Args:
        kind: What the functions are, for error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._functions: dict[str, F] = {}

    def register(self, *names: str) -> Callable[[F], F]:
        """A decorator registering its function under each of `names`.

        Raises:
            ValueError: A name is taken already (two modules claiming one name).
        """

        def add(function: F) -> F:
            for name in names:
                if name in self._functions:
                    raise ValueError(f"{self.kind} {name!r} is registered twice")
                self._functions[name] = function
            return function

        return add

    @property
    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._functions)

    def get(self, name: object, field: str) -> F:
        """The function called `name`.

        Raises:
            InvalidParams: `name` is not a string or not registered (naming `field`).
        """
        if not isinstance(name, str):
            raise InvalidParams(f"{field} must be a {self.kind} name (a string)", field=field)
        function = self._functions.get(name)
        if function is None:
            known = ", ".join(self.names)
            raise InvalidParams(
                f"{field}: unknown {self.kind} {name!r} (known: {known})", field=field
            )
        return function
