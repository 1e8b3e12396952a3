"""One persistent X connection, through ctypes: libX11, XTEST and MIT-SHM.

Every action of a `vm` session is a few XTEST requests on this connection
(microseconds) instead of a new xdotool process (milliseconds), and a screenshot
is one ``XShmGetImage`` into a shared memory segment the X server writes
directly (`grab`), instead of streaming 4 MB through the socket. Where the server
cannot share memory with us, ``XGetImage`` is the fallback. The C libraries'
prototypes and error hooks are in `libx11`.

Why ctypes rather than the desktop image's python3-xlib: measured on Xvfb
(docs/benchmarks.md, "Desktop: hand-written X code vs Debian's libraries"), each
job here takes 1.5 to 3 times as long through python3-xlib (a click 0.22 ms
against 0.14 ms, a property read 0.06-0.11 ms against 0.02-0.04 ms), importing
it and connecting take ~44 ms of a session's start against ~6 ms, and it has no
MIT-SHM, so the grab would need this connection besides.

Xlib is not thread-safe without ``XInitThreads``; instead every use of the
connection holds `XDisplay.lock`, which callers also hold across a sequence of
requests (a typed text, a drag) so concurrent calls cannot interleave them.

X errors are asynchronous: Xlib's default handler prints them and exits the
process, so a handler here records them and `XDisplay.sync` raises the first
as `XError` once the server has answered.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from ctypes import byref, c_int, c_uint, c_ulong, c_void_p
from dataclasses import dataclass

from .grab import Frame, ShmImage, frame_of
from .keymap import Keymap
from .libx11 import (
    ALL_PLANES,
    MAPPING_KEYBOARD,
    MAPPING_NOTIFY,
    Z_PIXMAP,
    XError,
    XEvent,
    XMappingEvent,
    XUnavailable,
    load,
)

__all__ = ["Frame", "MappingChange", "XDisplay", "XError", "XUnavailable"]


@dataclass(frozen=True)
class MappingChange:
    """A MappingNotify for the keyboard: keycodes `first` to `first + count - 1`."""

    first: int
    count: int


class XDisplay:
    """A connection to an X server with the XTEST extension.

    Args:
        name: The display, e.g. ``:0``.

    Raises:
        XUnavailable: The libraries are missing, the display does not answer, or
            it has no XTEST extension.
    """

    def __init__(self, name: str) -> None:
        self._lib = load()
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
        self._shm: ShmImage | None = None
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
        event = XEvent()
        with self.lock:
            while self._lib.x11.XPending(self._live()) > 0:
                self._lib.x11.XNextEvent(self._live(), byref(event))
                if event[0] & 0xFFFFFFFF != MAPPING_NOTIFY:
                    continue
                mapping = XMappingEvent.from_buffer(event)
                if mapping.request == MAPPING_KEYBOARD:
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
                self._shm = ShmImage.create(
                    self._lib, self._live(), self._screen, self.width, self.height
                )
            if self._shm is not None:
                return self._shm.grab(self._lib, self._live(), self.root)
            image = self._lib.x11.XGetImage(
                self._live(), self.root, 0, 0, self.width, self.height, ALL_PLANES, Z_PIXMAP
            )
            if not image:
                self._raise_errors()
                raise XError("XGetImage returned no image")
            try:
                return frame_of(image.contents, image.contents.data)
            finally:
                self._lib.x11.XDestroyImage(image)

    @property
    def uses_shared_memory(self) -> bool:
        """Whether captures go through MIT-SHM (known after the first capture)."""
        return self._shm is not None
