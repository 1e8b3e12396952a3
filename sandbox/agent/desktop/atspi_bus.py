"""The AT-SPI tree over D-Bus, asked a batch at a time: what `a11y_reader` walks.

`BusDesktop` answers the walk's questions about many nodes at once: every call
of a batch is sent before any reply is awaited (`dbus_wire`), and each program
that offers it (GTK's and Chromium's AT-SPI bridges do) is asked over a direct
connection of its own rather than through the bus daemon, which otherwise
carries every question and every answer twice (`Links`). A program that leaves
a batch unanswered for `BATCH_TIMEOUT_S` is not asked again during the read.
Runs as the session user, inside the reader; standard library only, but for the
names of roles and states, which are libatspi's (`Names`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

if __package__:
    from . import dbus_wire
else:  # run from the reader script: this file's directory is sys.path[0]
    import dbus_wire  # type: ignore[import-not-found,no-redef]

BATCH_TIMEOUT_S = 2.0
"""How long a batch waits for its replies (within the read's deadline)."""
MAX_IN_FLIGHT = 4096
"""Calls sent on a connection before their replies are read (the AT-SPI bus lets
a client await 50,000 at most)."""
MAX_DIRECT_LINKS = 32
"""Programs asked over a connection of their own at most; the rest through the bus."""
MAX_KNOWN_NAMES = 4096
"""Bus names remembered (a program may name any number of objects on other names):
past this, all are forgotten and their connections closed, to be learnt anew."""

_REGISTRY = "org.a11y.atspi.Registry"
_ROOT_PATH = "/org/a11y/atspi/accessible/root"
_NULL_PATH = "/org/a11y/atspi/null"
_ACCESSIBLE = "org.a11y.atspi.Accessible"
_APPLICATION = "org.a11y.atspi.Application"
_COMPONENT = "org.a11y.atspi.Component"
_TEXT = "org.a11y.atspi.Text"
_PROPERTIES = "org.freedesktop.DBus.Properties"
_SCREEN = 0
"""ATSPI_COORD_TYPE_SCREEN: extents on the screen, not in the window."""
_REPLY_TYPES = {
    "GetState": "au",
    "GetRole": "u",
    "GetRoleName": "s",
    "Get": "v",  # the value is checked where it is used
    "GetInterfaces": "as",
    "GetExtents": "(iiii)",
    "GetChildren": "a(so)",
    "GetChildAtIndex": "(so)",
    "GetText": "s",
    "GetApplicationBusAddress": "s",
}

_Reply = tuple[Any, ...] | None


class Ask(NamedTuple):
    """A question about a node: a method of one of its interfaces."""

    node: tuple[str, str]
    """(bus name, object path)."""
    interface: str
    member: str
    signature: str = ""
    args: tuple[Any, ...] = ()

    def call(self) -> dbus_wire.Call:
        """The D-Bus call that asks it."""
        name, path = self.node
        reply = _REPLY_TYPES[self.member]
        return dbus_wire.Call(
            name, path, self.interface, self.member, self.signature, self.args, reply
        )


def _get(node: tuple[str, str], interface: str, name: str) -> Ask:
    return Ask(node, _PROPERTIES, "Get", "ss", (interface, name))


@dataclass
class Read:
    """What a `Desktop` tells of one node.

    Attributes:
        info: ``role``, ``name``, ``text``, ``states``, ``position``, ``size``.
        child_count: How many children it says it has.
        children: Its first children (at most the cap asked), as references.
    """

    info: dict[str, Any]
    child_count: int = 0
    children: list[Any] = field(default_factory=list)


class BusDesktop:
    """A `Desktop` over the AT-SPI bus and the programs' own connections.

    A call that fails (the program exited, lacks the interface, or answers in
    another shape) reads as empty; a program that leaves a batch unanswered is
    not asked again during this read (`late` then says so).

    Args:
        links: The connections to the session's AT-SPI bus and programs.
        names: AT-SPI's names of roles and states.
        deadline: When the read ends (`time.monotonic`).
    """

    def __init__(self, links: Links, names: Names, deadline: float) -> None:
        self._links = links
        self._names = names
        self._deadline = deadline
        self._states: dict[Any, list[str]] = {}
        self._roles: dict[Any, str] = {}
        self._stalled: set[str] = set()

    @property
    def late(self) -> bool:
        """Whether a program left calls unanswered (what it holds is left out)."""
        return bool(self._stalled)

    def root(self) -> Any:
        """The registry's desktop."""
        return (_REGISTRY, _ROOT_PATH)

    def states(self, nodes: Sequence[Any]) -> list[list[str]]:
        """Each node's states (asked once per read)."""
        self._ask_with_states_and_roles(nodes)
        return [self._states[node] for node in nodes]

    def roles(self, nodes: Sequence[Any]) -> list[str]:
        """Each node's role name (asked once per read)."""
        self._ask_with_states_and_roles(nodes, states=False)
        return [self._roles[node] for node in nodes]

    def read(self, nodes: Sequence[Any], max_text: int, max_children: int) -> list[Read | None]:
        """Each node's fields and first children (`nodes` distinct): three batches,
        two without text."""
        names, counts, interfaces, extents = self._ask_with_states_and_roles(
            nodes,
            # Two Gets, not GetAll: the registry's desktop answers GetAll with nothing.
            [_get(node, _ACCESSIBLE, "Name") for node in nodes],
            [_get(node, _ACCESSIBLE, "ChildCount") for node in nodes],
            [Ask(node, _ACCESSIBLE, "GetInterfaces") for node in nodes],
            [Ask(node, _COMPONENT, "GetExtents", "u", (_SCREEN,)) for node in nodes],
        )
        reads: dict[Any, Read | None] = {}
        later: list[Ask] = []
        for node, name, children, kinds, rect in zip(
            nodes, names, counts, interfaces, extents, strict=True
        ):
            if name is None and not self._roles[node]:
                reads[node] = None  # gone: neither its role nor its name answers
                continue
            info = {
                "role": self._roles[node],
                "name": _text(name[0] if name else None)[:max_text],
                "text": "",
                "states": self._states[node],
                "position": list(rect[0][:2]) if rect else [],
                "size": list(rect[0][2:]) if rect else [],
            }
            count = _count(children[0] if children else None)
            reads[node] = Read(info, count)
            if 0 < count <= max_children:
                later.append(Ask(node, _ACCESSIBLE, "GetChildren"))
            else:  # a huge list is not fetched whole
                later += [
                    Ask(node, _ACCESSIBLE, "GetChildAtIndex", "i", (index,))
                    for index in range(min(count, max_children))
                ]
            if kinds and _TEXT in kinds[0]:
                later.append(_get(node, _TEXT, "CharacterCount"))
        self._read_children_and_text(reads, later, max_text, max_children)
        return [reads[node] for node in nodes]

    def _read_children_and_text(
        self, reads: dict[Any, Read | None], asks: list[Ask], max_text: int, max_children: int
    ) -> None:
        texts: list[Ask] = []
        for ask, reply in zip(asks, self._calls(asks), strict=True):
            read = reads[ask.node]
            if read is None or reply is None:
                continue
            if ask.member == "GetChildren":
                children = [child for child in reply[0][:max_children] if _is_node(child)]
                read.children += children
            elif ask.member == "GetChildAtIndex":
                read.children += [reply[0]] if _is_node(reply[0]) else []
            elif (length := min(_count(reply[0]), max_text)) > 0:
                texts.append(Ask(ask.node, _TEXT, "GetText", "ii", (0, length)))
        for ask, reply in zip(texts, self._calls(texts), strict=True):
            read = reads[ask.node]
            if read is not None and reply is not None:
                read.info["text"] = _text(reply[0])[:max_text]

    def _ask_with_states_and_roles(
        self, nodes: Sequence[Any], *more: list[Ask], states: bool = True
    ) -> list[list[_Reply]]:
        """Ask, in one batch, the states (unless told not to) and roles not yet
        known of `nodes`, with the asks of `more`; the replies to `more`."""
        unique = list(dict.fromkeys(nodes))
        no_state = [node for node in unique if states and node not in self._states]
        no_role = [node for node in unique if node not in self._roles]
        groups = [
            [Ask(node, _ACCESSIBLE, "GetState") for node in no_state],
            [Ask(node, _ACCESSIBLE, "GetRole") for node in no_role],
            *more,
        ]
        replies = self._calls([ask for group in groups for ask in group])
        split: list[list[_Reply]] = []
        for group in groups:
            split.append(replies[: len(group)])
            replies = replies[len(group) :]
        for node, reply in zip(no_state, split[0], strict=True):
            self._states[node] = self._names.states(reply[0]) if reply else []
        unnamed = []
        for node, reply in zip(no_role, split[1], strict=True):
            self._roles[node] = self._names.role(reply[0]) if reply else ""
            if reply and not self._roles[node]:
                unnamed.append(node)  # a role libatspi does not name: the program's name for it
        asked = [Ask(node, _ACCESSIBLE, "GetRoleName") for node in unnamed]
        for node, reply in zip(unnamed, self._calls(asked), strict=True):
            self._roles[node] = _text(reply[0]) if reply else ""
        return split[2:]

    def _calls(self, asks: Sequence[Ask]) -> list[_Reply]:
        """The replies to `asks`, those to a program that stalled earlier not asked."""
        results: list[_Reply] = [None] * len(asks)
        if time.monotonic() >= self._deadline:
            return results
        sent = [index for index, ask in enumerate(asks) if ask.node[0] not in self._stalled]
        batch_deadline = min(self._deadline, time.monotonic() + BATCH_TIMEOUT_S)
        replies, late = self._links.call_many([asks[i].call() for i in sent], batch_deadline)
        for index, reply in zip(sent, replies, strict=True):
            results[index] = reply
        self._stalled.update(asks[sent[index]].node[0] for index in late)
        return results


class Links:
    """The session's AT-SPI bus, and a direct connection to each program that offers one.

    A program's direct address is asked once (``GetApplicationBusAddress``) the
    first time one of its objects is; a program that offers none, or whose
    connection fails, is asked through the bus from then on. A program's
    address is its own to give, so connecting is bounded like any call, and it
    only ever reaches what the session user could.

    Args:
        bus: A connection to the session's AT-SPI bus.
    """

    def __init__(self, bus: dbus_wire.Connection) -> None:
        self.bus = bus
        self._direct: dict[str, dbus_wire.Connection | None] = {_REGISTRY: None}

    @property
    def closed(self) -> bool:
        """Whether the bus connection is closed (then these links are of no more use)."""
        return self.bus.closed

    def close(self) -> None:
        """Close every connection."""
        self._close_direct()
        self.bus.close()

    def call_many(
        self, calls: Sequence[dbus_wire.Call], deadline: float
    ) -> tuple[list[_Reply], list[int]]:
        """Each call's reply (None where it failed), every call sent before any
        reply is awaited; and the indexes of the calls left unanswered.

        Raises:
            dbus_wire.DBusError: The bus connection broke.
        """
        replies: list[_Reply] = []
        late: list[int] = []
        for start in range(0, len(calls), MAX_IN_FLIGHT):
            chunk_replies, chunk_late = self._call_chunk(
                calls[start : start + MAX_IN_FLIGHT], deadline
            )
            replies += chunk_replies
            late += [start + index for index in chunk_late]
        return replies, late

    def _call_chunk(
        self, calls: Sequence[dbus_wire.Call], deadline: float
    ) -> tuple[list[_Reply], list[int]]:
        self._open_direct({call.destination for call in calls}, deadline)
        groups: dict[dbus_wire.Connection, list[int]] = {}
        for index, call in enumerate(calls):
            groups.setdefault(self._direct.get(call.destination) or self.bus, []).append(index)
        sent: list[tuple[list[int], dbus_wire.Connection, dbus_wire.Batch]] = []
        results: list[_Reply] = [None] * len(calls)
        late: list[int] = []
        for link, indexes in groups.items():
            try:
                sent.append((indexes, link, link.send([calls[i] for i in indexes], deadline)))
            except dbus_wire.DBusError:
                if link is self.bus:
                    raise
                self._forget(link)  # its calls fail this time; the bus is asked next time
        batches = dbus_wire.receive_all([(link, batch) for _, link, batch in sent], deadline)
        for (indexes, link, _), batch in zip(sent, batches, strict=True):
            if batch.error is not None:
                if link is self.bus:
                    raise batch.error
                self._forget(link)
            for index, reply in zip(indexes, batch.values, strict=True):
                results[index] = reply
            late += [indexes[position] for position in batch.late]
        return results, late

    def _forget(self, link: dbus_wire.Connection) -> None:
        for name, known in self._direct.items():
            if known is link:
                self._direct[name] = None

    def _close_direct(self) -> None:
        for link in self._direct.values():
            if link is not None:
                link.close()
        self._direct = {_REGISTRY: None}

    def _open_direct(self, destinations: set[str], deadline: float) -> None:
        """Find and open the direct connections of the programs among `destinations`
        not asked before (names beyond `MAX_KNOWN_NAMES` stay unknown: asked
        through the bus)."""
        new = destinations - self._direct.keys()
        if not new:
            return
        if len(self._direct) + len(new) > MAX_KNOWN_NAMES:
            self._close_direct()
            new = destinations - self._direct.keys()
        names = sorted(new)[: MAX_KNOWN_NAMES - len(self._direct)]
        asks = [Ask((name, _ROOT_PATH), _APPLICATION, "GetApplicationBusAddress").call()
                for name in names]  # fmt: skip
        replies = self.bus.call_many(asks, min(deadline, time.monotonic() + 1.0))
        opened = sum(link is not None for link in self._direct.values())
        for name, reply in zip(names, replies, strict=True):
            self._direct[name] = None
            timeout = min(1.0, deadline - time.monotonic())
            if reply is None or not reply[0] or opened >= MAX_DIRECT_LINKS or timeout <= 0:
                continue
            with contextlib.suppress(dbus_wire.DBusError):  # else asked through the bus
                self._direct[name] = dbus_wire.Connection(reply[0], timeout, bus=False)
                opened += 1


def _is_node(ref: Any) -> bool:
    """A reference a program gave is (bus name, object path), not the null object
    (the bus drops a client that sends to a malformed name)."""
    return (
        isinstance(ref, tuple)
        and len(ref) == 2
        and dbus_wire.is_bus_name(ref[0])
        and dbus_wire.is_object_path(ref[1])
        and ref[1] != _NULL_PATH
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


class Names:
    """AT-SPI's names of roles and states, as libatspi's getters give them
    (python3-gi's Atspi bindings, read once)."""

    def __init__(self) -> None:
        # Through importlib: python3-gi is the image's, not the development venv's.
        importlib.import_module("gi").require_version("Atspi", "2.0")
        atspi: Any = importlib.import_module("gi.repository.Atspi")
        self._roles = [
            "" if role == atspi.Role.EXTENDED else str(atspi.role_get_name(atspi.Role(role)))
            for role in range(int(atspi.Role.LAST_DEFINED))
        ]
        self._states = [
            str(atspi.StateType(state).value_nick)
            for state in range(int(atspi.StateType.LAST_DEFINED))
        ]

    def role(self, role: Any) -> str:
        """The name of a role number ("" for one libatspi does not name)."""
        return self._roles[role] if isinstance(role, int) and 0 <= role < len(self._roles) else ""

    def states(self, words: Any) -> list[str]:
        """The states set in GetState's bit words, sorted by name."""
        bits = 0
        for shift, word in enumerate(words[:2] if isinstance(words, list) else []):
            bits |= (int(word) & 0xFFFFFFFF) << (32 * shift)
        return sorted(name for index, name in enumerate(self._states) if bits >> index & 1)


def connect(deadline: float) -> Links:
    """Links to the session's AT-SPI bus, whose address the session bus tells, made
    by `deadline`.

    Raises:
        dbus_wire.DBusError: A bus cannot be reached in time.
    """
    session_address = os.environ.get("DBUS_SESSION_BUS_ADDRESS", "")
    session = dbus_wire.Connection(session_address, max(0.001, deadline - time.monotonic()))
    try:
        ask = dbus_wire.Call(
            "org.a11y.Bus", "/org/a11y/bus", "org.a11y.Bus", "GetAddress",
            reply="s", auto_start=True,
        )  # fmt: skip
        (reply,) = session.call_many([ask], deadline)
    finally:
        session.close()
    if reply is None:
        raise dbus_wire.DBusError("the session bus did not tell the AT-SPI bus's address")
    return Links(dbus_wire.Connection(reply[0], max(0.001, deadline - time.monotonic())))
