"""Screen captures: a shared memory XImage for MIT-SHM, and the pixels of an XImage.

A screenshot is one ``XShmGetImage`` into a System V shared memory segment the
X server writes directly, instead of streaming 4 MB through the socket
(``XGetImage``, the fallback where the server cannot attach the segment).
Measured on a 1280x800 screen (docs/benchmarks.md, "Desktop: hand-written X
code vs Debian's libraries"): 0.8 ms against 2.9 ms for ``XGetImage`` and 10.5 ms
for python3-xlib's ``get_image``, which has no MIT-SHM: hence ctypes here.
"""

from __future__ import annotations

import ctypes
from ctypes import byref, c_void_p
from dataclasses import dataclass
from typing import Any

from .libx11 import (
    ALL_PLANES,
    IPC_CREAT,
    IPC_PRIVATE,
    IPC_RMID,
    LSB_FIRST,
    Z_PIXMAP,
    Libraries,
    XError,
    XImage,
    XShmSegmentInfo,
)


@dataclass(frozen=True)
class Frame:
    """One screen capture: 32-bit little-endian ``B, G, R, X`` pixels."""

    width: int
    height: int
    stride: int
    pixels: bytes


class ShmImage:
    """An XImage whose pixels live in a System V shared memory segment."""

    def __init__(self, image: Any, info: XShmSegmentInfo) -> None:
        self.image = image
        self.info = info

    @classmethod
    def create(
        cls, lib: Libraries, dpy: c_void_p, screen: int, width: int, height: int
    ) -> ShmImage | None:
        """A shared image the size of the screen, or None where MIT-SHM is unusable."""
        if not lib.xext.XShmQueryExtension(dpy):
            return None
        x = lib.x11
        info = XShmSegmentInfo()
        image = lib.xext.XShmCreateImage(
            dpy,
            x.XDefaultVisual(dpy, screen),
            x.XDefaultDepth(dpy, screen),
            Z_PIXMAP,
            None,
            byref(info),
            width,
            height,
        )
        if not image:
            return None
        size = image.contents.bytes_per_line * image.contents.height
        # Xvfb runs as the session user, not as this (root) agent, and attaches the
        # segment itself: it must be able to. That gives the session's programs no
        # more than they have: the X server and its screen are the session's anyway.
        shmid = lib.libc.shmget(IPC_PRIVATE, size, IPC_CREAT | 0o666)
        if shmid < 0:
            x.XDestroyImage(image)
            return None
        address = lib.libc.shmat(shmid, None, 0)
        if address in (None, c_void_p(-1).value):
            lib.libc.shmctl(shmid, IPC_RMID, None)
            x.XDestroyImage(image)
            return None
        info.shmid, info.shmaddr, info.readOnly = shmid, address, 0
        image.contents.data = address
        lib.errors.clear()
        lib.xext.XShmAttach(dpy, byref(info))
        x.XSync(dpy, 0)
        # Marked for removal now: the kernel frees it once both sides detach,
        # even if this process is killed.
        lib.libc.shmctl(shmid, IPC_RMID, None)
        if lib.errors:  # the server could not attach (another IPC namespace)
            lib.errors.clear()
            lib.libc.shmdt(address)
            image.contents.data = None
            x.XDestroyImage(image)
            return None
        return cls(image, info)

    def grab(self, lib: Libraries, dpy: c_void_p, root: int) -> Frame:
        """The window `root` (the whole screen) as it is now.

        Raises:
            XError: The server refused, or the screen is not BGRX.
        """
        if not lib.xext.XShmGetImage(dpy, root, self.image, 0, 0, ALL_PLANES):
            raise XError("XShmGetImage failed")
        return frame_of(self.image.contents, self.info.shmaddr)

    def release(self, lib: Libraries, dpy: c_void_p, *, detach: bool = True) -> None:
        """Detach the segment (unless the connection is broken) and free the image."""
        if detach:  # not on a broken connection: the server side is gone already
            lib.xext.XShmDetach(dpy, byref(self.info))
            lib.x11.XSync(dpy, 0)
        lib.libc.shmdt(self.info.shmaddr)
        self.image.contents.data = None  # not malloc'ed: XDestroyImage must not free it
        lib.x11.XDestroyImage(self.image)


def frame_of(image: XImage, address: int | None) -> Frame:
    """A copy of the pixels of `image`, which are at `address`.

    Raises:
        XError: They are not 32-bit little-endian BGRX (or there are none).
    """
    little_bgrx = (
        image.bits_per_pixel == 32
        and image.byte_order == LSB_FIRST
        and (image.red_mask, image.green_mask, image.blue_mask) == (0xFF0000, 0xFF00, 0xFF)
    )
    if not little_bgrx or not address:
        raise XError(
            f"unsupported screen format: {image.bits_per_pixel} bits per pixel, "
            f"byte order {image.byte_order}, masks {image.red_mask:#x}/{image.green_mask:#x}/"
            f"{image.blue_mask:#x} (the desktop runs Xvfb at depth 24)"
        )
    size = image.bytes_per_line * image.height
    return Frame(image.width, image.height, image.bytes_per_line, ctypes.string_at(address, size))
