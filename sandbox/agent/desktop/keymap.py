"""Which keycode, with or without Shift, produces a keysym; spare keycodes for the rest.

The core keyboard mapping (``XGetKeyboardMapping``) lists, per keycode, the
keysyms of its levels: column 0 without modifiers, column 1 with Shift (further
columns belong to other groups and AltGr, which this keyboard does not press).
A keysym no key produces at those levels is typed the way xdotool does it: a
keycode that carries no keysym at all is bound to it for a while
(``XChangeKeyboardMapping``), so any character can be typed whatever the layout.

Clients translate a keycode with the mapping they have when they read the key
event, so a spare keycode is not rebound while events sent with its previous
keysym may still be unread: bindings are kept (least recently used first out)
and a keycode used less than `SpareKeycodes.settle_s` ago is rebound only after
that much time has passed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

NO_SYMBOL = 0


@dataclass(frozen=True)
class Stroke:
    """How to press one keysym: this keycode, with Shift held or not."""

    keycode: int
    shift: bool


class Keymap:
    """A snapshot of the core keyboard mapping.

    Args:
        min_keycode: The first keycode the table describes.
        keysyms_per_keycode: The table's columns per keycode.
        keysyms: The table, row by row, as ``XGetKeyboardMapping`` returns it.
    """

    def __init__(self, min_keycode: int, keysyms_per_keycode: int, keysyms: Sequence[int]) -> None:
        if keysyms_per_keycode < 1:
            raise ValueError("keysyms_per_keycode must be at least 1")
        self._strokes: dict[int, Stroke] = {}
        self._empty: list[int] = []
        rows = [
            keysyms[start : start + keysyms_per_keycode]
            for start in range(0, len(keysyms), keysyms_per_keycode)
        ]
        # Unshifted anywhere beats shifted: `<` is its own key on some layouts.
        for level in (0, 1):
            for index, row in enumerate(rows):
                if level < len(row) and row[level] != NO_SYMBOL:
                    self._strokes.setdefault(row[level], Stroke(min_keycode + index, level == 1))
        self._empty = [min_keycode + index for index, row in enumerate(rows) if not any(row)]

    def stroke(self, keysym: int) -> Stroke | None:
        """How to press `keysym` on this mapping, or None when no key produces it."""
        return self._strokes.get(keysym)

    @property
    def empty_keycodes(self) -> list[int]:
        """Keycodes that carry no keysym at all: free to bind."""
        return list(self._empty)


class SpareKeycodes:
    """Binds keysyms to spare keycodes, reusing the least recently used one.

    Args:
        keycodes: The spare keycodes (never the ones the layout uses).
        settle_s: Time a keycode must rest between its last use and a rebinding.
    """

    def __init__(self, keycodes: Sequence[int], settle_s: float = 0.05) -> None:
        if not keycodes:
            raise ValueError("there must be at least one spare keycode")
        self.settle_s = settle_s
        self._free = list(reversed(keycodes))  # pop() hands out the lowest first
        # keysym -> (keycode, last use), oldest use first.
        self._bound: OrderedDict[int, tuple[int, float]] = OrderedDict()

    def keycode_of(self, keysym: int) -> int | None:
        """The spare keycode bound to `keysym`, if any."""
        entry = self._bound.get(keysym)
        return None if entry is None else entry[0]

    def bind(self, keysym: int, now: float) -> tuple[int, bool, float]:
        """A keycode for `keysym` used at `now`.

        Returns:
            The keycode; whether it must be (re)bound to `keysym` first; and how
            long to wait before rebinding it (0 when it is free or rested).
        """
        entry = self._bound.pop(keysym, None)
        if entry is not None:
            self._bound[keysym] = (entry[0], now)
            return entry[0], False, 0.0
        if self._free:
            keycode, wait = self._free.pop(), 0.0
        else:
            _, (keycode, last_used) = self._bound.popitem(last=False)
            wait = max(0.0, last_used + self.settle_s - now)
        self._bound[keysym] = (keycode, now + wait)
        return keycode, True, wait

    def touch(self, keysym: int, now: float) -> None:
        """Note that `keysym`'s keycode was pressed at `now`."""
        entry = self._bound.get(keysym)
        if entry is not None:
            self._bound[keysym] = (entry[0], now)
            self._bound.move_to_end(keysym)

    def unbind(self, keysym: int) -> None:
        """Forget `keysym`'s binding and free its keycode (its binding failed)."""
        entry = self._bound.pop(keysym, None)
        if entry is not None:
            self._free.append(entry[0])

    @property
    def bound(self) -> dict[int, int]:
        """keysym -> keycode of every current binding."""
        return {keysym: keycode for keysym, (keycode, _) in self._bound.items()}
