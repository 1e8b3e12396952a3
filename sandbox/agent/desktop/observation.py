"""Screenshots as a model takes them: downscaled, with the pointer drawn, PNG or JPEG.

A plain full-size PNG (today's default) goes straight through `png.bgrx_to_png`.
Anything else turns the frame into a python3-pil image once (its raw decoder
drops the X padding byte while swapping to RGB), draws the pointer on the
full-size screen (so it scales with the rest, as OSWorld's observations show
it), downscales, then encodes: JPEG with PIL's encoder (libjpeg-turbo), PNG
with `png.rgb_to_png`, which skips PIL's slow per-row filter search.

Downscaling uses PIL's BOX filter: area averaging, the right thing for
shrinking text and far cheaper than BILINEAR's wider support at these
factors (1920x1080 to 1280x720 measured 11 ms against 18 ms); an integral
factor goes through `Image.reduce`, cheaper still (2.5 ms for half size).

python3-pil is a package of the desktop image only: only the desktop toolset
may import this module.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw

from .grab import Frame
from .png import bgrx_to_png, rgb_to_png

# The classic arrow pointer, tip at (0, 0), in screen pixels: white with a
# black outline, so it shows on light and dark windows alike.
_ARROW = ((0, 0), (0, 16), (4, 12), (7, 19), (10, 18), (7, 11), (12, 11))


@dataclass(frozen=True)
class ShotOptions:
    """What a caller asked of one screenshot.

    Attributes:
        format: ``png`` or ``jpeg``.
        quality: JPEG quality, 1 to 95.
        max_width: Largest width of the image sent, or None for the screen's.
        max_height: Largest height of the image sent, or None for the screen's.
        cursor: The pointer's position to draw an arrow at, or None.
    """

    format: str = "png"
    quality: int = 75
    max_width: int | None = None
    max_height: int | None = None
    cursor: tuple[int, int] | None = None


def fit_within(
    width: int, height: int, max_width: int | None, max_height: int | None
) -> tuple[int, int]:
    """The largest size within the bounds with `width`:`height`'s aspect ratio.

    Never larger than the screen (no upscaling), never less than one pixel.
    """
    scale = 1.0
    if max_width is not None:
        scale = min(scale, max_width / width)
    if max_height is not None:
        scale = min(scale, max_height / height)
    if scale >= 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode_frame(frame: Frame, options: ShotOptions) -> tuple[bytes, tuple[int, int]]:
    """`frame` encoded as `options` ask, and the size of the image encoded.

    Raises:
        ValueError: The frame's sizes do not fit its pixels.
    """
    size = fit_within(frame.width, frame.height, options.max_width, options.max_height)
    plain = size == (frame.width, frame.height) and options.cursor is None
    if plain and options.format == "png":
        return bgrx_to_png(frame.pixels, frame.width, frame.height, stride=frame.stride), size
    image = Image.frombuffer(
        "RGB", (frame.width, frame.height), frame.pixels, "raw", "BGRX", frame.stride, 1
    )
    if options.cursor is not None:
        draw_pointer(image, *options.cursor)
    image = _downscale(image, size)
    if options.format == "jpeg":
        out = io.BytesIO()
        image.save(out, "JPEG", quality=options.quality)
        return out.getvalue(), size
    return rgb_to_png(image.tobytes(), *size), size


def draw_pointer(image: Image.Image, x: int, y: int) -> None:
    """Draw an arrow pointer with its tip at (`x`, `y`) into `image`."""
    ImageDraw.Draw(image).polygon(
        [(x + dx, y + dy) for dx, dy in _ARROW], fill=(255, 255, 255), outline=(0, 0, 0)
    )


def _downscale(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if size == image.size:
        return image
    factor = image.width // size[0]
    if factor > 1 and image.width == size[0] * factor and image.height == size[1] * factor:
        return image.reduce(factor)
    return image.resize(size, Image.Resampling.BOX)
