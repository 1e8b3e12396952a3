"""What the ``/ui`` live views of all browsers share: made once, in the app's lifespan.

The routes (`sandbox.server.routes.ui`, `sandbox.server.routes.ui_vnc`) read it
from `Services.live_views`; each start of the app makes it anew, so a grant of
control does not outlive the server run that issued it and no semaphore is
carried from one event loop to the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from ..config import LiveViewSettings

SCREENSHOTS_AT_ONCE = 4
"""Screenshots the live views of all browsers may be taking at once."""


class LiveViewers:
    """Counts the open noVNC views, per session and in all, against the settings."""

    def __init__(self, per_session: int, total: int) -> None:
        self._per_session = per_session
        self._total = total
        self._open: Counter[str] = Counter()

    @contextlib.contextmanager
    def claim(self, session_id: str) -> Iterator[bool]:
        """Hold a viewer's place while inside; yields False when none is free."""
        free = self._open.total() < self._total and self._open[session_id] < self._per_session
        if free:
            self._open[session_id] += 1
        try:
            yield free
        finally:
            if free:
                self._open[session_id] -= 1
                if not self._open[session_id]:
                    del self._open[session_id]


@dataclass(frozen=True)
class LiveViews:
    """The live views' shared limits and secret."""

    viewers: LiveViewers
    """The open noVNC views, capped per session and in all."""
    screenshots: asyncio.Semaphore
    """Places for the screenshots the refreshed views take (`SCREENSHOTS_AT_ONCE`)."""
    grant_secret: bytes
    """What grants of control are signed with (drawn at start)."""

    @classmethod
    def start(cls, settings: LiveViewSettings) -> LiveViews:
        """Fresh state for one run of the app, bounded by `settings`."""
        return cls(
            viewers=LiveViewers(settings.viewers_per_session, settings.viewers),
            screenshots=asyncio.Semaphore(SCREENSHOTS_AT_ONCE),
            grant_secret=secrets.token_bytes(32),
        )
