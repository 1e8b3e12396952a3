"""Parameters several toolsets share."""

from __future__ import annotations

from .spec import Param

MAX_TIMEOUT_S = 86_400
"""Longest ``timeout`` a call may ask for: a day."""


def timeout(description: str) -> Param:
    """The optional ``timeout`` of a tool that runs a program: seconds, at most a day.

    The server always sends it (the call's own timeout when the caller gives none)
    and answers 2002 when it passes.
    """
    return Param(
        "timeout",
        "number",
        description,
        exclusive_minimum=0,
        maximum=MAX_TIMEOUT_S,
    )
