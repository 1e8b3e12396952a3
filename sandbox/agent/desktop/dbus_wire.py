"""A small D-Bus client on Unix sockets: many method calls sent at once, then awaited.

The accessibility reader asks the AT-SPI bus a few thousand small questions per
read. libatspi asks them one round trip at a time, and GDBus, though it can send
many before awaiting any, passes every message and every reply through a worker
thread: both cost more per call than the programs take to answer. Here a batch
of calls is written in one ``sendall`` and the replies of the batches sent on
several connections are read as they come on any of them (`receive_all`), in one
thread, so a batch costs about what the bus and the programs spend on it.

Only what the reader needs: ``EXTERNAL`` authentication, method calls with
string and integer arguments, and replies of any type, read by `dbus_codec`
within bounds (a reply comes from a program of the session, which may lie). The
protocol is the D-Bus specification's
(dbus.freedesktop.org/doc/dbus-specification.html). Standard library only: the
reader runs this as the session user.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

if __package__:
    from .dbus_codec import METHOD_RETURN, DBusError, Message, message_sizes, method_call
else:  # run from the reader script: this file's directory is sys.path[0]
    from dbus_codec import (  # type: ignore[import-not-found,no-redef]
        METHOD_RETURN,
        DBusError,
        Message,
        message_sizes,
        method_call,
    )

__all__ = [
    "Batch",
    "Call",
    "Connection",
    "DBusError",
    "is_bus_name",
    "is_object_path",
    "receive_all",
]

MAX_MESSAGE_BYTES = 256 << 10
"""A larger reply is read past, never kept (its call fails): the reader's largest
(100 children, 1,000 characters of text) take a few KiB."""
BATCH_DECODE_BYTES = 8 << 20
"""Replies of one batch decoded at most, in bytes; later ones read as failed (what
a reply decodes to takes up to ~10 times its bytes)."""
_BUS_NAME = re.compile(
    r":[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+|[A-Za-z_-][A-Za-z0-9_-]*(\.[A-Za-z_-][A-Za-z0-9_-]*)+"
)
_OBJECT_PATH = re.compile(r"/|(/[A-Za-z0-9_]+)+")


@dataclass(frozen=True)
class Call:
    """One method call.

    Attributes:
        destination: The bus name that answers (``:1.42``).
        path: The object's path.
        interface: The method's interface.
        member: The method's name.
        signature: The arguments' D-Bus types: "" or made of ``s``, ``u`` and ``i``.
        args: The arguments.
        reply: The reply's body signature that is accepted (another is a failure).
        auto_start: Whether the bus may start the destination's program to answer.
    """

    destination: str
    path: str
    interface: str
    member: str
    signature: str = ""
    args: tuple[Any, ...] = ()
    reply: str = ""
    auto_start: bool = False


def is_bus_name(name: object) -> bool:
    """Whether `name` may be sent as a destination (the bus drops a client that
    sends a malformed one)."""
    return isinstance(name, str) and len(name) <= 255 and _BUS_NAME.fullmatch(name) is not None


def is_object_path(path: object) -> bool:
    """Whether `path` is a well-formed object path."""
    return isinstance(path, str) and _OBJECT_PATH.fullmatch(path) is not None


@dataclass
class Batch:
    """Calls sent on a connection, their replies still to read (`receive_all`)."""

    calls: Sequence[Call]
    waiting: dict[int, int]
    """Each call's index, by its serial, until its reply is read."""
    values: list[tuple[Any, ...] | None] = field(default_factory=list)
    """Each call's reply body, None until it came (or if it failed)."""
    decode_left: int = BATCH_DECODE_BYTES
    error: DBusError | None = None
    """Why the connection broke while its replies were awaited (it is closed)."""

    @property
    def late(self) -> list[int]:
        """The calls not answered (by the deadline, or before the connection broke)."""
        return sorted(self.waiting.values())


class Connection:
    """One authenticated connection, to a message bus or straight to a program.

    Args:
        address: Where (``unix:path=...`` or ``unix:abstract=...``).
        timeout: Seconds to connect, authenticate and (to a bus) say Hello, in all.
        bus: Whether a message bus is at the other end (which must be greeted
            with Hello first), or a program itself.

    Raises:
        DBusError: It cannot be reached, refuses us, or takes longer than `timeout`.
    """

    def __init__(self, address: str, timeout: float = 5.0, *, bus: bool = True) -> None:
        deadline = time.monotonic() + timeout
        self._serial = 0
        self._buffer = bytearray()
        self._skip = 0
        """Bytes still to come of a message too large to keep, read past."""
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(_socket_address(address))
            self._authenticate(deadline)
            if bus:
                name = "org.freedesktop.DBus"
                hello = Call(name, "/org/freedesktop/DBus", name, "Hello", reply="s")
                if self.call_many([hello], deadline) == [None]:
                    raise DBusError("no answer to Hello")
        except (OSError, DBusError) as exc:
            self.close()
            raise DBusError(f"cannot connect to {address}: {exc}") from None

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (it is after any failure on it)."""
        return self._sock.fileno() < 0

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()

    def call_many(self, calls: Sequence[Call], deadline: float) -> list[tuple[Any, ...] | None]:
        """Send every call, then await their replies until `deadline`.

        Returns:
            Each call's reply body as a tuple, or None where it failed: an error
            reply, a reply of another signature, no reply in time, or a reply
            too large or malformed.

        Raises:
            DBusError: The connection broke (it is closed then).
        """
        (batch,) = receive_all([(self, self.send(calls, deadline))], deadline)
        if batch.error is not None:
            raise batch.error
        return batch.values

    def send(self, calls: Sequence[Call], deadline: float) -> Batch:
        """Send every call in one write.

        Raises:
            DBusError: The connection broke (it is closed then).
        """
        waiting: dict[int, int] = {}
        messages = []
        for index, call in enumerate(calls):
            self._serial = self._serial % 0xFFFFFFFF + 1
            waiting[self._serial] = index
            messages.append(
                method_call(self._serial, call.destination, call.path, call.interface,
                            call.member, call.signature, call.args, call.auto_start)
            )  # fmt: skip
        with self._closing_on_error():
            self._sock.settimeout(max(0.001, deadline - time.monotonic()))
            self._sock.sendall(b"".join(messages))
        return Batch(calls, waiting, [None] * len(calls))

    def _take(self, batch: Batch) -> None:
        """Match the whole messages in the buffer to `batch`'s calls; skip one too large."""
        while self._skip == 0 and (sizes := message_sizes(self._buffer)) is not None:
            head, size = sizes
            if size > MAX_MESSAGE_BYTES:
                if len(self._buffer) < head:
                    return
                # Its call fails now, not at the deadline; its body is read past.
                reply = Message.parse(bytes(self._buffer[:head]), with_body=False)
                batch.waiting.pop(reply.reply_serial, None)
                taken = min(size, len(self._buffer))
                del self._buffer[:taken]
                self._skip = size - taken
                continue
            if len(self._buffer) < size:
                return
            message = Message.parse(bytes(self._buffer[:size]))
            del self._buffer[:size]
            index = batch.waiting.pop(message.reply_serial, -1)
            if index < 0:
                continue  # a late reply to an earlier batch, a signal, a stranger's call
            expected = (
                message.kind == METHOD_RETURN and message.signature == batch.calls[index].reply
            )
            if expected and size <= batch.decode_left:
                batch.decode_left -= size
                batch.values[index] = message.body()

    def _read_some(self) -> None:
        """Read what has come (the socket is readable), past a message being skipped."""
        self._sock.settimeout(0)
        try:
            chunk = self._sock.recv(1 << 16)
        except BlockingIOError:
            return  # woken for nothing
        if not chunk:
            raise DBusError("the peer closed the connection")
        skipped = min(self._skip, len(chunk))
        self._skip -= skipped
        self._buffer += chunk[skipped:]

    def pump(self, batch: Batch, selector: selectors.BaseSelector, *, read: bool) -> None:
        """Read what has come if `read`, take it for `batch`, and have `selector`
        watch this connection while `batch` misses replies (for `receive_all`)."""
        watched = self._sock in {key.fileobj for key in selector.get_map().values()}
        try:
            if read:
                self._read_some()
            self._take(batch)
        except (OSError, DBusError) as exc:
            if watched:
                selector.unregister(self._sock)
            self.close()
            batch.error = DBusError(f"the connection broke: {exc}")
            return
        if batch.waiting and not watched:
            selector.register(self._sock, selectors.EVENT_READ, (self, batch))
        elif not batch.waiting and watched:
            selector.unregister(self._sock)

    @contextlib.contextmanager
    def _closing_on_error(self) -> Iterator[None]:
        if self.closed:
            raise DBusError("the connection is closed")
        try:
            yield
        except (OSError, DBusError) as exc:
            self.close()
            raise DBusError(f"the connection broke: {exc}") from None

    def _authenticate(self, deadline: float) -> None:
        uid = str(os.getuid()).encode().hex()
        self._sock.sendall(b"\0AUTH EXTERNAL " + uid.encode() + b"\r\n")
        line = self._read_line(deadline)
        if not line.startswith(b"OK "):
            raise DBusError(f"refused EXTERNAL authentication: {line[:100]!r}")
        self._sock.sendall(b"BEGIN\r\n")

    def _read_line(self, deadline: float) -> bytes:
        while b"\r\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DBusError("no answer to authentication in time")
            if len(self._buffer) > 4096:
                raise DBusError("the authentication answer is too long")
            self._sock.settimeout(left)
            chunk = self._sock.recv(4096)
            if not chunk:
                raise DBusError("closed while authenticating")
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\r\n")
        self._buffer = bytearray(rest)
        return line


def receive_all(batches: Sequence[tuple[Connection, Batch]], deadline: float) -> list[Batch]:
    """Read the replies of batches sent on several connections, as they come on any,
    until each is answered or `deadline`: a program that stalls delays no other's.

    A connection that breaks is closed and its batch's `error` set; the others go on.
    """
    with selectors.DefaultSelector() as selector:
        for link, batch in batches:
            link.pump(batch, selector, read=False)
        while selector.get_map():
            left = deadline - time.monotonic()
            ready = selector.select(max(0.0, left))
            for key, _ in ready:
                link, batch = key.data
                link.pump(batch, selector, read=True)
            if not ready or left <= 0:
                break  # the deadline: what had come by then is taken, once
    return [batch for _, batch in batches]


def _socket_address(address: str) -> str | bytes:
    for entry in address.split(";"):
        kind, _, params = entry.partition(":")
        values = dict(part.partition("=")[::2] for part in params.split(","))
        if kind == "unix" and "path" in values:
            return _unescape(values["path"])
        if kind == "unix" and "abstract" in values:
            return b"\0" + _unescape(values["abstract"]).encode()
    raise DBusError(f"no unix socket in the bus address {address!r}")


def _unescape(value: str) -> str:
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda match: chr(int(match.group(1), 16)), value)
