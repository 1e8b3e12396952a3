"""The AT-SPI tree over fake connections: what each reply becomes in the tree, and which
connection each question takes (a program's own, or the bus when it has none or its
own breaks)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from sandbox.agent.desktop import a11y_reader, atspi_bus, dbus_wire
from sandbox.agent.desktop.dbus_codec import DBusError

ROOT = "/org/a11y/atspi/accessible/root"
REGISTRY = "org.a11y.atspi.Registry"
ROLES = {14: "desktop frame", 75: "application", 23: "frame", 61: "text", 40: "push button"}
SHOWING = 1 << 25


@dataclass
class Obj:
    role: int
    name: str = ""
    children: list[tuple[str, str]] = field(default_factory=list)
    states: int = SHOWING
    text: str | None = None
    extents: tuple[int, int, int, int] | None = (1, 2, 3, 4)
    role_name: str = ""


# A desktop with one program (":1.1"): a frame holding a text, a hidden button and a
# widget of a role libatspi does not name.
WORLD = {
    (REGISTRY, ROOT): Obj(14, "main", [(":1.1", ROOT)], states=0, extents=(0, 0, 800, 600)),
    (":1.1", ROOT): Obj(75, "editor", [(":1.1", "/w")], states=0, extents=None),
    (":1.1", "/w"): Obj(23, "Untitled", [(":1.1", "/t"), (":1.1", "/h"), (":1.1", "/x")]),
    (":1.1", "/t"): Obj(61, "", text="hello world"),
    (":1.1", "/h"): Obj(40, "Hidden", states=0),
    (":1.1", "/x"): Obj(999, "odd", role_name="gauge"),
}


def answer(call: dbus_wire.Call) -> tuple[Any, ...] | None:
    obj = WORLD.get((call.destination, call.path))
    if obj is None:
        return None
    member, args = call.member, call.args
    if member == "GetApplicationBusAddress":
        return (f"unix:path=/direct/{call.destination}",)
    if member == "GetState":
        return ([obj.states & 0xFFFFFFFF, obj.states >> 32],)
    if member == "GetRole":
        return (obj.role,)
    if member == "GetRoleName":
        return (obj.role_name,)
    if member == "GetInterfaces":
        return (["org.a11y.atspi.Accessible"] + (["org.a11y.atspi.Text"] if obj.text else []),)
    if member == "GetExtents":
        return (obj.extents,) if obj.extents else None
    if member == "GetChildren":
        return (obj.children,)
    if member == "GetChildAtIndex":
        return (obj.children[args[0]],)
    if member == "GetText":
        return ((obj.text or "")[args[0] : args[1]],)
    if member == "Get" and args == ("org.a11y.atspi.Accessible", "Name"):
        return (obj.name,)
    if member == "Get" and args == ("org.a11y.atspi.Accessible", "ChildCount"):
        return (len(obj.children),)
    if member == "Get" and args == ("org.a11y.atspi.Text", "CharacterCount"):
        return (len(obj.text or ""),)
    raise AssertionError(f"unexpected call {call}")


class FakeLink:
    """A connection answering from `WORLD`, recording what it was asked."""

    def __init__(
        self, label: str, *, breaks_after: int | None = None, frozen_for: str = ""
    ) -> None:
        self.label = label
        self.asked: list[str] = []
        self.breaks_after = breaks_after
        self.frozen_for = frozen_for
        """Objects whose path starts so are never answered."""
        self.closed = False

    def send(self, calls: Sequence[dbus_wire.Call], deadline: float) -> dbus_wire.Batch:
        if self.closed:
            raise DBusError("closed")
        return dbus_wire.Batch(calls, {index: index for index in range(len(calls))},
                               [None] * len(calls))  # fmt: skip

    def pump(self, batch: dbus_wire.Batch, selector: Any, *, read: bool) -> None:
        """Answers at once (`dbus_wire.receive_all` never waits on this link)."""
        if self.breaks_after is not None and len(self.asked) >= self.breaks_after:
            self.closed = True
            batch.error = DBusError("the connection broke")
            return
        self.asked += [f"{call.destination}{call.path}:{call.member}" for call in batch.calls]
        for serial, index in list(batch.waiting.items()):
            call = batch.calls[index]
            if not (self.frozen_for and call.path.startswith(self.frozen_for)):
                batch.values[index] = answer(call)
                del batch.waiting[serial]

    def call_many(self, calls: Sequence[dbus_wire.Call], deadline: float) -> list[Any]:
        (batch,) = dbus_wire.receive_all([(self, self.send(calls, deadline))], deadline)  # type: ignore[list-item]
        if batch.error is not None:
            raise batch.error
        return batch.values

    def close(self) -> None:
        self.closed = True


class FakeNames:
    def role(self, role: Any) -> str:
        return ROLES.get(role, "")

    def states(self, words: Any) -> list[str]:
        return ["showing"] if words[0] & SHOWING else []


def read(links: atspi_bus.Links, **caps: Any) -> dict[str, Any]:
    desktop = atspi_bus.BusDesktop(links, FakeNames(), time.monotonic() + 5)  # type: ignore[arg-type]
    return a11y_reader.walk(desktop, {"deadline_s": 5, **caps})


def linked(
    monkeypatch: pytest.MonkeyPatch, direct: dict[str, list[FakeLink]]
) -> tuple[atspi_bus.Links, FakeLink, list[str]]:
    """Links over a fake bus; a program's address opens the next of `direct[address]`
    (none left: refused)."""
    opened: list[str] = []

    def connect(address: str, timeout: float, *, bus: bool) -> FakeLink:
        assert bus is False
        opened.append(address)
        if not direct.get(address):
            raise DBusError(f"cannot connect to {address}")
        return direct[address].pop(0)

    monkeypatch.setattr(dbus_wire, "Connection", connect)
    bus = FakeLink("bus")
    return atspi_bus.Links(bus), bus, opened  # type: ignore[arg-type]


def test_each_reply_lands_in_its_field_of_the_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    links, _, _ = linked(monkeypatch, {})
    answer_ = read(links)
    root = answer_["tree"]
    assert (root["role"], root["name"], root["size"]) == ("desktop frame", "main", [800, 600])
    (app,) = root["children"]
    assert (app["role"], app["name"], app["position"], app["size"]) == (
        "application",
        "editor",
        [],
        [],
    )
    (frame,) = app["children"]
    assert [child["role"] for child in frame["children"]] == ["text", "gauge"]
    text = frame["children"][0]
    assert (text["text"], text["states"], text["position"], text["size"]) == (
        "hello world", ["showing"], [1, 2], [3, 4],
    )  # fmt: skip
    assert answer_["nodes"] == 5


def test_text_and_children_are_cut_to_their_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    links, bus, _ = linked(monkeypatch, {})
    answer_ = read(links, max_text=5, max_children=1)
    frame = answer_["tree"]["children"][0]["children"][0]
    assert [child["text"] for child in frame["children"]] == ["hello"]
    assert answer_["truncated"]["children"] is True
    # A list longer than the cap is asked for child by child, never whole.
    assert ":1.1/w:GetChildren" not in bus.asked
    assert ":1.1/w:GetChildAtIndex" in bus.asked


def test_a_program_is_asked_over_its_own_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    own = FakeLink("own")
    links, bus, opened = linked(monkeypatch, {"unix:path=/direct/:1.1": [own]})
    first = read(links)
    second = read(links)
    assert first == second
    assert opened == ["unix:path=/direct/:1.1"]  # learnt once
    assert all(asked.startswith(REGISTRY) for asked in bus.asked if "Address" not in asked)
    assert ":1.1/t:GetText" in own.asked


def test_without_a_connection_of_its_own_a_program_is_asked_through_the_bus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    links, bus, opened = linked(monkeypatch, {})  # every address refused
    assert read(links)["nodes"] == 5
    assert read(links)["nodes"] == 5
    assert opened == ["unix:path=/direct/:1.1"]  # tried once, not every read
    assert ":1.1/t:GetText" in bus.asked


def test_a_connection_that_breaks_costs_one_read_its_answers_then_the_bus_takes_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = FakeLink("own", breaks_after=3)
    links, bus, _ = linked(monkeypatch, {"unix:path=/direct/:1.1": [own]})
    broken = read(links)
    assert broken["nodes"] < 5
    assert own.closed
    assert read(links)["nodes"] == 5
    assert ":1.1/t:GetText" in bus.asked


def test_a_broken_bus_fails_the_read(monkeypatch: pytest.MonkeyPatch) -> None:
    links, bus, _ = linked(monkeypatch, {})
    bus.breaks_after = 0
    with pytest.raises(DBusError):
        read(links)
    assert links.closed


def test_direct_connections_and_names_known_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atspi_bus, "MAX_DIRECT_LINKS", 1)
    monkeypatch.setattr(atspi_bus, "MAX_KNOWN_NAMES", 3)  # the registry and two programs
    monkeypatch.setitem(WORLD, (":1.2", ROOT), Obj(75, "viewer", states=0, extents=None))
    monkeypatch.setattr(WORLD[(REGISTRY, ROOT)], "children", [(":1.1", ROOT), (":1.2", ROOT)])
    first, second, again = FakeLink("first"), FakeLink("second"), FakeLink("again")
    links, bus, opened = linked(
        monkeypatch, {"unix:path=/direct/:1.1": [first, again], "unix:path=/direct/:1.2": [second]}
    )
    assert read(links)["nodes"] == 6
    assert opened == ["unix:path=/direct/:1.1"]  # one link at most: the other via the bus
    assert second.asked == []
    assert ":1.2/org/a11y/atspi/accessible/root:GetRole" in bus.asked
    # The viewer exits and a third program starts: its name is one more than remembered,
    # so all are forgotten (links closed) and those of this read learnt anew.
    monkeypatch.setitem(WORLD, (":1.3", ROOT), Obj(75, "third", states=0, extents=None))
    monkeypatch.setattr(WORLD[(REGISTRY, ROOT)], "children", [(":1.1", ROOT), (":1.3", ROOT)])
    assert read(links)["nodes"] == 6
    assert first.closed
    assert opened[1:] == ["unix:path=/direct/:1.1"]
    assert ":1.1/t:GetText" in again.asked
    assert read(links)["nodes"] == 6
    assert len(opened) == 2  # no more forgetting: the names of a read fit


def test_a_program_that_stalls_is_not_asked_again_and_the_tree_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = FakeLink("own", frozen_for="/t")  # the program hangs on its text widget
    links, _, _ = linked(monkeypatch, {"unix:path=/direct/:1.1": [own]})
    started = time.monotonic()
    answer_ = read(links)
    frame = answer_["tree"]["children"][0]["children"][0]
    assert frame["children"] == []  # the whole program is not asked again in this read
    assert answer_["truncated"]["time"] is True
    asked_after = own.asked[own.asked.index(":1.1/t:GetState") :]
    assert all(asked.endswith(("GetState", "GetRole")) for asked in asked_after), asked_after
    assert time.monotonic() - started < 1
