"""A small D-Bus client on a Unix socket: many method calls sent at once, then awaited.

The accessibility reader asks the AT-SPI bus a few thousand small questions per
read. libatspi asks them one round trip at a time, and GDBus, though it can send
many before awaiting any, passes every message and every reply through a worker
thread: both cost more per call than the programs take to answer. Here a batch
of calls is written in one ``sendall`` and its replies read as they come, in one
thread, so a batch costs about what the bus and the programs spend on it.

Only what the reader needs: ``EXTERNAL`` authentication, method calls with
string and integer arguments, and replies of any type, read by `dbus_codec` with bounds (a
reply comes from a program of the session, which may lie). The protocol is the
D-Bus specification's (dbus.freedesktop.org/doc/dbus-specification.html).
Standard library only: the reader runs this as the session user.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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

__all__ = ["Batch", "Call", "Connection", "DBusError", "is_bus_name", "is_object_path"]

MAX_MESSAGE_BYTES = 8 << 20
"""A larger reply is read past, never kept whole (its call fails)."""
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
    """Calls sent on a connection, their replies still to read (`Connection.receive`)."""

    calls: Sequence[Call]
    waiting: dict[int, int]
    """Each call's index, by its serial."""


class Connection:
    """One authenticated connection, to a message bus or straight to a program.

    Args:
        address: Where (``unix:path=...`` or ``unix:abstract=...``).
        timeout: Seconds to connect, authenticate and (to a bus) say Hello.
        bus: Whether a message bus is at the other end (which must be greeted
            with Hello first), or a program itself.

    Raises:
        DBusError: It cannot be reached or refuses us.
    """

    def __init__(self, address: str, timeout: float = 5.0, *, bus: bool = True) -> None:
        self._serial = 0
        self._buffer = bytearray()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(_socket_address(address))
            self._authenticate()
            if bus:
                name = "org.freedesktop.DBus"
                hello = Call(name, "/org/freedesktop/DBus", name, "Hello", reply="s")
                if self.call_many([hello], time.monotonic() + timeout) == [None]:
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
        """`send` then `receive`."""
        return self.receive(self.send(calls, deadline), deadline)

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
        return Batch(calls, waiting)

    def receive(self, batch: Batch, deadline: float) -> list[tuple[Any, ...] | None]:
        """Read replies until each call of `batch` is answered or `deadline`.

        Returns:
            Each call's reply body as a tuple, or None where it failed: an error
            reply, a reply of another signature, no reply in time, or a reply
            too large or malformed.

        Raises:
            DBusError: The connection broke (it is closed then).
        """
        results: list[tuple[Any, ...] | None] = [None] * len(batch.calls)
        waiting = dict(batch.waiting)
        with self._closing_on_error():
            while waiting:
                reply = self._next_message(deadline)
                if reply is None:
                    break  # the deadline
                index = waiting.pop(reply.reply_serial, -1)
                if index < 0:
                    continue  # a late reply to an earlier batch, a signal, a stranger's call
                if reply.kind == METHOD_RETURN and reply.signature == batch.calls[index].reply:
                    results[index] = reply.body()
        return results

    @contextlib.contextmanager
    def _closing_on_error(self) -> Iterator[None]:
        if self.closed:
            raise DBusError("the connection is closed")
        try:
            yield
        except (OSError, DBusError) as exc:
            self.close()
            raise DBusError(f"the connection broke: {exc}") from None

    def _authenticate(self) -> None:
        uid = str(os.getuid()).encode().hex()
        self._sock.sendall(b"\0AUTH EXTERNAL " + uid.encode() + b"\r\n")
        line = self._read_line()
        if not line.startswith(b"OK "):
            raise DBusError(f"the bus refused EXTERNAL authentication: {line[:100]!r}")
        self._sock.sendall(b"BEGIN\r\n")

    def _read_line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            if len(self._buffer) > 4096:
                raise DBusError("the bus's authentication line is too long")
            chunk = self._sock.recv(4096)
            if not chunk:
                raise DBusError("the bus closed the connection while authenticating")
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\r\n")
        self._buffer = bytearray(rest)
        return line

    def _next_message(self, deadline: float) -> Message | None:
        """The next message, or None at `deadline`.

        One over `MAX_MESSAGE_BYTES` is returned without its body (which is read
        past, never kept), so its call fails at once rather than at the deadline.
        """
        while True:
            sizes = message_sizes(self._buffer)
            if sizes is not None:
                head, size = sizes
                if len(self._buffer) >= size:
                    data = bytes(self._buffer[:size])
                    del self._buffer[:size]
                    return Message.parse(data)
                if size > MAX_MESSAGE_BYTES and len(self._buffer) >= head:
                    message = Message.parse(bytes(self._buffer[:head]), with_body=False)
                    self._skip(size - len(self._buffer), deadline)
                    return message
            if not self._receive(deadline, 1 << 16):
                return None

    def _receive(self, deadline: float, most: int) -> bool:
        """Read at most `most` more bytes into the buffer; False at `deadline`."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self._sock.settimeout(left)
        try:
            chunk = self._sock.recv(most)
        except TimeoutError:
            return False
        if not chunk:
            raise DBusError("the bus closed the connection")
        self._buffer += chunk
        return True

    def _skip(self, left: int, deadline: float) -> None:
        """Read past the `left` bytes still to come of the message in the buffer."""
        self._buffer.clear()
        while left > 0:
            if not self._receive(deadline, min(left, 1 << 16)):
                raise DBusError("a message too large to read was not read past in time")
            left -= len(self._buffer)
            self._buffer.clear()


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
