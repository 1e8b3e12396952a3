"""Read the desktop's accessibility tree over the AT-SPI bus: run as the session user.

The agent runs this file as a script (``python3 -E -s a11y_reader.py``) as the
session user, never in its own process: the AT-SPI bus is the session user's
(it authenticates peers by uid), and what the session's programs say about
themselves is theirs to make up, so the agent only parses the JSON printed here,
bounded in bytes and time. One reader serves a whole session (reading libatspi's
names through gi is most of its start-up): each request is one line of JSON caps on stdin::

    {"max_depth": 30, "max_nodes": 1000, "max_children": 100,
     "max_text": 1000, "showing_only": true, "deadline_s": 5.0}

and each answer one line on stdout::

    {"ok": true, "tree": {"role": "desktop frame", "name": "main", "text": "",
     "states": [], "position": [0, 0], "size": [1280, 800], "children": [...]},
     "nodes": 42, "truncated": {"depth": false, "nodes": false,
     "children": false, "time": false}}

or ``{"ok": false, "stage": "import" | "bus" | "request", "message": ...}``. The
reader ends at end of input. Nothing of the tree is kept from one request to the
next (only the connections, and which program answers on which).

Why not libatspi's getters: each is one blocking D-Bus round trip, and a desktop
with Chromium open takes ~1,800 of them; where an idle CPU sleeps deeply between
messages (a VM without halt polling), every one pays a wake-up. The walk here
goes a level at a time and asks about every node of a level at once
(`atspi_bus.BusDesktop`: every call of a batch sent before any answer is awaited,
straight to each program where it can be), so a read costs a few batches per
level of the tree.

The walk (`walk`) knows nothing of D-Bus: it asks a `Desktop`, which the unit
tests fake. Imports only its siblings `atspi_bus`, `dbus_wire` and `dbus_codec`,
none of the agent's package (run as a script, they are found beside it).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if __package__:
    from . import atspi_bus, dbus_wire
else:  # run as a script, as the agent does: this file's directory is sys.path[0]
    import atspi_bus  # type: ignore[import-not-found,no-redef]
    import dbus_wire  # type: ignore[import-not-found,no-redef]
if TYPE_CHECKING:
    from .atspi_bus import Read

_NOT_SHOWN_KEPT = frozenset({"application", "desktop frame"})
"""Roles that are never ``showing`` yet hold every window: the desktop's children
(depth 1) of these roles are kept whatever their states."""


class Desktop(Protocol):
    """The accessible objects as the walk sees them: nodes are opaque references,
    and each method answers for a whole batch of them at once."""

    @property
    def late(self) -> bool:
        """Whether a program left questions unanswered in time (what it holds is
        missing from the answers)."""

    def root(self) -> Any:
        """The desktop's own reference."""

    def states(self, nodes: Sequence[Any]) -> list[list[str]]:
        """Each node's states (``showing``: on the screen); [] for one gone."""

    def roles(self, nodes: Sequence[Any]) -> list[str]:
        """Each node's role name; "" for one gone."""

    def read(self, nodes: Sequence[Any], max_text: int, max_children: int) -> list[Read | None]:
        """Each node's fields and first children (`nodes` distinct); None for one gone."""


_Entry = tuple[Any, list[Any]]
"""A node to visit, and the children list of its parent's answer it goes into."""


class _Walk:
    def __init__(self, caps: dict[str, Any], deadline: float) -> None:
        self.max_depth = int(caps.get("max_depth", 30))
        self.max_nodes = int(caps.get("max_nodes", 1000))
        self.max_children = int(caps.get("max_children", 100))
        self.max_text = int(caps.get("max_text", 1000))
        self.showing_only = bool(caps.get("showing_only", True))
        self.deadline = deadline
        self.nodes = 0
        self.seen: set[Any] = set()
        self.truncated = {"depth": False, "nodes": False, "children": False, "time": False}

    def late(self) -> bool:
        if time.monotonic() >= self.deadline:
            self.truncated["time"] = True
        return self.truncated["time"]

    def shown(self, desktop: Desktop, level: list[_Entry], depth: int) -> list[_Entry]:
        """The nodes of `level` to show, as many as the node cap leaves room for:
        every one, or those on the screen.

        Only states are asked first, a chunk at a time until the room is filled,
        and the role only of a desktop's child that is not showing (an
        application): a hidden widget's other fields are never asked for, nor
        anything below it (pages and menus hide many).
        """
        room = self.max_nodes - self.nodes
        kept: list[_Entry] = []
        asked = 0
        chunk = len(level) if not self.showing_only else max(room, 64)
        for start in range(0, len(level), chunk):
            if len(kept) >= room or self.late():
                break
            part = level[start : start + chunk]
            asked = start + len(part)
            kept += self._showing(desktop, part, depth) if self.showing_only else part
        if len(kept) > room or (len(kept) == room and asked < len(level)):
            self.truncated["nodes"] = True
        return kept[:room]

    def _showing(self, desktop: Desktop, entries: list[_Entry], depth: int) -> list[_Entry]:
        keep = ["showing" in states for states in desktop.states([node for node, _ in entries])]
        if depth == 1:
            hidden = [index for index, kept in enumerate(keep) if not kept]
            roles = desktop.roles([entries[index][0] for index in hidden])
            for index, role in zip(hidden, roles, strict=True):
                keep[index] = role in _NOT_SHOWN_KEPT
        return [entry for entry, kept in zip(entries, keep, strict=True) if kept]

    def add(self, read: Read, into: list[Any], depth: int) -> list[_Entry]:
        """Put `read`'s node under its parent; its children to visit next, each
        node once (a program may list one twice, or an ancestor as a child)."""
        children: list[dict[str, Any]] = []
        read.info["children"] = children
        into.append(read.info)
        self.nodes += 1
        if read.child_count > self.max_children:
            self.truncated["children"] = True
        if read.child_count and depth >= self.max_depth:
            self.truncated["depth"] = True
            return []
        below = []
        for child in read.children[: self.max_children]:
            if child not in self.seen:
                self.seen.add(child)
                below.append((child, children))
        return below


def walk(desktop: Desktop, caps: dict[str, Any], deadline: float | None = None) -> dict[str, Any]:
    """The tree under the desktop within `caps`, as the answer's JSON object.

    The root counts as depth 0 and is always shown. The tree is read a level at
    a time, so the node cap keeps the levels nearest the root, and the deadline
    (by default ``deadline_s`` from now) whole levels: a level whose answers come
    late is left out.
    """
    if deadline is None:
        deadline = time.monotonic() + float(caps.get("deadline_s", 5.0))
    state = _Walk(caps, deadline)
    top: list[dict[str, Any]] = []
    root_node = desktop.root()
    state.seen.add(root_node)
    (root,) = desktop.read([root_node], state.max_text, state.max_children)
    if root is None:
        return {"ok": False, "stage": "bus", "message": "the desktop does not answer"}
    level = state.add(root, top, 0)
    depth = 1
    while level and not state.late():
        level = state.shown(desktop, level, depth)
        if not level or state.late():
            break
        reads = desktop.read([node for node, _ in level], state.max_text, state.max_children)
        if state.late():
            break
        below: list[_Entry] = []
        for (_, into), read in zip(level, reads, strict=True):
            if read is not None:
                below += state.add(read, into, depth)
        level, depth = below, depth + 1
    if desktop.late:
        state.truncated["time"] = True
    return {"ok": True, "tree": top[0], "nodes": state.nodes, "truncated": state.truncated}


def main() -> None:
    """Answer each line of caps on stdin with the desktop's tree, until end of input."""
    names: atspi_bus.Names | None = None
    failure: dict[str, Any] = {}
    try:
        names = atspi_bus.Names()
    except Exception as exc:
        failure = {"ok": False, "stage": "import", "message": f"{type(exc).__name__}: {exc}"}
    links: atspi_bus.Links | None = None
    for line in sys.stdin.buffer:
        try:
            caps = json.loads(line)
            if not isinstance(caps, dict):
                raise ValueError("not an object")
            deadline = time.monotonic() + float(caps.get("deadline_s", 5.0))
        except (ValueError, TypeError) as exc:
            _answer({"ok": False, "stage": "request", "message": f"bad caps: {exc}"})
            continue
        if names is None:
            _answer(failure)
            continue
        try:
            if links is None or links.closed:
                if links is not None:
                    links.close()
                links = atspi_bus.connect(deadline)
            answer = walk(atspi_bus.BusDesktop(links, names, deadline), caps, deadline)
        except dbus_wire.DBusError as exc:
            answer = {"ok": False, "stage": "bus", "message": str(exc)}
        except Exception as exc:  # whatever a program's answers provoke: this read fails
            if links is not None:
                links.close()
            answer = {"ok": False, "stage": "read", "message": f"{type(exc).__name__}: {exc}"}
        _answer(answer)


def _answer(answer: dict[str, Any]) -> None:
    # One line: JSON escapes newlines inside strings; "replace" for a lone surrogate.
    line = json.dumps(answer, ensure_ascii=False) + "\n"
    sys.stdout.buffer.write(line.encode("utf-8", "replace"))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
