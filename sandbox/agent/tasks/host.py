"""What tasks may do on the desktop: the `TaskHost` the steps and getters use.

Every method acts as the session user; the desktop toolset implements it
(`sandbox/agent/toolsets/_desktop_tasks.py`), unit tests fake it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

WindowAction = Literal["activate", "close"]


@dataclass(frozen=True)
class BrowserTab:
    """One of Chromium's tabs."""

    id: str
    url: str
    title: str


@dataclass(frozen=True)
class CommandOutput:
    """How a command ended: its output streams and exit status."""

    stdout: str
    stderr: str
    exit_code: int | None


class TaskHost(Protocol):
    """The desktop as setup steps and getters see it.

    Methods raise `ToolError`s (``ToolFailed``, ``ToolTimeout``) for failures a
    caller should see.
    """

    def run(self, command: str, timeout: float) -> CommandOutput:
        """Run a bash command line and wait for it."""
        ...

    def launch(self, command: str) -> dict[str, Any]:
        """Start a bash command line in the background; returns its ``pid`` and ``log``."""
        ...

    def read_file(self, path: str, limit: int) -> bytes | None:
        """Up to `limit` + 1 bytes of a file; None when there is no such file."""
        ...

    def write_file(self, path: str, data: bytes) -> None:
        """Write a file, making its missing directories."""
        ...

    def windows(
        self, action: WindowAction, name: str, *, strict: bool, by_class: bool
    ) -> list[str]:
        """Activate or close the windows matching `name`; returns their titles."""
        ...

    def active_window_title(self) -> str | None:
        """The active window's title; None when no window is active."""
        ...

    def clipboard(self) -> str:
        """The clipboard's text ('' when it is empty)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait."""
        ...

    def accessibility_tree(self, options: Mapping[str, Any]) -> str:
        """The AT-SPI tree as ``vm.accessibility_tree`` reads it with `options` (its
        parameters, every one given)."""
        ...

    def browser_tabs(self) -> list[BrowserTab] | None:
        """Chromium's tabs, most recently used first; None when no Chromium answers."""
        ...

    def page_text(self, tab: BrowserTab) -> str:
        """The text of `tab`'s page (its body's ``innerText``, bounded)."""
        ...

    def open_page(self, url: str, timeout: float) -> dict[str, str] | None:
        """``{title, url, content}`` of `url` loaded in a new Chromium tab (closed after;
        `content` is the HTML); None when no Chromium answers."""
        ...

    def close_tab(self, tab: BrowserTab) -> None:
        """Close one of Chromium's tabs."""
        ...

    def agent_status(self) -> Mapping[str, Any]:
        """What the agent last said of the task: ``{"status": "running" | "done" |
        "failed", "reason"?}`` (from ``vm.done`` and ``vm.fail``)."""
        ...
