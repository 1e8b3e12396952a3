"""One start of a shared thing (the swarm relay, the swarm's networks) for every caller."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class SharedStart(Generic[T]):
    """Runs `start` once, as one task every caller waits for, and keeps its result.

    A caller that stops waiting (its deadline passed: a health check's 2 s, say)
    cancels only its own wait, never the start: the others, and the next caller,
    wait for that same start instead of beginning another. A start that fails
    fails every caller waiting for it; only a later call starts again.

    Args:
        start: What to run; its result is kept until `forget`.
        what: Named in the log line of a start that failed.
    """

    def __init__(self, start: Callable[[], Coroutine[Any, Any, T]], what: str) -> None:
        self._start = start
        self._what = what
        self._task: asyncio.Task[T] | None = None

    async def result(self) -> T:
        """The kept result, else that of the start under way, else of a new one.

        Raises:
            Exception: Whatever the start raised (this call's start, or the one it
                joined).
        """
        task = self._task
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = asyncio.get_running_loop().create_task(self._start())
            task.add_done_callback(self._log_failure)
            self._task = task
        return await asyncio.shield(task)

    def kept(self) -> T | None:
        """The result of a start that succeeded, without waiting; else None."""
        task = self._task
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return None
        return task.result()

    def forget(self, result: T) -> None:
        """`result` is stale (the relay it names is gone): the next call starts again.
        A start under way, or the result of a newer one, is kept."""
        if self.kept() == result:
            self._task = None

    def cancel(self) -> None:
        """Cancel a start under way (closing) and keep nothing."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(RuntimeError):  # its loop closed already: it is over
                self._task.cancel()
        self._task = None

    def _log_failure(self, task: asyncio.Task[T]) -> None:
        # Retrieved here, so a start whose every caller gave up is still reported.
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s failed: %s", self._what, task.exception())
