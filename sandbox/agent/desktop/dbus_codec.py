"""D-Bus messages as bytes: method calls written, any message read, within bounds.

The specification's wire format (dbus.freedesktop.org/doc/dbus-specification.html):
a 16-byte fixed header, header fields ``a(yv)``, padding to 8, the body; every
value aligned to its size from the message's start. Calls are written
little-endian with ``s``, ``u`` and ``i`` arguments (all `dbus_wire` sends);
replies are read in either byte order and of any type, with every length,
nesting and offset checked, since a reply comes from a program of the session.

A body is read by a decoder built once per signature (`_decoder`): the reader
parses a few thousand replies of the same dozen shapes per tree. Standard
library only.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

MAX_HEADER_BYTES = 1 << 16
METHOD_CALL, METHOD_RETURN = 1, 2
_NO_AUTO_START = 0x2
_PATH, _INTERFACE, _MEMBER, _REPLY_SERIAL, _DESTINATION, _SIGNATURE = 1, 2, 3, 5, 6, 8
_MAX_DEPTH = 64
"""Containers within containers, variants included (the specification allows 64)."""
_MAX_NESTING = 32
"""Arrays within arrays, and structs within structs, in one signature (the specification's)."""
_BASIC = frozenset("ybnqiuxtdhsog")
"""The types a dict entry's key may have."""
_FIXED = {"y": ("B", 1), "b": ("I", 4), "n": ("h", 2), "q": ("H", 2), "i": ("i", 4),
          "u": ("I", 4), "x": ("q", 8), "t": ("Q", 8), "d": ("d", 8), "h": ("I", 4)}  # fmt: skip
_ALIGNMENT = {**{kind: size for kind, (_, size) in _FIXED.items()}, "g": 1, "v": 1,
              "s": 4, "o": 4, "a": 4, "(": 8, "{": 8}  # fmt: skip


class DBusError(Exception):
    """A connection failed, or a message broke the protocol."""


_MALFORMED = (
    DBusError, struct.error, UnicodeDecodeError, IndexError, KeyError, ValueError, TypeError,
)  # fmt: skip
"""What reading a malformed message may raise."""


def method_call(
    serial: int,
    destination: str,
    path: str,
    interface: str,
    member: str,
    signature: str = "",
    args: tuple[Any, ...] = (),
    auto_start: bool = False,
) -> bytes:
    """A method call's bytes; `signature` made of ``s``, ``u`` and ``i`` only."""
    head = _call_header(destination, path, interface, member, signature, auto_start)
    body = _marshal_args(signature, args)
    return head[:4] + struct.pack("<II", len(body), serial) + head[12:] + body


@lru_cache(maxsize=4096)
def _call_header(
    destination: str, path: str, interface: str, member: str, signature: str, auto_start: bool
) -> bytes:
    """A call's header with its body length and serial left 0 (a reader asks the same
    few calls of the same objects read after read)."""
    fields = [(_PATH, "o", path), (_INTERFACE, "s", interface), (_MEMBER, "s", member),
              (_DESTINATION, "s", destination)]  # fmt: skip
    if signature:
        fields.append((_SIGNATURE, "g", signature))
    flags = 0 if auto_start else _NO_AUTO_START
    head = bytearray(struct.pack("<cBBBII", b"l", METHOD_CALL, flags, 1, 0, 0))
    head += b"\0\0\0\0"  # the header fields' length, below
    for code, kind, value in fields:
        _pad(head, 8)
        encoded = value.encode()
        head += struct.pack("<BB", code, 1) + kind.encode() + b"\0"
        if kind == "g":
            head += struct.pack("<B", len(encoded)) + encoded + b"\0"
        else:
            _pad(head, 4)
            head += struct.pack("<I", len(encoded)) + encoded + b"\0"
    struct.pack_into("<I", head, 12, len(head) - 16)
    _pad(head, 8)
    return bytes(head)


def _marshal_args(signature: str, args: tuple[Any, ...]) -> bytes:
    body = bytearray()
    for kind, value in zip(signature, args, strict=True):
        _pad(body, 4)
        if kind == "s":
            encoded = str(value).encode()
            body += struct.pack("<I", len(encoded)) + encoded + b"\0"
        elif kind in "ui":
            body += struct.pack("<" + _FIXED[kind][0], value)
        else:
            raise ValueError(f"argument type {kind!r} is not supported")
    return bytes(body)


def _pad(buffer: bytearray, alignment: int) -> None:
    buffer += b"\0" * (-len(buffer) % alignment)


def message_sizes(buffer: bytes | bytearray) -> tuple[int, int] | None:
    """The header's and the whole message's sizes, once `buffer` holds the fixed header.

    Raises:
        DBusError: An unknown byte order, or a header over `MAX_HEADER_BYTES`.
    """
    if len(buffer) < 16:
        return None
    order = {0x6C: "<", 0x42: ">"}.get(buffer[0])
    if order is None:
        raise DBusError("a message in an unknown byte order")
    body, fields = struct.unpack_from(order + "I4xI", buffer, 4)
    if fields > MAX_HEADER_BYTES:
        raise DBusError("a message's header is too large")
    head = 16 + fields + (-fields % 8)
    return head, head + body


@dataclass
class Message:
    """A message read: what tells which call it answers, and its body unread.

    Attributes:
        kind: `METHOD_RETURN`, an error (3), ...; 0 for a message read without its body.
        reply_serial: The serial of the call it answers (0: none).
        signature: Its body's signature.
    """

    kind: int
    reply_serial: int
    signature: str
    _data: bytes
    _order: str
    _body_at: int

    @classmethod
    def parse(cls, data: bytes, *, with_body: bool = True) -> Message:
        """The message in `data`: its header, or (not `with_body`) its header alone.

        Raises:
            DBusError: The header is malformed.
        """
        order = "<" if data[0] == 0x6C else ">"
        (fields_length,) = struct.unpack_from(order + "I", data, 12)
        try:
            fields = _header_fields(data, order, 16 + fields_length)
        except _MALFORMED as exc:
            raise DBusError(f"a malformed message header: {exc}") from None
        serial = fields.get(_REPLY_SERIAL)
        signature = fields.get(_SIGNATURE, "")
        return cls(
            kind=data[1] if with_body else 0,
            reply_serial=serial if isinstance(serial, int) else 0,
            signature=signature if isinstance(signature, str) else "",
            _data=data,
            _order=order,
            _body_at=16 + fields_length + (-fields_length % 8),
        )

    def body(self) -> tuple[Any, ...] | None:
        """The body's values, or None if it does not parse as its signature."""
        data, at = self._data, self._body_at
        values = []
        try:
            for kind in _types(self.signature):
                value, at = _checked_decoder(kind, self._order)(data, at, len(data), 0)
                values.append(value)
        except _MALFORMED:
            return None
        return tuple(values)


def _header_fields(data: bytes, order: str, end: int) -> dict[int, Any]:
    """The header's fields by code: the types the specification gives them read
    directly (every message has several), any other through its decoder."""
    fields: dict[int, Any] = {}
    u32 = struct.Struct(order + "I").unpack_from
    at = 16
    while at < end:
        at += -at % 8
        code, length = data[at], data[at + 1]
        kind = data[at + 2 : at + 2 + length]
        at += 3 + length
        if kind == b"u":
            at += -at % 4
            (fields[code],) = u32(data, at)
            at += 4
        elif kind in (b"s", b"o"):
            at += -at % 4
            (size,) = u32(data, at)
            fields[code] = data[at + 4 : at + 4 + size].decode("utf-8")
            at += 5 + size
        elif kind == b"g":
            size = data[at]
            fields[code] = data[at + 1 : at + 1 + size].decode("ascii")
            at += 2 + size
        else:
            fields[code], at = _checked_decoder(kind.decode("ascii"), order)(data, at, end, 0)
    if at > end:
        raise DBusError("a header field runs past the header")
    return fields


_Decoder = Callable[[bytes, int, int, int], tuple[Any, int]]
"""(message, offset, end, depth) -> (value, offset after it)."""


@lru_cache(maxsize=256)
def _checked_decoder(kind: str, order: str) -> _Decoder:
    """`_decoder` of `kind` once it is checked to be a single complete type.

    Raises:
        DBusError: It is not one.
    """
    _check(kind, arrays=0, structs=0, in_array=False)
    return _decoder(kind, order)


def _check(kind: str, *, arrays: int, structs: int, in_array: bool) -> None:
    """Raise unless `kind` is one complete type as the specification allows it: no
    empty struct (whose array would never end), a dict entry only as an array's
    element with a basic key, at most 32 arrays and 32 structs deep."""
    head = kind[0]
    if head in _BASIC or head == "v":
        if len(kind) != 1:
            raise DBusError(f"not one type: {kind!r}")
    elif head == "a":
        if arrays >= _MAX_NESTING:
            raise DBusError("arrays nested too deeply")
        _check(kind[1:], arrays=arrays + 1, structs=structs, in_array=True)
    elif head in "({":
        parts = _types(kind[1:-1])
        closing = ")" if head == "(" else "}"
        if kind[-1] != closing or not parts or structs >= _MAX_NESTING:
            raise DBusError(f"a malformed struct: {kind!r}")
        if head == "{" and (not in_array or len(parts) != 2 or parts[0] not in _BASIC):
            raise DBusError(f"a malformed dict entry: {kind!r}")
        for part in parts:
            _check(part, arrays=arrays, structs=structs + 1, in_array=False)
    else:
        raise DBusError(f"unknown type {kind!r}")


@lru_cache(maxsize=256)
def _decoder(kind: str, order: str) -> _Decoder:
    """A reader of one complete type `kind` (checked), aligned from the message's start."""
    head = kind[0]
    if head in _FIXED:
        return _fixed(kind, order)
    if head in "sog":
        return _string(head, order)
    if head == "v":
        return _variant(order)
    if head == "a":
        return _array(kind[1:], order)
    return _struct(_types(kind[1:-1]), order)


def _fixed(kind: str, order: str) -> _Decoder:
    code, size = _FIXED[kind]
    unpack = struct.Struct(order + code).unpack_from

    def fixed(data: bytes, at: int, end: int, depth: int) -> tuple[Any, int]:
        at += -at % size
        if at + size > end:
            raise DBusError("a value runs past its container")
        return unpack(data, at)[0], at + size

    return fixed


def _string(kind: str, order: str) -> _Decoder:
    u32 = struct.Struct(order + "I").unpack_from

    def string(data: bytes, at: int, end: int, depth: int) -> tuple[Any, int]:
        if kind == "g":
            size = data[at]
            at += 1
        else:
            at += -at % 4
            (size,) = u32(data, at)
            at += 4
        if at + size + 1 > end:
            raise DBusError("a string runs past its container")
        return data[at : at + size].decode("utf-8"), at + size + 1

    return string


def _variant(order: str) -> _Decoder:
    signature = _string("g", order)

    def variant(data: bytes, at: int, end: int, depth: int) -> tuple[Any, int]:
        if depth >= _MAX_DEPTH:
            raise DBusError("values nested too deeply")
        inner, at = signature(data, at, end, depth)
        return _checked_decoder(inner, order)(data, at, end, depth + 1)

    return variant


def _array(element: str, order: str) -> _Decoder:
    u32 = struct.Struct(order + "I").unpack_from
    alignment = _ALIGNMENT[element[0]]
    read = _decoder(element, order)
    as_dict = element[0] == "{"

    def array(data: bytes, at: int, end: int, depth: int) -> tuple[Any, int]:
        if depth >= _MAX_DEPTH:
            raise DBusError("values nested too deeply")
        at += -at % 4
        (size,) = u32(data, at)
        at += 4
        at += -at % alignment
        stop = at + size
        if stop > end:
            raise DBusError("an array runs past its container")
        items = []
        while at < stop:
            item, after = read(data, at, stop, depth + 1)
            if after <= at:
                raise DBusError("an array element of no size")
            items.append(item)
            at = after
        return (dict(items) if as_dict else items), at

    return array


def _struct(parts: tuple[str, ...], order: str) -> _Decoder:
    reads = [_decoder(part, order) for part in parts]

    def struct_(data: bytes, at: int, end: int, depth: int) -> tuple[Any, int]:
        if depth >= _MAX_DEPTH:
            raise DBusError("values nested too deeply")
        at += -at % 8
        values = []
        for read in reads:
            value, at = read(data, at, end, depth + 1)
            values.append(value)
        return tuple(values), at

    return struct_


@lru_cache(maxsize=256)
def _types(signature: str) -> tuple[str, ...]:
    """`signature` split into its complete types: ``"a(so)u"`` -> ``("a(so)", "u")``.

    Raises:
        DBusError: It is not a signature.
    """
    if len(signature) > 255:
        raise DBusError("a signature over 255 characters")
    types = []
    at = 0
    while at < len(signature):
        end = at
        while end < len(signature) and signature[end] == "a":
            end += 1
        if end == len(signature):
            raise DBusError(f"an array of nothing in {signature!r}")
        if signature[end] in "({":
            depth = 0
            while True:
                if end == len(signature):
                    raise DBusError(f"an unclosed struct in {signature!r}")
                depth += {"(": 1, "{": 1, ")": -1, "}": -1}.get(signature[end], 0)
                if depth == 0:
                    break
                end += 1
        types.append(signature[at : end + 1])
        at = end + 1
    return tuple(types)
