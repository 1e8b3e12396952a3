"""PNG encoding of X framebuffer pixels: python3-pil's pixel decoder, then zlib.

Screens are 32 bits per pixel, little-endian ``B, G, R, X`` bytes. python3-pil's
raw decoder turns them into ``R, G, B`` (dropping row padding as it goes); each
row then gets PNG's filter byte 0 (none); deflate at level 1 finishes it.

Measured on a 1280x800 desktop (docs/benchmarks.md, "Desktop: hand-written X code
vs Debian's libraries"): PIL's channel swap takes 1.4 ms where three extended-slice
copies took 3.3 ms (the whole encoding: 6.6 ms, was 8.8 ms), but PIL's own PNG
encoder at ``compress_level=1`` takes 18 ms, since it tries every row filter (its
files are ~20% smaller); the flat colours of a desktop compress well without.
Importing PIL adds ~20 ms to the agent's start and ~2 MiB to its memory.

python3-pil is a package of the desktop image only: the shell and rag images run
the agent without it, so only the desktop toolset may import this module.
"""

from __future__ import annotations

import struct
import zlib

from PIL import Image

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
    # Frames come as bytes; PIL's types take no memoryview (it would copy one anyway).
    source = pixels if isinstance(pixels, (bytes, bytearray)) else bytes(pixels)
    rgb = Image.frombuffer("RGB", (width, height), source, "raw", "BGRX", stride, 1).tobytes()
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
