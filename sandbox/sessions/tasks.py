"""Background tasks the session modules start and the manager waits for at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Background:
    """Holds references to running tasks (so none is collected mid-run) until they end."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` as a task; its result is dropped, its exception left to it to log."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for every task running now (failures are ignored, they logged already)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
