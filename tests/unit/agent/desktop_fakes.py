"""A recording stand-in for the X display and the desktop: no X server needed."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sandbox.agent.desktop.keymap import Keymap
from sandbox.agent.desktop.xlib import Frame, MappingChange
from sandbox.agent.errors import InvalidParams
from sandbox.agent.params import Params
from sandbox.agent.toolsets.desktop import DesktopToolset

A, CAP_A, RETURN, SHIFT_L, CONTROL_L, C = 0x61, 0x41, 0xFF0D, 0xFFE1, 0xFFE3, 0x63
# keycode: (unshifted, shifted); 40 and 41 are spare.
LAYOUT = {10: (A, CAP_A), 11: (C, 0x43), 36: (RETURN, 0), 50: (SHIFT_L, 0), 37: (CONTROL_L, 0)}
SPARE = (40, 41)


class FakeDisplay:
    """Records XTEST requests; a tiny keyboard with two spare keycodes."""

    width, height, root = 1024, 768, 0x100

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.sent: list[tuple[Any, ...]] = []
        self.bindings: dict[int, tuple[int, ...]] = {}
        self.position = (0, 0)
        self.pending: list[MappingChange] = []
        self.lost = False

    def keymap(self) -> Keymap:
        table: list[int] = []
        for keycode in range(8, 60):
            filler = (0, 0) if keycode in SPARE else (0x20000 + keycode, 0)
            row = self.bindings.get(keycode) or LAYOUT.get(keycode, filler)
            table.extend(row[:2])
        return Keymap(8, 2, table)

    def bind_keysyms(self, keycode: int, keysyms: tuple[int, ...]) -> None:
        self.bindings[keycode] = keysyms
        self.sent.append(("bind", keycode, keysyms))
        self.pending.append(MappingChange(keycode, 1))

    def mapping_changes(self) -> list[MappingChange]:
        changes, self.pending = self.pending, []
        return changes

    def keysym_from_name(self, name: str) -> int:
        return {"XF86Calculator": 0x1008FF1D}.get(name, 0)

    def fake_motion(self, x: int, y: int) -> None:
        self.position = (x, y)
        self.sent.append(("motion", x, y))

    def fake_button(self, button: int, press: bool) -> None:
        self.sent.append(("button", button, press))

    def fake_key(self, keycode: int, press: bool) -> None:
        self.sent.append(("key", keycode, press))

    def pointer(self) -> tuple[int, int]:
        return self.position

    def sync(self) -> None:
        pass

    def flush(self) -> None:
        pass

    def window_property(self, window: int, name: str) -> list[int]:
        # The window manager lists a new window from the second look on.
        self.looks = getattr(self, "looks", 0) + 1
        return [0x600001] if self.looks > 1 else []

    def capture(self) -> Frame:
        return Frame(self.width, self.height, 4 * self.width, bytes(4 * self.width * self.height))

    def close(self) -> None:
        pass


class FakeDesktop:
    def __init__(self) -> None:
        self.display = FakeDisplay()
        self.closed = False
        self.reconnects = 0

    def wait_until_managed(self) -> None:
        pass

    def reconnect(self) -> FakeDisplay:
        self.reconnects += 1
        self.display = FakeDisplay()
        return self.display

    def close(self) -> None:
        self.closed = True


def call(tools: DesktopToolset, name: str, **params: Any) -> dict[str, Any]:
    """Run the desktop toolset's tool `name` (``click``) with `params`."""
    handlers = {tool.name: tool.handler for tool in tools.tools()}
    return handlers[f"vm.{name}"](Params(params))


def refused(tools: DesktopToolset, name: str, **params: Any) -> InvalidParams:
    """The parameter error tool `name` raises for `params`."""
    with pytest.raises(InvalidParams) as caught:
        call(tools, name, **params)
    return caught.value
