"""One persistent X connection, through ctypes: libX11, XTEST and MIT-SHM.

Every action of a `vm` session is a few XTEST requests on this connection
(microseconds) instead of a new xdotool process (milliseconds), and a screenshot
is one ``XShmGetImage`` into a shared memory segment the X server writes
directly, instead of streaming 4 MB through the socket. Where the server cannot
share memory with us, ``XGetImage`` is the fallback.

Xlib is not thread-safe without ``XInitThreads``; instead every use of the
connection holds `XDisplay.lock`, which callers also hold across a sequence of
requests (a typed text, a drag) so concurrent calls cannot interleave them.

X errors are asynchronous: Xlib's default handler prints them and exits the
process, so a handler here records them and `XDisplay.sync` raises the first
as `XError` once the server has answered.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Sequence
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    byref,
    c_char_p,
    c_int,
    c_long,
    c_ubyte,
    c_uint,
    c_ulong,
    c_void_p,
)
from dataclasses import dataclass
from typing import Any

from .keymap import Keymap

_Z_PIXMAP = 2
_LSB_FIRST = 0
_ALL_PLANES = c_ulong(-1).value
_MAPPING_NOTIFY = 34
_MAPPING_KEYBOARD = 1
_IPC_PRIVATE = 0
_IPC_CREAT = 0o1000
_IPC_RMID = 0


class XUnavailable(RuntimeError):
    """libX11 cannot be loaded, or the display does not accept a connection."""


class XError(RuntimeError):
    """The X server refused a request (BadValue, BadAccess, ...)."""


class _XErrorEvent(Structure):
    _fields_ = [
        ("type", c_int),
        ("display", c_void_p),
        ("resourceid", c_ulong),
        ("serial", c_ulong),
        ("error_code", c_ubyte),
        ("request_code", c_ubyte),
        ("minor_code", c_ubyte),
    ]


class _XImage(Structure):
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


class _XShmSegmentInfo(Structure):
    _fields_ = [
        ("shmseg", c_ulong),
        ("shmid", c_int),
        ("shmaddr", c_void_p),
        ("readOnly", c_int),
    ]


class _XMappingEvent(Structure):
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


_XEvent = c_long * 24  # the XEvent union: 24 longs on every platform
_ErrorHandler = CFUNCTYPE(c_int, c_void_p, POINTER(_XErrorEvent))
_IOErrorHandler = CFUNCTYPE(c_int, c_void_p)
_IOErrorExitHandler = CFUNCTYPE(None, c_void_p, c_void_p)


@dataclass(frozen=True)
class Frame:
    """One screen capture: 32-bit little-endian ``B, G, R, X`` pixels."""

    width: int
    height: int
    stride: int
    pixels: bytes


@dataclass(frozen=True)
class MappingChange:
    """A MappingNotify for the keyboard: keycodes `first` to `first + count - 1`."""

    first: int
    count: int


class _Libraries:
    """The shared libraries with the prototypes this module uses."""

    def __init__(self) -> None:
        try:
            self.x11 = ctypes.CDLL("libX11.so.6")
            self.xtst = ctypes.CDLL("libXtst.so.6")
            self.xext = ctypes.CDLL("libXext.so.6")
            self.libc = ctypes.CDLL(None, use_errno=True)
        except OSError as exc:
            raise XUnavailable(f"cannot load the X libraries: {exc}") from None
        x, t, e, c = self.x11, self.xtst, self.xext, self.libc
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
            POINTER(_XImage),
            *(dpy, c_ulong, c_int, c_int, c_uint, c_uint, c_ulong, c_int),
        )
        _proto(x.XDestroyImage, c_int, POINTER(_XImage))
        _proto(t.XTestQueryExtension, c_int, dpy, *(POINTER(c_int),) * 4)
        _proto(t.XTestFakeMotionEvent, c_int, dpy, c_int, c_int, c_int, c_ulong)
        _proto(t.XTestFakeButtonEvent, c_int, dpy, c_uint, c_int, c_ulong)
        _proto(t.XTestFakeKeyEvent, c_int, dpy, c_uint, c_int, c_ulong)
        _proto(e.XShmQueryExtension, c_int, dpy)
        _proto(
            e.XShmCreateImage,
            POINTER(_XImage),
            *(dpy, c_void_p, c_uint, c_int, c_void_p, POINTER(_XShmSegmentInfo), c_uint, c_uint),
        )
        _proto(e.XShmAttach, c_int, dpy, POINTER(_XShmSegmentInfo))
        _proto(e.XShmDetach, c_int, dpy, POINTER(_XShmSegmentInfo))
        _proto(e.XShmGetImage, c_int, dpy, c_ulong, POINTER(_XImage), c_int, c_int, c_ulong)
        _proto(c.shmget, c_int, c_int, ctypes.c_size_t, c_int)
        _proto(c.shmat, c_void_p, c_int, c_void_p, c_int)
        _proto(c.shmdt, c_int, c_void_p)
        _proto(c.shmctl, c_int, c_int, c_int, c_void_p)
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


def _proto(function: Any, restype: Any, *argtypes: Any) -> None:
    function.restype = restype
    function.argtypes = list(argtypes)


_libraries: _Libraries | None = None
_libraries_lock = threading.Lock()


def _load() -> _Libraries:
    global _libraries
    with _libraries_lock:
        if _libraries is None:
            _libraries = _Libraries()
        return _libraries


class XDisplay:
    """A connection to an X server with the XTEST extension.

    Args:
        name: The display, e.g. ``:0``.

    Raises:
        XUnavailable: The libraries are missing, the display does not answer, or
            it has no XTEST extension.
    """

    def __init__(self, name: str) -> None:
        self._lib = _load()
        self.lock = threading.RLock()
        pointer = self._lib.x11.XOpenDisplay(name.encode())
        if not pointer:
            raise XUnavailable(f"cannot open X display {name!r}")
        self._dpy = c_void_p(pointer)
        x = self._lib.x11
        if self._lib.set_exit_handler is not None:
            self._lib.set_exit_handler(self._dpy, self._lib.io_error_exit_handler, None)
        self._screen = int(x.XDefaultScreen(self._dpy))
        self.width = int(x.XDisplayWidth(self._dpy, self._screen))
        self.height = int(x.XDisplayHeight(self._dpy, self._screen))
        self.root = int(x.XRootWindow(self._dpy, self._screen))
        numbers = [c_int() for _ in range(4)]
        if not self._lib.xtst.XTestQueryExtension(self._dpy, *(byref(n) for n in numbers)):
            x.XCloseDisplay(self._dpy)
            raise XUnavailable(f"X display {name!r} has no XTEST extension")
        self._shm: _ShmImage | None = None
        self._shm_tried = False

    # -- plumbing ---------------------------------------------------------------

    @property
    def lost(self) -> bool:
        """Whether the connection broke (the X server went, or a client killed ours),
        or was closed: either way it needs a new one before any further call."""
        return not self._dpy or int(self._dpy.value or 0) in self._lib.lost

    def _live(self) -> c_void_p:
        """The Display pointer; never NULL, which libX11 would dereference (SIGSEGV).

        Raises:
            XError: The connection was closed (a failed reconnect leaves it so).
        """
        if not self._dpy:
            raise XError("the X connection is closed")
        return self._dpy

    def close(self) -> None:
        """Release the shared memory image and close the connection."""
        with self.lock:
            lost = self.lost
            if self._shm is not None:
                self._shm.release(self._lib, self._dpy, detach=not lost)
                self._shm = None
            if self._dpy:
                # On a broken connection this only frees memory and the descriptor.
                self._lib.x11.XCloseDisplay(self._dpy)
                self._lib.lost.discard(int(self._dpy.value or 0))
                self._dpy = c_void_p()

    def flush(self) -> None:
        """Send buffered requests without waiting for the server."""
        with self.lock:
            self._lib.x11.XFlush(self._live())

    def sync(self) -> None:
        """Wait until the server has processed every request sent.

        Raises:
            XError: The server refused one of them.
        """
        with self.lock:
            self._lib.x11.XSync(self._live(), 0)
            self._raise_errors()

    def _raise_errors(self) -> None:
        if not self._lib.errors:
            return
        code, request, minor = self._lib.errors[0]
        self._lib.errors.clear()
        buffer = ctypes.create_string_buffer(256)
        self._lib.x11.XGetErrorText(self._live(), code, buffer, len(buffer))
        text = buffer.value.decode("latin-1") or f"error {code}"
        raise XError(f"the X server refused request {request}.{minor}: {text}")

    def mapping_changes(self) -> list[MappingChange]:
        """Read queued events; returns the keyboard mapping changes among them.

        No window of ours selects input, so the only events are MappingNotify,
        which every client gets; reading them keeps the queue from growing.
        """
        changes: list[MappingChange] = []
        event = _XEvent()
        with self.lock:
            while self._lib.x11.XPending(self._live()) > 0:
                self._lib.x11.XNextEvent(self._live(), byref(event))
                if event[0] & 0xFFFFFFFF != _MAPPING_NOTIFY:
                    continue
                mapping = _XMappingEvent.from_buffer(event)
                if mapping.request == _MAPPING_KEYBOARD:
                    changes.append(MappingChange(mapping.first_keycode, mapping.count))
        return changes

    # -- input ------------------------------------------------------------------

    def fake_motion(self, x: int, y: int) -> None:
        """Move the pointer to (`x`, `y`) on the screen."""
        with self.lock:
            self._lib.xtst.XTestFakeMotionEvent(self._live(), self._screen, x, y, 0)

    def fake_button(self, button: int, press: bool) -> None:
        """Press or release pointer button `button` (1 left, 2 middle, 3 right, 4-7 wheel)."""
        with self.lock:
            self._lib.xtst.XTestFakeButtonEvent(self._live(), button, int(press), 0)

    def fake_key(self, keycode: int, press: bool) -> None:
        """Press or release the key `keycode`."""
        with self.lock:
            self._lib.xtst.XTestFakeKeyEvent(self._live(), keycode, int(press), 0)

    def pointer(self) -> tuple[int, int]:
        """Where the pointer is, in screen coordinates."""
        root, child = c_ulong(), c_ulong()
        root_x, root_y, win_x, win_y = c_int(), c_int(), c_int(), c_int()
        mask = c_uint()
        with self.lock:
            self._lib.x11.XQueryPointer(
                self._live(),
                self.root,
                byref(root),
                byref(child),
                byref(root_x),
                byref(root_y),
                byref(win_x),
                byref(win_y),
                byref(mask),
            )
        return root_x.value, root_y.value

    def keymap(self) -> Keymap:
        """The current core keyboard mapping."""
        low, high, per_keycode = c_int(), c_int(), c_int()
        with self.lock:
            self._lib.x11.XDisplayKeycodes(self._live(), byref(low), byref(high))
            count = high.value - low.value + 1
            table = self._lib.x11.XGetKeyboardMapping(
                self._live(), low.value, count, byref(per_keycode)
            )
            if not table:
                raise XError("the X server sent no keyboard mapping")
            try:
                keysyms = list((c_ulong * (count * per_keycode.value)).from_address(table))
            finally:
                self._lib.x11.XFree(table)
        return Keymap(low.value, per_keycode.value, keysyms)

    def bind_keysyms(self, keycode: int, keysyms: Sequence[int]) -> None:
        """Make `keycode` produce `keysyms` (one per level) and wait for the server.

        Raises:
            XError: The server refused the mapping.
        """
        array = (c_ulong * len(keysyms))(*keysyms)
        with self.lock:
            self._lib.x11.XChangeKeyboardMapping(self._live(), keycode, len(keysyms), array, 1)
            self.sync()

    def keysym_from_name(self, name: str) -> int:
        """libX11's ``XStringToKeysym``: the keysym called `name`, 0 for none."""
        try:
            encoded = name.encode("ascii")
        except UnicodeEncodeError:
            return 0
        with self.lock:
            return int(self._lib.x11.XStringToKeysym(encoded))

    # -- windows ----------------------------------------------------------------

    def selection_owner(self, selection: str) -> int:
        """The window owning `selection` (``WM_S0``: the window manager), 0 for none."""
        with self.lock:
            atom = self._lib.x11.XInternAtom(self._live(), selection.encode(), 0)
            return int(self._lib.x11.XGetSelectionOwner(self._live(), atom))

    def window_property(self, window: int, name: str) -> list[int]:
        """A 32-bit list property of `window` (``_NET_CLIENT_LIST`` of the root), [] if unset."""
        actual_type, actual_format = c_ulong(), c_int()
        count, remaining, data = c_ulong(), c_ulong(), c_void_p()
        with self.lock:
            atom = self._lib.x11.XInternAtom(self._live(), name.encode(), 0)
            status = self._lib.x11.XGetWindowProperty(
                self._live(),
                window,
                atom,
                0,
                1 << 16,
                0,
                0,  # AnyPropertyType
                byref(actual_type),
                byref(actual_format),
                byref(count),
                byref(remaining),
                byref(data),
            )
            if status != 0 or not data.value:
                return []
            try:
                if actual_format.value != 32:
                    return []
                # Xlib hands 32-bit items over as C longs.
                return list((c_ulong * count.value).from_address(data.value))
            finally:
                self._lib.x11.XFree(data)

    def set_background(self, pixel: int) -> None:
        """Paint the root window (the desktop's background) in one colour."""
        with self.lock:
            self._lib.x11.XSetWindowBackground(self._live(), self.root, pixel)
            self._lib.x11.XClearWindow(self._live(), self.root)
            self.sync()

    # -- capture ----------------------------------------------------------------

    def capture(self) -> Frame:
        """The whole screen, through shared memory when the server allows it.

        Raises:
            XError: The screen is not 32 bits per pixel, little-endian BGRX.
        """
        with self.lock:
            if not self._shm_tried:
                self._shm_tried = True
                self._shm = _ShmImage.create(
                    self._lib, self._live(), self._screen, self.width, self.height
                )
            if self._shm is not None:
                return self._shm.grab(self._lib, self._live(), self.root)
            image = self._lib.x11.XGetImage(
                self._live(), self.root, 0, 0, self.width, self.height, _ALL_PLANES, _Z_PIXMAP
            )
            if not image:
                self._raise_errors()
                raise XError("XGetImage returned no image")
            try:
                return _frame(image.contents, image.contents.data)
            finally:
                self._lib.x11.XDestroyImage(image)

    @property
    def uses_shared_memory(self) -> bool:
        """Whether captures go through MIT-SHM (known after the first capture)."""
        return self._shm is not None


class _ShmImage:
    """An XImage whose pixels live in a System V shared memory segment."""

    def __init__(self, image: Any, info: _XShmSegmentInfo) -> None:
        self.image = image
        self.info = info

    @classmethod
    def create(
        cls, lib: _Libraries, dpy: c_void_p, screen: int, width: int, height: int
    ) -> _ShmImage | None:
        """A shared image the size of the screen, or None where MIT-SHM is unusable."""
        if not lib.xext.XShmQueryExtension(dpy):
            return None
        x = lib.x11
        info = _XShmSegmentInfo()
        image = lib.xext.XShmCreateImage(
            dpy,
            x.XDefaultVisual(dpy, screen),
            x.XDefaultDepth(dpy, screen),
            _Z_PIXMAP,
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
        shmid = lib.libc.shmget(_IPC_PRIVATE, size, _IPC_CREAT | 0o666)
        if shmid < 0:
            x.XDestroyImage(image)
            return None
        address = lib.libc.shmat(shmid, None, 0)
        if address in (None, c_void_p(-1).value):
            lib.libc.shmctl(shmid, _IPC_RMID, None)
            x.XDestroyImage(image)
            return None
        info.shmid, info.shmaddr, info.readOnly = shmid, address, 0
        image.contents.data = address
        lib.errors.clear()
        lib.xext.XShmAttach(dpy, byref(info))
        x.XSync(dpy, 0)
        # Marked for removal now: the kernel frees it once both sides detach,
        # even if this process is killed.
        lib.libc.shmctl(shmid, _IPC_RMID, None)
        if lib.errors:  # the server could not attach (another IPC namespace)
            lib.errors.clear()
            lib.libc.shmdt(address)
            image.contents.data = None
            x.XDestroyImage(image)
            return None
        return cls(image, info)

    def grab(self, lib: _Libraries, dpy: c_void_p, root: int) -> Frame:
        if not lib.xext.XShmGetImage(dpy, root, self.image, 0, 0, _ALL_PLANES):
            raise XError("XShmGetImage failed")
        return _frame(self.image.contents, self.info.shmaddr)

    def release(self, lib: _Libraries, dpy: c_void_p, *, detach: bool = True) -> None:
        if detach:  # not on a broken connection: the server side is gone already
            lib.xext.XShmDetach(dpy, byref(self.info))
            lib.x11.XSync(dpy, 0)
        lib.libc.shmdt(self.info.shmaddr)
        self.image.contents.data = None  # not malloc'ed: XDestroyImage must not free it
        lib.x11.XDestroyImage(self.image)


def _frame(image: _XImage, address: int | None) -> Frame:
    little_bgrx = (
        image.bits_per_pixel == 32
        and image.byte_order == _LSB_FIRST
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
