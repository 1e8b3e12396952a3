"""PNG encoding of X framebuffer pixels with nothing but zlib.

Screens are 32 bits per pixel, little-endian ``B, G, R, X`` bytes. Three
extended-slice copies (C loops, a few milliseconds for a megapixel) turn them into
``R, G, B``; each row then gets PNG's filter byte 0 (none); deflate at level 1
finishes it. Filtering rows (Sub, Up, Paeth) would shrink the file but needs a
per-byte Python loop, and the flat colours of a desktop compress well without.
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE_RGB = 2


def bgrx_to_png(
    pixels: bytes | bytearray | memoryview,
    width: int,
    height: int,
    *,
    stride: int | None = None,
    level: int = 1,
) -> bytes:
    """Encode 32-bit ``B, G, R, X`` pixels as an 8-bit RGB PNG.

    Args:
        pixels: The rows, top to bottom, `stride` bytes apart.
        width: Pixels per row.
        height: Rows.
        stride: Bytes from one row to the next (``4 * width`` when None).
        level: zlib compression level, 0 to 9.

    Raises:
        ValueError: The sizes do not fit `pixels`.
    """
    if width < 1 or height < 1:
        raise ValueError("an image needs at least one pixel")
    row_bytes = 4 * width
    stride = row_bytes if stride is None else stride
    if stride < row_bytes or len(pixels) < stride * (height - 1) + row_bytes:
        raise ValueError(f"{len(pixels)} bytes cannot hold {width}x{height} pixels")
    source: bytes | bytearray
    if stride != row_bytes:
        # Padded rows: drop the padding first so the channel copies run over
        # the whole image at once.
        view = memoryview(pixels)
        source = b"".join(view[row * stride : row * stride + row_bytes] for row in range(height))
    else:
        # Slicing bytes with a step is a tight C loop; a strided memoryview is
        # several times slower to copy from.
        whole = pixels if isinstance(pixels, (bytes, bytearray)) else bytes(pixels)
        source = whole if len(whole) == row_bytes * height else whole[: row_bytes * height]
    rgb = bytearray(3 * width * height)
    rgb[0::3] = source[2::4]
    rgb[1::3] = source[1::4]
    rgb[2::3] = source[0::4]
    return rgb_to_png(rgb, width, height, level=level)


def rgb_to_png(rgb: bytes | bytearray, width: int, height: int, *, level: int = 1) -> bytes:
    """Encode packed 8-bit ``R, G, B`` rows as a PNG (filter type 0 on every row).

    Raises:
        ValueError: `rgb` is not exactly ``3 * width * height`` bytes.
    """
    row_bytes = 3 * width
    if len(rgb) != row_bytes * height:
        raise ValueError(f"{len(rgb)} bytes are not {width}x{height} RGB pixels")
    view = memoryview(rgb)
    scanlines = bytearray((row_bytes + 1) * height)  # filter bytes start out 0
    for row in range(height):
        start = row * (row_bytes + 1) + 1
        scanlines[start : start + row_bytes] = view[row * row_bytes : (row + 1) * row_bytes]
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPE_RGB, 0, 0, 0)
    return b"".join(
        (
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(scanlines, level)),
            _chunk(b"IEND", b""),
        )
    )


def _chunk(kind: bytes, body: bytes) -> bytes:
    return b"".join(
        (struct.pack(">I", len(body)), kind, body, struct.pack(">I", zlib.crc32(kind + body)))
    )
