"""A VNC viewer's side of RFB (RFC 6143), read message by message: what the live view lets through.

The ``/ui`` bridge passes the VNC server's bytes to the browser as they come,
and the browser's bytes to the session's VNC server only through
`ClientFilter`. It parses the client's stream whole, from the handshake on:
the protocol version (3.7 or 3.8; 3.3 is refused), the security type (None
only: the server authenticated the viewer already), ClientInit, then each
message by its type and length. A view-only filter drops every message that
would reach the session's input (`INPUT_MESSAGES`: keys, the pointer, the
clipboard, desktop size, power actions) and passes the rest (pixel format,
encodings, update requests, fences). A message of an unknown type, a length
past its bound, or a wrong handshake ends the stream (`RfbViolation`): with
framing unknown, nothing after it could be told apart.

Nothing is buffered past one message: the largest is a client cut text of
`max_cut_text` bytes.
"""

from __future__ import annotations

import struct

INPUT_MESSAGES = {
    4: "KeyEvent",
    5: "PointerEvent",
    6: "ClientCutText",
    250: "xvp",
    251: "SetDesktopSize",
    255: "QEMU key event",
}
"""Client messages that act on the session: dropped from a view-only viewer."""
MAX_ENCODINGS = 1024
"""Most encodings one SetEncodings may list (noVNC sends about 20)."""
MAX_SCREENS = 16
"""Most screens one SetDesktopSize may describe."""
DEFAULT_MAX_CUT_TEXT = 1 << 20
"""Most bytes of clipboard text one message may carry."""
_VERSIONS = (b"RFB 003.007\n", b"RFB 003.008\n")
_SECURITY_NONE = 1
_FIXED = {0: 20, 3: 10, 4: 8, 5: 6, 150: 10, 250: 4}
"""Sizes of the client messages whose size is fixed."""


class RfbViolation(ValueError):
    """The viewer's stream is not RFB the bridge accepts; the view must end."""


class ClientFilter:
    """Parses a viewer's RFB stream and returns what may reach the VNC server.

    Args:
        view_only: Drop the messages that would act on the session.
        max_cut_text: Largest clipboard text accepted (a longer one is a violation).
    """

    def __init__(self, *, view_only: bool, max_cut_text: int = DEFAULT_MAX_CUT_TEXT) -> None:
        self.view_only = view_only
        self.max_cut_text = max_cut_text
        self.dropped: dict[str, int] = {}
        """How many messages of each input kind were dropped."""
        self._stage = "version"
        self._pending = bytearray()

    def feed(self, data: bytes) -> bytes:
        """The bytes of the complete messages in `data` (after what came before)
        that may reach the VNC server; a partial message waits for the rest.

        Raises:
            RfbViolation: The stream broke the protocol or a bound.
        """
        self._pending += data
        out = bytearray()
        while True:
            size = self._next_size()
            if size is None or len(self._pending) < size:
                break
            message = bytes(self._pending[:size])
            del self._pending[:size]
            if self._accept(message):
                out += message
        return bytes(out)

    def _next_size(self) -> int | None:
        """The size of the next unit of the stream; None while too few bytes tell it."""
        buffer = self._pending
        if self._stage == "version":
            return len(_VERSIONS[0])
        if self._stage in ("security", "init"):
            return 1
        if not buffer:
            return None
        kind = buffer[0]
        if kind in _FIXED:
            return _FIXED[kind]
        if kind == 2:  # SetEncodings: padding, u16 count, s32 each
            if len(buffer) < 4:
                return None
            count: int = struct.unpack_from(">H", buffer, 2)[0]
            if count > MAX_ENCODINGS:
                raise RfbViolation(f"SetEncodings lists {count} encodings (most {MAX_ENCODINGS})")
            return 4 + 4 * count
        if kind == 6:  # ClientCutText: 3 padding, s32 length (negative: extended clipboard)
            if len(buffer) < 8:
                return None
            length: int = struct.unpack_from(">i", buffer, 4)[0]
            if abs(length) > self.max_cut_text:
                raise RfbViolation(
                    f"ClientCutText of {abs(length)} bytes (most {self.max_cut_text})"
                )
            return 8 + abs(length)
        if kind == 248:  # ClientFence: 3 padding, u32 flags, u8 length, payload (<= 64)
            if len(buffer) < 9:
                return None
            if buffer[8] > 64:
                raise RfbViolation(f"ClientFence with {buffer[8]} bytes of payload (most 64)")
            return 9 + buffer[8]
        if kind == 251:  # SetDesktopSize: pad, u16 w, u16 h, u8 screens, pad, 16 each
            if len(buffer) < 8:
                return None
            if buffer[6] > MAX_SCREENS:
                raise RfbViolation(f"SetDesktopSize with {buffer[6]} screens (most {MAX_SCREENS})")
            return 8 + 16 * buffer[6]
        if kind == 255:  # QEMU: only its extended key event (subtype 0), 12 bytes
            if len(buffer) < 2:
                return None
            if buffer[1] != 0:
                raise RfbViolation(f"QEMU client message of subtype {buffer[1]}")
            return 12
        raise RfbViolation(f"unknown client message type {kind}")

    def _accept(self, message: bytes) -> bool:
        """Advance the handshake; whether `message` may reach the server."""
        if self._stage == "version":
            if message not in _VERSIONS:
                raise RfbViolation(
                    f"protocol version {message[:12]!r}: the live view speaks RFB 3.7 and 3.8"
                )
            self._stage = "security"
            return True
        if self._stage == "security":
            if message[0] != _SECURITY_NONE:
                raise RfbViolation(f"security type {message[0]}: the live view offers None (1)")
            self._stage = "init"
            return True
        if self._stage == "init":
            self._stage = "messages"
            return True
        name = INPUT_MESSAGES.get(message[0])
        if name is not None and self.view_only:
            self.dropped[name] = self.dropped.get(name, 0) + 1
            return False
        return True


__all__ = ["INPUT_MESSAGES", "ClientFilter", "RfbViolation"]
