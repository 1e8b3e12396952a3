"""The live view's reading of a VNC viewer's RFB stream: what reaches the session."""

from __future__ import annotations

import struct

import pytest

from sandbox.server.rfb import ClientFilter, RfbViolation

HANDSHAKE = b"RFB 003.008\n" + b"\x01" + b"\x01"  # version, security None, ClientInit
SET_PIXEL_FORMAT = b"\x00\x00\x00\x00" + struct.pack(
    ">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0
)
SET_ENCODINGS = struct.pack(">BxH3i", 2, 3, 0, 7, -223)
UPDATE_REQUEST = struct.pack(">BBHHHH", 3, 1, 0, 0, 800, 600)
KEY = struct.pack(">BBxxI", 4, 1, 0x61)
POINTER = struct.pack(">BBHH", 5, 1, 100, 100)
CUT_TEXT = struct.pack(">Bxxxi", 6, 5) + b"hello"
EXTENDED_CUT_TEXT = struct.pack(">Bxxxi", 6, -8) + struct.pack(">II", 1 << 24, 0)
FENCE = struct.pack(">BxxxIB", 248, 1 << 31, 4) + b"abcd"
CONTINUOUS = struct.pack(">BBHHHH", 150, 1, 0, 0, 800, 600)
DESKTOP_SIZE = struct.pack(">BxHHBx", 251, 640, 480, 1) + bytes(16)
QEMU_KEY = struct.pack(">BBHII", 255, 0, 1, 0x61, 30)
XVP = struct.pack(">BxBB", 250, 1, 2)
VIEWING = SET_PIXEL_FORMAT + SET_ENCODINGS + UPDATE_REQUEST + FENCE + CONTINUOUS
INPUT = KEY + POINTER + CUT_TEXT + EXTENDED_CUT_TEXT + DESKTOP_SIZE + QEMU_KEY + XVP


def test_a_view_only_viewer_reaches_nothing_but_the_picture() -> None:
    rfb = ClientFilter(view_only=True)
    passed = rfb.feed(HANDSHAKE + SET_PIXEL_FORMAT + KEY + SET_ENCODINGS + POINTER)
    passed += rfb.feed(UPDATE_REQUEST + CUT_TEXT + FENCE + INPUT + CONTINUOUS)
    assert passed == HANDSHAKE + VIEWING
    assert rfb.dropped == {
        "KeyEvent": 2,
        "PointerEvent": 2,
        "ClientCutText": 3,
        "SetDesktopSize": 1,
        "QEMU key event": 1,
        "xvp": 1,
    }


def test_messages_split_anywhere_come_out_the_same() -> None:
    stream = HANDSHAKE + INPUT + VIEWING + INPUT
    whole = ClientFilter(view_only=True).feed(stream)
    rfb = ClientFilter(view_only=True)
    by_byte = b"".join(rfb.feed(stream[i : i + 1]) for i in range(len(stream)))
    assert by_byte == whole == HANDSHAKE + VIEWING
    half = ClientFilter(view_only=True)
    assert half.feed(HANDSHAKE + POINTER[:3]) == HANDSHAKE, "a partial message waits"
    assert half.feed(POINTER[3:] + UPDATE_REQUEST[:9]) == b""
    assert half.feed(UPDATE_REQUEST[9:]) == UPDATE_REQUEST


def test_a_viewer_in_control_reaches_the_session() -> None:
    rfb = ClientFilter(view_only=False)
    stream = HANDSHAKE + INPUT + VIEWING
    assert rfb.feed(stream) == stream
    assert rfb.dropped == {}


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (b"RFB 003.003\n", "protocol version"),
        (b"GET / HTTP/1.1\r\n", "protocol version"),
        (b"RFB 003.008\n\x02", "security type 2"),
        (HANDSHAKE + b"\x07", "unknown client message type 7"),
        (HANDSHAKE + b"\x01", "unknown client message type 1"),
        (HANDSHAKE + struct.pack(">BxH", 2, 1025), "1025 encodings"),
        (HANDSHAKE + struct.pack(">Bxxxi", 6, (1 << 20) + 1), "ClientCutText of 1048577"),
        (HANDSHAKE + struct.pack(">Bxxxi", 6, -(1 << 31)), "ClientCutText of 2147483648"),
        (HANDSHAKE + struct.pack(">BxxxIB", 248, 0, 65), "65 bytes of payload"),
        (HANDSHAKE + struct.pack(">BxHHBx", 251, 1, 1, 17), "17 screens"),
        (HANDSHAKE + b"\xff\x01", "QEMU client message of subtype 1"),
    ],
)
def test_a_malformed_stream_ends_the_view(stream: bytes, reason: str) -> None:
    for view_only in (True, False):
        with pytest.raises(RfbViolation, match=reason):
            ClientFilter(view_only=view_only).feed(stream)


def test_a_long_clipboard_is_refused_before_it_is_buffered() -> None:
    rfb = ClientFilter(view_only=False, max_cut_text=16)
    rfb.feed(HANDSHAKE)
    with pytest.raises(RfbViolation, match="most 16"):
        rfb.feed(struct.pack(">Bxxxi", 6, 17))  # the header alone: no text is waited for
