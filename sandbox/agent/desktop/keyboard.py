"""Typing text and pressing keys through XTEST on the persistent connection."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

from .keymap import SpareKeycodes, Stroke
from .keys import KEYSYMS, Key, character_keysym, resolve_key
from .xlib import XDisplay, XError

# Flush typed keys to the server every so many, so a long text streams to the
# application instead of piling up in Xlib's buffer.
_FLUSH_EVERY = 64


class KeyboardError(RuntimeError):
    """A keysym could not be given a keycode (no spare keycode is left)."""


class Keyboard:
    """Presses keys by keysym, binding spare keycodes to keysyms the layout lacks.

    Args:
        display: The connection to send key events on.
    """

    def __init__(self, display: XDisplay) -> None:
        self._display = display
        self._keymap = display.keymap()
        self._pool = frozenset(self._keymap.empty_keycodes)
        self._spare = SpareKeycodes(sorted(self._pool)) if self._pool else None
        # Our own rebindings, whose MappingNotify events must not force a reload.
        self._own_changes: Counter[int] = Counter()
        shift = self._keymap.stroke(KEYSYMS["Shift_L"]) or self._keymap.stroke(KEYSYMS["Shift_R"])
        self._shift = shift.keycode if shift is not None and not shift.shift else None
        self._held: set[int] = set()

    def resolve(self, name: str) -> Key:
        """The key called `name` (see `keys.resolve_key`)."""
        return resolve_key(name, self._display.keysym_from_name)

    def type_text(self, text: str, interval: float = 0.0) -> None:
        """Type `text` character by character, whatever the layout; `interval`
        seconds apart (the display is free for other calls in between).

        Raises:
            keys.UnknownKey: A character no key can produce (a control character).
        """
        keysyms = [character_keysym(char) for char in text]  # refuse before typing
        if interval > 0:
            for count, keysym in enumerate(keysyms):
                if count:
                    time.sleep(interval)
                with self._display.lock:
                    self._refresh()
                    self._tap(self._stroke(keysym))
                    self._display.sync()
            return
        with self._display.lock:
            self._refresh()
            for count, keysym in enumerate(keysyms, 1):
                self._tap(self._stroke(keysym))
                if count % _FLUSH_EVERY == 0:
                    self._display.flush()
            self._display.sync()

    def press(self, keys: Sequence[Key]) -> None:
        """Press `keys` in order and release them in reverse (a chord or one key)."""
        with self._display.lock:
            self._refresh()
            strokes = [self._stroke(key.keysym) for key in keys]
            for stroke in strokes:
                self._down(stroke)
            for stroke in reversed(strokes):
                self._display.fake_key(stroke.keycode, False)
                self._held.discard(stroke.keycode)
            self._display.sync()

    def key_down(self, key: Key) -> None:
        """Press `key` and keep it down."""
        with self._display.lock:
            self._refresh()
            self._down(self._stroke(key.keysym))
            self._display.sync()

    def key_up(self, key: Key) -> None:
        """Release `key` (harmless when it is not down)."""
        with self._display.lock:
            self._refresh()
            stroke = self._stroke(key.keysym)
            self._display.fake_key(stroke.keycode, False)
            self._held.discard(stroke.keycode)
            self._display.sync()

    def release_all(self) -> None:
        """Release every key `key_down` left pressed."""
        with self._display.lock:
            for keycode in sorted(self._held):
                self._display.fake_key(keycode, False)
            self._held.clear()
            self._display.sync()

    # -- internals ----------------------------------------------------------------

    def _refresh(self) -> None:
        """Reload the mapping if someone else (xmodmap, setxkbmap) changed it."""
        stale = False
        for change in self._display.mapping_changes():
            if change.count == 1 and self._own_changes[change.first] > 0:
                self._own_changes[change.first] -= 1
            else:
                stale = True
        if stale:
            self._keymap = self._display.keymap()

    def _stroke(self, keysym: int) -> Stroke:
        now = time.monotonic()
        if self._spare is not None:
            keycode = self._spare.keycode_of(keysym)
            if keycode is not None:
                self._spare.touch(keysym, now)
                return Stroke(keycode, False)
        stroke = self._keymap.stroke(keysym)
        # A spare keycode in the snapshot may since have been rebound.
        if stroke is not None and stroke.keycode not in self._pool:
            return stroke
        if self._spare is None:
            raise KeyboardError(f"no key produces keysym {keysym:#x} and no keycode is spare")
        keycode, rebind, wait = self._spare.bind(keysym, now)
        if rebind:
            if wait > 0:
                self._display.sync()
                time.sleep(wait)
            try:
                # Same keysym on both levels: Shift or Caps Lock cannot change it.
                self._display.bind_keysyms(keycode, (keysym, keysym))
            except XError:
                self._spare.unbind(keysym)
                raise
            self._own_changes[keycode] += 1
        return Stroke(keycode, False)

    def _tap(self, stroke: Stroke) -> None:
        shift = self._needs_shift(stroke)
        if shift:
            self._display.fake_key(self._shift_keycode(), True)
        self._display.fake_key(stroke.keycode, True)
        self._display.fake_key(stroke.keycode, False)
        if shift:
            self._display.fake_key(self._shift_keycode(), False)

    def _down(self, stroke: Stroke) -> None:
        # Shift only for the press, as pyautogui does: `A` held is `a` held after Shift.
        shift = self._needs_shift(stroke)
        if shift:
            self._display.fake_key(self._shift_keycode(), True)
        self._display.fake_key(stroke.keycode, True)
        self._held.add(stroke.keycode)
        if shift:
            self._display.fake_key(self._shift_keycode(), False)

    def _needs_shift(self, stroke: Stroke) -> bool:
        return stroke.shift and self._shift is not None and self._shift not in self._held

    def _shift_keycode(self) -> int:
        assert self._shift is not None
        return self._shift
