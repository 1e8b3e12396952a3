"""Read the desktop's accessibility tree through AT-SPI: run as the session user.

The agent runs this file as a script (``python3 -I a11y_reader.py``) as the
session user, never in its own process: the AT-SPI bus is the session user's
(it authenticates peers by uid), and what the session's programs say about
themselves is theirs to make up, so the agent only parses the JSON printed here,
bounded in bytes and time. One reader serves a whole session (importing gi and
Atspi is most of a read's cost): each request is one line of JSON caps on stdin::

    {"max_depth": 30, "max_nodes": 1000, "max_children": 100,
     "max_text": 1000, "showing_only": true, "deadline_s": 5.0}

and each answer one line on stdout::

    {"ok": true, "tree": {"role": "desktop frame", "name": "main", "text": "",
     "states": [], "position": [0, 0], "size": [1280, 800], "children": [...]},
     "nodes": 42, "truncated": {"depth": false, "nodes": false,
     "children": false, "time": false}}

or ``{"ok": false, "stage": "import" | "bus" | "request", "message": ...}``. The
reader ends at end of input. Nothing read is kept from one request to the next:
AT-SPI's cache is dropped and its pending events handled before each walk.

The walk (`walk`) knows nothing of AT-SPI: it asks `Node` objects, which the
unit tests fake. Imports nothing of the agent's package.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

_T = TypeVar("_T")

_NOT_SHOWN_KEPT = frozenset({"application", "desktop frame"})
"""Roles that are never ``showing`` yet hold every window: the desktop's children
(depth 1) of these roles are kept whatever their states."""


class Node(Protocol):
    """One accessible object as the walk sees it."""

    def states(self) -> list[str]:
        """Its states (``showing``: on the screen)."""

    def role(self) -> str:
        """Its role."""

    def info(self, max_text: int) -> dict[str, Any]:
        """``role``, ``name``, ``text``, ``states``, ``position``, ``size``."""

    def child_count(self) -> int:
        """How many children it has."""

    def child(self, index: int) -> Node | None:
        """Its `index`-th child (None if it went away meanwhile)."""


class _Walk:
    def __init__(self, caps: dict[str, Any]) -> None:
        self.max_depth = int(caps.get("max_depth", 30))
        self.max_nodes = int(caps.get("max_nodes", 1000))
        self.max_children = int(caps.get("max_children", 100))
        self.max_text = int(caps.get("max_text", 1000))
        self.showing_only = bool(caps.get("showing_only", True))
        self.deadline = time.monotonic() + float(caps.get("deadline_s", 5.0))
        self.nodes = 0
        self.truncated = {"depth": False, "nodes": False, "children": False, "time": False}

    def visit(self, node: Node, depth: int) -> dict[str, Any] | None:
        # States first, the role only for a desktop's child that is not showing
        # (an application): a hidden widget's other fields, and deeper down its
        # role, are never asked for (each is a D-Bus round trip, and pages and
        # menus hide many).
        if (
            depth > 0
            and self.showing_only
            and "showing" not in node.states()
            and (depth > 1 or node.role() not in _NOT_SHOWN_KEPT)
        ):
            return None  # an unmapped widget: it and all below it are off the screen
        info = node.info(self.max_text)
        self.nodes += 1
        children: list[dict[str, Any]] = []
        info["children"] = children
        count = node.child_count()
        if count and depth >= self.max_depth:
            self.truncated["depth"] = True
            return info
        if count > self.max_children:
            self.truncated["children"] = True
        for child in self._children(node, min(count, self.max_children)):
            if self.nodes >= self.max_nodes:
                self.truncated["nodes"] = True
                break
            if time.monotonic() >= self.deadline:
                self.truncated["time"] = True
                break
            shown = self.visit(child, depth + 1)
            if shown is not None:
                children.append(shown)
        return info

    @staticmethod
    def _children(node: Node, count: int) -> Iterator[Node]:
        for index in range(count):
            child = node.child(index)
            if child is not None:
                yield child


def walk(root: Node, caps: dict[str, Any]) -> dict[str, Any]:
    """The tree under `root` within `caps`, as the answer's JSON object.

    `root` counts as depth 0 and is always shown.
    """
    state = _Walk(caps)
    tree = state.visit(root, 0)
    assert tree is not None
    return {"ok": True, "tree": tree, "nodes": state.nodes, "truncated": state.truncated}


class AtspiNode:
    """A `Node` over an ``Atspi.Accessible`` (python3-gi's bindings of libatspi).

    Every getter may fail when the program behind the object exits or stalls
    mid-walk: a failed field reads as empty, a failed child as absent.
    """

    def __init__(self, atspi: Any, accessible: Any) -> None:
        self._atspi = atspi
        self._accessible = accessible
        self._states: list[str] | None = None
        self._role: str | None = None

    def states(self) -> list[str]:
        """Its states, read once."""
        if self._states is None:
            self._states = self._read_states()
        return self._states

    def role(self) -> str:
        """Its role name, read once."""
        if self._role is None:
            self._role = self._safe(self._accessible.get_role_name, "")
        return self._role

    def info(self, max_text: int) -> dict[str, Any]:
        """The object's fields, each empty when AT-SPI does not answer."""
        return {
            "role": self.role(),
            "name": self._safe(self._accessible.get_name, "")[:max_text],
            "text": self._text(max_text),
            "states": self.states(),
            **self._extents(),
        }

    def child_count(self) -> int:
        """How many children AT-SPI reports."""
        count = self._safe(self._accessible.get_child_count, 0)
        return count if isinstance(count, int) and count > 0 else 0

    def child(self, index: int) -> AtspiNode | None:
        """The `index`-th child, or None."""
        child = self._safe(lambda: self._accessible.get_child_at_index(index), None)
        return AtspiNode(self._atspi, child) if child is not None else None

    def _text(self, max_text: int) -> str:
        acc = self._accessible
        if self._safe(acc.get_text_iface, None) is None:
            return ""
        text = self._atspi.Text

        def read() -> str:
            count = min(int(text.get_character_count(acc)), max_text)
            return str(text.get_text(acc, 0, count)) if count > 0 else ""

        return self._safe(read, "")[:max_text]

    def _read_states(self) -> list[str]:
        def read() -> list[str]:
            states = self._accessible.get_state_set().get_states()
            return sorted(str(state.value_nick) for state in states)

        return self._safe(read, [])

    def _extents(self) -> dict[str, list[int]]:
        acc = self._accessible
        if self._safe(acc.get_component_iface, None) is None:
            return {"position": [], "size": []}

        def read() -> dict[str, list[int]]:
            rect = self._atspi.Component.get_extents(acc, self._atspi.CoordType.SCREEN)
            return {"position": [rect.x, rect.y], "size": [rect.width, rect.height]}

        return self._safe(read, {"position": [], "size": []})

    @staticmethod
    def _safe(get: Callable[[], Any], default: _T) -> _T:
        try:
            value = get()
        except Exception:
            return default
        return default if value is None else value


def main() -> None:
    """Answer each line of caps on stdin with the desktop's tree, until end of input."""
    failure: dict[str, Any] = {}
    try:
        # Through importlib: python3-gi is the image's, not the development venv's.
        importlib.import_module("gi").require_version("Atspi", "2.0")
        atspi: Any = importlib.import_module("gi.repository.Atspi")
        glib: Any = importlib.import_module("gi.repository.GLib")
    except Exception as exc:
        atspi = glib = None
        failure = {"ok": False, "stage": "import", "message": f"{type(exc).__name__}: {exc}"}
    for line in sys.stdin.buffer:
        try:
            caps = json.loads(line)
            if not isinstance(caps, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            _answer({"ok": False, "stage": "request", "message": f"bad caps: {exc}"})
            continue
        _answer(failure if atspi is None else read_desktop(atspi, glib, caps))


def read_desktop(atspi: Any, glib: Any, caps: dict[str, Any]) -> dict[str, Any]:
    """The desktop's tree within `caps`, read afresh (nothing cached from an earlier read)."""
    try:
        # Each call waits at most this long for a program that stalls (ms).
        atspi.set_timeout(int(min(float(caps.get("deadline_s", 5.0)), 5.0) * 1000), -1)
        desktop = atspi.get_desktop(0)
        # Events queued since the last read (windows opened, names changed) are
        # handled, and what libatspi cached of the tree is forgotten, so the walk
        # asks every program again as a new reader would.
        context = glib.MainContext.default()
        for _ in range(10_000):
            if not context.iteration(False):
                break
        desktop.clear_cache()
    except Exception as exc:
        return {"ok": False, "stage": "bus", "message": f"{type(exc).__name__}: {exc}"}
    return walk(AtspiNode(atspi, desktop), caps)


def _answer(answer: dict[str, Any]) -> None:
    # One line: JSON escapes newlines inside strings; "replace" for a lone surrogate.
    line = json.dumps(answer, ensure_ascii=False) + "\n"
    sys.stdout.buffer.write(line.encode("utf-8", "replace"))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
