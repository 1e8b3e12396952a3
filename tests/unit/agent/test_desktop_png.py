"""PNG encoding of BGRX pixels, checked with an independent decoder."""

from __future__ import annotations

import struct
import zlib

import pytest

from sandbox.agent.desktop.png import PNG_SIGNATURE, bgrx_to_png, rgb_to_png


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB PNG, verifying every CRC."""
    assert data[:8] == PNG_SIGNATURE
    offset, chunks = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        offset += 12 + length
    assert chunks[0][0] == b"IHDR"
    assert chunks[-1] == (b"IEND", b"")
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, color, interlace) == (8, 2, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = 3 * width
    assert len(raw) == (stride + 1) * height
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        if kind == 0:  # no filter: nothing to undo (and fast for screen-sized images)
            rows.append(bytes(line))
            previous = line
            continue
        for i in range(stride):
            left = line[i - 3] if i >= 3 else 0
            up = previous[i]
            corner = previous[i - 3] if i >= 3 else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, rows


def _bgrx(width: int, height: int) -> bytes:
    """A gradient: pixel (x, y) is R=x, G=y, B=x^y, X=garbage."""
    return b"".join(bytes((x ^ y, y, x, 0xAB)) for y in range(height) for x in range(width))


def test_bgrx_pixels_round_trip_as_rgb() -> None:
    png = bgrx_to_png(_bgrx(37, 11), 37, 11)
    width, height, rows = decode_png(png)
    assert (width, height) == (37, 11)
    assert rows[5][3 * 7 : 3 * 8] == bytes((7, 5, 7 ^ 5))
    assert rows == [b"".join(bytes((x, y, x ^ y)) for x in range(37)) for y in range(11)]


def test_padded_rows_are_cut_to_the_width() -> None:
    width, height = 5, 3
    rows = [_bgrx(width, height)[y * 20 : (y + 1) * 20] + b"\xff" * 12 for y in range(height)]
    png = bgrx_to_png(b"".join(rows), width, height, stride=32)
    assert decode_png(png) == decode_png(bgrx_to_png(_bgrx(width, height), width, height))


def test_a_memoryview_is_accepted_and_levels_change_only_the_size() -> None:
    pixels = _bgrx(64, 48)
    fast = bgrx_to_png(memoryview(pixels), 64, 48, level=1)
    small = bgrx_to_png(pixels, 64, 48, level=9)
    assert decode_png(fast) == decode_png(small)


def test_a_large_flat_screen_stays_small() -> None:
    png = bgrx_to_png(b"\x62\x4a\x2e\x00" * (1280 * 800), 1280, 800)
    assert len(png) < 20_000
    assert png[16:24] == struct.pack(">II", 1280, 800)


@pytest.mark.parametrize(("width", "height", "size"), [(4, 4, 63), (0, 4, 0), (4, 0, 0)])
def test_sizes_that_do_not_fit_are_refused(width: int, height: int, size: int) -> None:
    with pytest.raises(ValueError, match="pixel"):
        bgrx_to_png(bytes(size), width, height)


def test_rgb_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="RGB pixels"):
        rgb_to_png(bytes(10), 2, 2)
