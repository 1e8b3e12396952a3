"""The accessibility reader's D-Bus client: messages read back in every shape, malformed
ones refused, and a connection to a peer that answers out of order, too much, late or
not at all (a peer here is a thread of the test speaking the protocol)."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.agent.desktop import dbus_codec, dbus_wire
from sandbox.agent.desktop.dbus_codec import DBusError, Message

_FIXED = {"y": "B", "b": "I", "n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q",
          "d": "d"}  # fmt: skip


def write(buffer: bytearray, kind: str, value: Any, order: str = "<") -> None:
    """`value` of type `kind` appended to `buffer`, aligned from its start (a test's
    own marshaller, to check the reader's against)."""

    def pad(size: int) -> None:
        buffer.extend(b"\0" * (-len(buffer) % size))

    head = kind[0]
    if head in _FIXED:
        pad(struct.calcsize(_FIXED[head]))
        buffer.extend(struct.pack(order + _FIXED[head], value))
    elif head in "so":
        pad(4)
        encoded = value.encode()
        buffer.extend(struct.pack(order + "I", len(encoded)) + encoded + b"\0")
    elif head == "g":
        buffer.extend(bytes([len(value)]) + value.encode() + b"\0")
    elif head == "v":
        signature, inner = value
        write(buffer, "g", signature, order)
        write(buffer, signature, inner, order)
    elif head == "a":
        pad(4)
        at = len(buffer)
        buffer.extend(b"\0\0\0\0")
        element = kind[1:]
        pad(8 if element[0] in "({xtd" else 4 if element[0] in "biuhsoa" else 1)
        start = len(buffer)
        for item in value.items() if isinstance(value, dict) else value:
            write(buffer, element, item, order)
        struct.pack_into(order + "I", buffer, at, len(buffer) - start)
    else:
        pad(8)
        for part, item in zip(dbus_codec._types(kind[1:-1]), value, strict=True):
            write(buffer, part, item, order)


def message(
    kind: int, serial: int, reply_serial: int, signature: str, values: tuple[Any, ...],
    order: str = "<", raw_body: bytes | None = None,
) -> bytes:  # fmt: skip
    """A whole message: a reply (`kind` 2), an error (3), a signal (4)...; its body
    `values` of `signature`, or `raw_body` as it is."""
    body = bytearray(raw_body or b"")
    if raw_body is None:
        for part, value in zip(dbus_codec._types(signature), values, strict=True):
            write(body, part, value, order)
    fields: list[tuple[int, tuple[str, Any]]] = [(5, ("u", reply_serial))] if reply_serial else []
    if signature:
        fields.append((8, ("g", signature)))
    head = bytearray(b"l" if order == "<" else b"B")
    head.extend(bytes([kind, 0, 1]))
    write(head, "u", len(body), order)
    write(head, "u", serial, order)
    write(head, "a(yv)", fields, order)
    head.extend(b"\0" * (-len(head) % 8))
    return bytes(head + body)


def test_a_call_reads_back_as_it_was_written() -> None:
    data = dbus_codec.method_call(7, ":1.2", "/a/b", "org.x.I", "Get", "ssu", ("a", "é", 3))
    parsed = Message.parse(data)
    assert (parsed.kind, parsed.signature) == (dbus_codec.METHOD_CALL, "ssu")
    assert struct.unpack_from("<I", data, 8) == (7,)
    assert parsed.body() == ("a", "é", 3)
    assert dbus_codec.message_sizes(data) is not None
    assert dbus_codec.message_sizes(data)[1] == len(data)  # type: ignore[index]


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize(
    ("signature", "values"),
    [
        ("au", ([1, 2**32 - 1],)),
        ("as", (["org.a11y.atspi.Accessible", "", "ü"],)),
        ("(iiii)", ((-5, 7, 640, 480),)),
        ("a(so)", ([(":1.2", "/org/a11y/atspi/accessible/1"), (":1.3", "/")],)),
        ("v", (("i", 42),)),
        ("v", (("as", ["x"]),)),
        ("a{sv}", ({"Name": ("s", "main"), "ChildCount": ("i", 2)},)),
        ("ybnqxtd", (1, 1, -2, 3, -(2**40), 2**63, 0.5)),
        ("", ()),
    ],
)
def test_replies_of_every_shape_are_read(
    signature: str, values: tuple[Any, ...], order: str
) -> None:
    parsed = Message.parse(message(2, 9, 4, signature, values, order))
    assert (parsed.kind, parsed.reply_serial, parsed.signature) == (2, 4, signature)
    expected = tuple(
        {key: inner for key, (_, inner) in value.items()} if isinstance(value, dict)
        else value[1] if signature == "v" else value
        for value in values
    )  # fmt: skip
    assert parsed.body() == expected


def nested_variants(depth: int) -> bytes:
    value: Any = ("u", 1)
    for _ in range(depth):
        value = ("v", value)
    return message(2, 1, 1, "v", (value,))


@pytest.mark.parametrize(
    "data",
    [
        # A string's length past the message's end.
        message(2, 1, 1, "s", ("hello",)).replace(b"\x05\0\0\0hello", b"\xe8\x03\0\0hello"),
        # An array whose length runs past the message.
        message(2, 1, 1, "au", ([1, 2],)).replace(b"\x08\0\0\0\x01", b"\0\x01\0\0\x01"),
        nested_variants(70),
        # A signature that is not one.
        message(2, 1, 1, "s", ("x",)).replace(b"\x01g\0\x01s\0", b"\x01g\0\x01z\0"),
        message(2, 1, 1, "s", ("x",)).replace(b"\x01g\0\x01s\0", b"\x01g\0\x01(\0"),
        # Arrays of empty structs, whose elements take no bytes (the array would never end).
        message(2, 1, 1, "v", (), raw_body=b"\x03a()\0" + bytes(3) + b"\x10\0\0\0" + bytes(20)),
        message(2, 1, 1, "v", (), raw_body=b"\x03a(}\0" + bytes(3) + b"\x10\0\0\0" + bytes(20)),
        # A dict keyed by arrays (unhashable), and a dict entry outside an array.
        message(2, 1, 1, "v", (("a(ayy)", [([1], 2)]),)).replace(b"\x06a(ayy)", b"\x06a{ayy}"),
        message(2, 1, 1, "v", (("(sv)", ("k", ("u", 1))),)).replace(b"\x04(sv)", b"\x04{sv}"),
    ],
)
def test_a_malformed_body_reads_as_nothing(data: bytes) -> None:
    fixed = bytearray(data)
    head, _ = dbus_codec.message_sizes(fixed) or (0, 0)
    struct.pack_into("<I", fixed, 4, len(fixed) - head)  # the body length stays honest
    assert Message.parse(bytes(fixed)).body() is None


def test_a_malformed_body_is_found_out_at_once() -> None:
    """An array of empty structs would keep a reader adding nothing forever."""
    data = message(2, 1, 1, "v", (), raw_body=b"\x03a()\0" + bytes(3) + b"\x10\0\0\0" + bytes(20))
    started = time.monotonic()
    assert Message.parse(data).body() is None
    assert time.monotonic() - started < 0.5


def test_a_message_too_deep_to_read_and_one_just_deep_enough() -> None:
    assert Message.parse(nested_variants(60)).body() is not None
    assert Message.parse(nested_variants(64)).body() is None


def test_sizes_refuse_an_unknown_byte_order_and_a_huge_header() -> None:
    with pytest.raises(DBusError, match="byte order"):
        dbus_codec.message_sizes(b"X" + bytes(15))
    huge = bytearray(message(2, 1, 1, "", ()))
    struct.pack_into("<I", huge, 12, dbus_codec.MAX_HEADER_BYTES + 1)
    with pytest.raises(DBusError, match="too large"):
        dbus_codec.message_sizes(huge)


@pytest.mark.parametrize(
    ("name", "valid"),
    [(":1.42", True), ("org.a11y.atspi.Registry", True), ("", False), (":1", False),
     ("org..x", False), ("a" * 256, False), (3, False)],
)  # fmt: skip
def test_only_well_formed_bus_names_are_sent_to(name: Any, valid: bool) -> None:
    assert dbus_wire.is_bus_name(name) is valid


Handler = Callable[[str, int, tuple[Any, ...] | None], list[bytes]]


class Peer:
    """A program at the end of a Unix socket: authenticates EXTERNAL, then answers
    each call with what `handler` (member, serial, args) returns."""

    def __init__(
        self, path: Path, handler: Handler, *, refuse: bool = False, drip: bool = False
    ) -> None:
        self.handler = handler
        self.calls: list[str] = []
        self._refuse = refuse
        self._drip = drip
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(1)
        self.address = f"unix:path={path}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._server.accept()
        with conn:
            data = b""
            while b"\r\n" not in data:
                data += conn.recv(4096)
            if self._refuse:
                conn.sendall(b"REJECTED EXTERNAL\r\n")
                return
            if self._drip:  # a byte at a time, never a whole line
                for _ in range(40):
                    with contextlib.suppress(OSError):
                        conn.sendall(b"O")
                    time.sleep(0.1)
                return
            conn.sendall(b"OK 0123456789abcdef\r\n")
            data = b""
            while b"BEGIN\r\n" not in data:
                data += conn.recv(4096)
            data = data.split(b"BEGIN\r\n", 1)[1]
            while True:
                sizes = dbus_codec.message_sizes(data)
                if sizes is None or len(data) < sizes[1]:
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        return
                    data += chunk
                    continue
                call, data = data[: sizes[1]], data[sizes[1] :]
                parsed = Message.parse(call)
                name = self._member(call)
                self.calls.append(name)
                (serial,) = struct.unpack_from("<I", call, 8)
                replies = self.handler(name, serial, parsed.body())
                try:
                    conn.sendall(b"".join(replies))
                except OSError:
                    return
                if replies == [b"close"]:
                    return

    @staticmethod
    def _member(call: bytes) -> str:
        # The header's MEMBER field (code 3), read with the codec's own field reader.
        (length,) = struct.unpack_from("<I", call, 12)
        fields = dbus_codec._header_fields(call, "<", 16 + length)
        return str(fields[3])

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Callable[..., Peer]]:
    made: list[Peer] = []

    def make(handler: Handler, **options: Any) -> Peer:
        made.append(Peer(tmp_path / f"peer{len(made)}", handler, **options))
        return made[-1]

    yield make
    for one in made:
        one.close()


def call(member: str, reply: str = "s", *args: Any) -> dbus_wire.Call:
    signature = "".join("s" if isinstance(arg, str) else "u" for arg in args)
    return dbus_wire.Call(":1.9", "/obj", "org.x.I", member, signature, args, reply)


def test_replies_out_of_order_each_reach_their_call_and_failures_read_as_none(peer: Any) -> None:
    held: list[bytes] = []

    def handler(member: str, serial: int, args: Any) -> list[bytes]:
        if member == "Slow":
            held.append(message(2, 100 + serial, serial, "s", ("slow",)))
            return []
        answers = {
            "Fast": lambda: message(2, 100 + serial, serial, "s", (f"fast {args[0]}",)),
            "Fails": lambda: message(3, 100 + serial, serial, "s", ("org.x.Error: no",)),
            "Shape": lambda: message(2, 100 + serial, serial, "u", (5,)),
        }
        # A signal and a stranger's reply come in between; then what was held.
        noise = [message(4, 1, 0, "", ()), message(2, 1, 99_999, "s", ("not yours",))]
        return [*noise, answers[member](), *(held if member == "Shape" else [])]

    link = dbus_wire.Connection(peer(handler).address, bus=False)
    calls = [call("Slow"), call("Fast", "s", "a"), call("Fails"), call("Shape")]
    replies = link.call_many(calls, time.monotonic() + 5)
    assert replies == [("slow",), ("fast a",), None, None]
    assert link.call_many([call("Fast", "s", "b")], time.monotonic() + 5) == [("fast b",)]
    link.close()


def test_a_reply_too_large_fails_its_call_alone_and_at_once(
    peer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dbus_wire, "MAX_MESSAGE_BYTES", 4096)

    def handler(member: str, serial: int, args: Any) -> list[bytes]:
        size = 100_000 if member == "Huge" else 10
        return [message(2, 100 + serial, serial, "s", ("x" * size,))]

    link = dbus_wire.Connection(peer(handler).address, bus=False)
    started = time.monotonic()
    replies = link.call_many([call("Huge"), call("Small")], started + 5)
    assert replies == [None, ("x" * 10,)]
    assert time.monotonic() - started < 2
    assert link.call_many([call("Small")], time.monotonic() + 5) == [("x" * 10,)]
    link.close()


def test_a_peer_that_never_answers_costs_the_deadline_and_its_late_replies_are_ignored(
    peer: Any,
) -> None:
    late: list[bytes] = []

    def handler(member: str, serial: int, args: Any) -> list[bytes]:
        if member == "Never":
            late.append(message(2, 100 + serial, serial, "s", ("late",)))
            return []
        return [*late, message(2, 100 + serial, serial, "s", ("now",))]

    link = dbus_wire.Connection(peer(handler).address, bus=False)
    started = time.monotonic()
    assert link.call_many([call("Never")], started + 0.3) == [None]
    assert 0.3 <= time.monotonic() - started < 2
    # The late reply arrives first, answering the earlier call: not taken for this one.
    assert link.call_many([call("Now")], time.monotonic() + 5) == [("now",)]
    link.close()


def test_a_peer_that_hangs_up_breaks_the_connection(peer: Any) -> None:
    link = dbus_wire.Connection(peer(lambda *_: [b"close"]).address, bus=False)
    with pytest.raises(DBusError, match="closed"):
        link.call_many([call("Any")], time.monotonic() + 5)
    assert link.closed
    with pytest.raises(DBusError, match="closed"):
        link.send([call("Any")], time.monotonic() + 5)


def test_a_bus_is_greeted_with_hello_and_a_refusal_is_an_error(peer: Any) -> None:
    def handler(member: str, serial: int, args: Any) -> list[bytes]:
        return [message(2, 100 + serial, serial, "s", (":1.77" if member == "Hello" else "ok",))]

    greeted = peer(handler)
    bus = dbus_wire.Connection(greeted.address)
    assert greeted.calls == ["Hello"]
    bus.close()
    with pytest.raises(DBusError, match="refused EXTERNAL"):
        dbus_wire.Connection(peer(handler, refuse=True).address)
    with pytest.raises(DBusError, match="no unix socket"):
        dbus_wire.Connection("tcp:host=127.0.0.1,port=1")


def test_a_peer_that_answers_authentication_a_byte_at_a_time_is_given_up_in_time(
    peer: Any,
) -> None:
    started = time.monotonic()
    with pytest.raises(DBusError, match=r"in time|timed out"):
        dbus_wire.Connection(peer(lambda *_: [], drip=True).address, 0.5, bus=False)
    assert time.monotonic() - started < 1.5


def test_a_stalled_peer_delays_no_other_and_its_calls_are_reported_late(peer: Any) -> None:
    def frozen(member: str, serial: int, args: Any) -> list[bytes]:
        return []

    def prompt(member: str, serial: int, args: Any) -> list[bytes]:
        return [message(2, 100 + serial, serial, "s", ("here",))]

    # The stalled peer first: its wait must not keep the other's replies unread.
    stalled = dbus_wire.Connection(peer(frozen).address, bus=False)
    answering = dbus_wire.Connection(peer(prompt).address, bus=False)
    deadline = time.monotonic() + 0.5
    sent = [(stalled, stalled.send([call("A"), call("B")], deadline)),
            (answering, answering.send([call("C")], deadline))]  # fmt: skip
    first, second = dbus_wire.receive_all(sent, deadline)
    assert (first.values, first.late, first.error) == ([None, None], [0, 1], None)
    assert (second.values, second.late) == ([("here",)], [])
    stalled.close()
    answering.close()
