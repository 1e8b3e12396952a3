"""Heartbeats an open client sends in the background (``HTTPClientConfig.auto_heartbeat``).

A heartbeat pushes the expiry of the worker's sessions, so a worker that spends
minutes between two tool calls (an LLM thinking) does not lose them. The async
client beats from a task on its event loop, the blocking one from a daemon
thread; both stop when the client closes. A failed beat is logged, never raised:
the next tool call reports a real problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable

from sandbox.client._envelope import Envelope
from sandbox.errors import SandboxError

logger = logging.getLogger("sandbox.client")


def _report(envelope: Envelope) -> None:
    if not envelope.ok:
        logger.warning("heartbeat answered %d: %s", envelope.code, envelope.message)


class AsyncHeartbeat:
    """Calls `beat` every `interval` seconds from a task, until `stop`."""

    def __init__(self, beat: Callable[[], Awaitable[Envelope]], interval: float) -> None:
        self._beat = beat
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the task runs."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start beating (no-op when already running); needs a running event loop."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def cancel(self) -> None:
        """Cancel the task without waiting (for a blocking close)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        """Cancel the task and wait for it to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                _report(await self._beat())
            except (SandboxError, RuntimeError) as error:
                logger.warning("heartbeat failed: %s", error)


class ThreadHeartbeat:
    """Calls `beat` every `interval` seconds from a daemon thread, until `stop`."""

    def __init__(self, beat: Callable[[], Envelope], interval: float) -> None:
        self._beat = beat
        self._interval = interval
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start beating (no-op when already running)."""
        if not self.running:
            self._stopped.clear()
            self._thread = threading.Thread(target=self._run, name="sandbox-heartbeat", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread; waits up to `timeout` seconds for a beat in flight."""
        self._stopped.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                _report(self._beat())
            except (SandboxError, RuntimeError) as error:
                logger.warning("heartbeat failed: %s", error)
