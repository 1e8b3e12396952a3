"""libX11, libXtst and libXext through ctypes: the prototypes, structures and error hooks.

Loaded once per process (`load`). X errors are asynchronous: Xlib's default
handler prints them and exits the process, so the handler here records them
(`Libraries.errors`) for `xlib.XDisplay.sync` to raise. A broken connection
(the X server went, or another client killed ours) would end the process too;
it is recorded in `Libraries.lost` instead, and the agent reconnects.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_long,
    c_ubyte,
    c_uint,
    c_ulong,
    c_void_p,
)
from typing import Any

Z_PIXMAP = 2
LSB_FIRST = 0
ALL_PLANES = c_ulong(-1).value
MAPPING_NOTIFY = 34
MAPPING_KEYBOARD = 1
IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_RMID = 0


class XUnavailable(RuntimeError):
    """libX11 cannot be loaded, or the display does not accept a connection."""


class XError(RuntimeError):
    """The X server refused a request (BadValue, BadAccess, ...)."""


class XErrorEvent(Structure):
    _fields_ = [
        ("type", c_int),
        ("display", c_void_p),
        ("resourceid", c_ulong),
        ("serial", c_ulong),
        ("error_code", c_ubyte),
        ("request_code", c_ubyte),
        ("minor_code", c_ubyte),
    ]


class XImage(Structure):
    _fields_ = [
        ("width", c_int),
        ("height", c_int),
        ("xoffset", c_int),
        ("format", c_int),
        ("data", c_void_p),
        ("byte_order", c_int),
        ("bitmap_unit", c_int),
        ("bitmap_bit_order", c_int),
        ("bitmap_pad", c_int),
        ("depth", c_int),
        ("bytes_per_line", c_int),
        ("bits_per_pixel", c_int),
        ("red_mask", c_ulong),
        ("green_mask", c_ulong),
        ("blue_mask", c_ulong),
        ("obdata", c_void_p),
        ("funcs", c_void_p * 6),
    ]


class XShmSegmentInfo(Structure):
    _fields_ = [
        ("shmseg", c_ulong),
        ("shmid", c_int),
        ("shmaddr", c_void_p),
        ("readOnly", c_int),
    ]


class XMappingEvent(Structure):
    _fields_ = [
        ("type", c_int),
        ("serial", c_ulong),
        ("send_event", c_int),
        ("display", c_void_p),
        ("window", c_ulong),
        ("request", c_int),
        ("first_keycode", c_int),
        ("count", c_int),
    ]


XEvent = c_long * 24  # the XEvent union: 24 longs on every platform
_ErrorHandler = CFUNCTYPE(c_int, c_void_p, POINTER(XErrorEvent))
_IOErrorHandler = CFUNCTYPE(c_int, c_void_p)
_IOErrorExitHandler = CFUNCTYPE(None, c_void_p, c_void_p)


class Libraries:
    """The shared libraries with the prototypes this module uses."""

    def __init__(self) -> None:
        try:
            self.x11 = ctypes.CDLL("libX11.so.6")
            self.xtst = ctypes.CDLL("libXtst.so.6")
            self.xext = ctypes.CDLL("libXext.so.6")
            self.libc = ctypes.CDLL(None, use_errno=True)
        except OSError as exc:
            raise XUnavailable(f"cannot load the X libraries: {exc}") from None
        _declare_x11(self.x11)
        _declare_extensions(self.xtst, self.xext)
        _declare_shm(self.libc)
        x, dpy = self.x11, c_void_p
        self.errors: list[tuple[int, int, int]] = []

        def on_error(display: int | None, event: Any) -> int:
            error = event.contents
            self.errors.append((error.error_code, error.request_code, error.minor_code))
            return 0

        self.lost: set[int] = set()
        """Displays whose connection broke (an X client may kill any other's)."""

        def on_io_error(display: int | None) -> int:
            print("sandbox-agent: lost the connection to the X display", file=sys.stderr)
            self.lost.add(display or 0)
            return 0

        def on_io_error_exit(display: int | None, data: int | None) -> None:
            # Instead of Xlib's exit(): the agent lives on and reconnects.
            self.lost.add(display or 0)

        # Referenced from self so the callbacks outlive this constructor.
        self.error_handler = _ErrorHandler(on_error)
        self.io_error_handler = _IOErrorHandler(on_io_error)
        self.io_error_exit_handler = _IOErrorExitHandler(on_io_error_exit)
        x.XSetErrorHandler(self.error_handler)
        x.XSetIOErrorHandler(self.io_error_handler)
        # libX11 >= 1.7; without it a broken connection still ends the process.
        self.set_exit_handler = getattr(x, "XSetIOErrorExitHandler", None)
        if self.set_exit_handler is not None:
            _proto(self.set_exit_handler, None, dpy, _IOErrorExitHandler, c_void_p)


def _declare_x11(x: Any) -> None:
    """Prototypes of the libX11 functions the agent calls."""
    dpy = c_void_p
    _proto(x.XOpenDisplay, c_void_p, c_char_p)
    _proto(x.XCloseDisplay, c_int, dpy)
    _proto(x.XDefaultScreen, c_int, dpy)
    _proto(x.XDisplayWidth, c_int, dpy, c_int)
    _proto(x.XDisplayHeight, c_int, dpy, c_int)
    _proto(x.XRootWindow, c_ulong, dpy, c_int)
    _proto(x.XDefaultVisual, c_void_p, dpy, c_int)
    _proto(x.XDefaultDepth, c_int, dpy, c_int)
    _proto(x.XSync, c_int, dpy, c_int)
    _proto(x.XFlush, c_int, dpy)
    _proto(x.XPending, c_int, dpy)
    _proto(x.XNextEvent, c_int, dpy, c_void_p)
    _proto(x.XFree, c_int, c_void_p)
    _proto(x.XSetErrorHandler, c_void_p, _ErrorHandler)
    _proto(x.XSetIOErrorHandler, c_void_p, _IOErrorHandler)
    _proto(x.XGetErrorText, c_int, dpy, c_int, c_char_p, c_int)
    _proto(
        x.XQueryPointer,
        c_int,
        *(dpy, c_ulong, POINTER(c_ulong), POINTER(c_ulong)),
        *(POINTER(c_int),) * 4,
        POINTER(c_uint),
    )
    _proto(x.XDisplayKeycodes, c_int, dpy, POINTER(c_int), POINTER(c_int))
    _proto(x.XGetKeyboardMapping, c_void_p, dpy, c_ubyte, c_int, POINTER(c_int))
    _proto(x.XChangeKeyboardMapping, c_int, dpy, c_int, c_int, POINTER(c_ulong), c_int)
    _proto(x.XStringToKeysym, c_ulong, c_char_p)
    _proto(x.XInternAtom, c_ulong, dpy, c_char_p, c_int)
    _proto(x.XGetSelectionOwner, c_ulong, dpy, c_ulong)
    _proto(
        x.XGetWindowProperty,
        c_int,
        *(dpy, c_ulong, c_ulong, c_long, c_long, c_int, c_ulong),
        *(POINTER(c_ulong), POINTER(c_int), POINTER(c_ulong), POINTER(c_ulong)),
        POINTER(c_void_p),
    )
    _proto(x.XSetWindowBackground, c_int, dpy, c_ulong, c_ulong)
    _proto(x.XClearWindow, c_int, dpy, c_ulong)
    _proto(
        x.XGetImage,
        POINTER(XImage),
        *(dpy, c_ulong, c_int, c_int, c_uint, c_uint, c_ulong, c_int),
    )
    _proto(x.XDestroyImage, c_int, POINTER(XImage))


def _declare_extensions(t: Any, e: Any) -> None:
    """Prototypes of XTEST (input) and MIT-SHM (screen grabs)."""
    dpy = c_void_p
    _proto(t.XTestQueryExtension, c_int, dpy, *(POINTER(c_int),) * 4)
    _proto(t.XTestFakeMotionEvent, c_int, dpy, c_int, c_int, c_int, c_ulong)
    _proto(t.XTestFakeButtonEvent, c_int, dpy, c_uint, c_int, c_ulong)
    _proto(t.XTestFakeKeyEvent, c_int, dpy, c_uint, c_int, c_ulong)
    _proto(e.XShmQueryExtension, c_int, dpy)
    _proto(
        e.XShmCreateImage,
        POINTER(XImage),
        *(dpy, c_void_p, c_uint, c_int, c_void_p, POINTER(XShmSegmentInfo), c_uint, c_uint),
    )
    _proto(e.XShmAttach, c_int, dpy, POINTER(XShmSegmentInfo))
    _proto(e.XShmDetach, c_int, dpy, POINTER(XShmSegmentInfo))
    _proto(e.XShmGetImage, c_int, dpy, c_ulong, POINTER(XImage), c_int, c_int, c_ulong)


def _declare_shm(c: Any) -> None:
    """Prototypes of libc's System V shared memory, for MIT-SHM."""
    _proto(c.shmget, c_int, c_int, ctypes.c_size_t, c_int)
    _proto(c.shmat, c_void_p, c_int, c_void_p, c_int)
    _proto(c.shmdt, c_int, c_void_p)
    _proto(c.shmctl, c_int, c_int, c_int, c_void_p)


def _proto(function: Any, restype: Any, *argtypes: Any) -> None:
    function.restype = restype
    function.argtypes = list(argtypes)


_libraries: Libraries | None = None
_libraries_lock = threading.Lock()


def load() -> Libraries:
    """The libraries, loaded on first use.

    Raises:
        XUnavailable: One of them cannot be loaded.
    """
    global _libraries
    with _libraries_lock:
        if _libraries is None:
            _libraries = Libraries()
        return _libraries
