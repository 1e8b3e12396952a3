"""The recorder: the request path hands each finished call over; a thread stores it.

`Recorder.submit` only puts the call on a queue, so recording costs a request
next to nothing. The writer thread takes whatever has queued up, redacts the
params, moves images out to their files and stores the lot in one transaction,
at once (so at most the last moment is lost to a SIGKILL, well under a second);
`close` stores everything queued before it returns, so a clean shutdown loses
nothing. The store and the thread are made on first use: a server on which
nobody records opens no database.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .images import ImageFiles
from .sqlite import SQLiteStore
from .store import Step, TrajectoryStore, TrajectorySummary

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
_BATCH_MAX = 1000
_PRUNE_EVERY_S = 60.0


@dataclass(frozen=True)
class Call:
    """A finished tool call, as the request path hands it over (nothing copied)."""

    tenant: str
    worker_id: str
    session_id: str
    resource_type: str
    action: str
    tool: str
    params: dict[str, Any]
    code: int
    message: str
    data: Any
    started_at: float
    execution_time_ms: float
    trace_id: str | None


def redact(value: Any, keys: frozenset[str]) -> Any:
    """`value` with the values of secret-named keys replaced (a copy; `value` is kept).

    A key is secret when, lower-cased with ``-`` read as ``_``, it is one of `keys`
    or one of them is its first or last ``_``-separated part (``API_TOKEN``,
    ``db_password``), so ``max_tokens`` stays readable.
    """
    if isinstance(value, dict):
        return {
            key: REDACTED if _is_secret(key, keys) else redact(item, keys)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item, keys) for item in value]
    return value


def _is_secret(key: object, keys: frozenset[str]) -> bool:
    if not isinstance(key, str):
        return False
    name = key.lower().replace("-", "_")
    if name in keys:
        return True
    parts = name.split("_")
    return len(parts) > 1 and (parts[0] in keys or parts[-1] in keys)


class Recorder:
    """Records calls off the request path and reads them back.

    Args:
        root: Directory of the database (``trajectories.db``) and ``images/``.
        redact_keys: Param names whose values are never stored.
        max_age_s: Trajectories idle longer are dropped.
        max_bytes: Past this total, the least recently used trajectories are dropped.
        clock: Wall-clock time (tests pass a fake to age trajectories).
        store: A store to use instead of SQLite in `root`.
    """

    def __init__(
        self,
        root: Path,
        *,
        redact_keys: Iterable[str] = (),
        max_age_s: float = float("inf"),
        max_bytes: int = 1 << 62,
        clock: Callable[[], float] = time.time,
        store: TrajectoryStore | None = None,
    ) -> None:
        self.root = root
        self.redact_keys = frozenset(key.lower().replace("-", "_") for key in redact_keys)
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self.clock = clock
        self._store = store
        self._images: ImageFiles | None = None
        self._queue: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        self._opened = threading.Lock()
        self._done = threading.Condition()
        self._submitted = 0
        self._written = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- the request path ---------------------------------------------------------------

    def submit(self, call: Call) -> None:
        """Queue `call` for storing; returns at once."""
        if self._closed:
            return
        if self._thread is None:
            self._start()
        self._submitted += 1  # only the event loop's thread submits
        self._queue.put(call)

    # -- life -------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the writer thread (which opens the store, off the event loop)."""
        with self._opened:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._write_forever, name="trajectory-writer", daemon=True
                )
                self._thread.start()

    def _open(self) -> tuple[TrajectoryStore, ImageFiles]:
        with self._opened:
            if self._images is None:
                self._images = ImageFiles(self.root / "images")
                if self._store is None:
                    self._store = SQLiteStore(self.root / "trajectories.db")
            assert self._store is not None
            return self._store, self._images

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every call submitted so far is stored; whether it was in time."""
        target = self._submitted
        with self._done:
            return self._done.wait_for(lambda: self._written >= target, timeout)

    def close(self) -> None:
        """Store everything queued, stop the writer and close the store."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        with self._opened:
            if self._images is not None and self._store is not None:
                self._store.close()

    # -- the writer thread --------------------------------------------------------------

    def _write_forever(self) -> None:
        store, images = self._open()
        next_prune = 0.0
        while True:
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + _PRUNE_EVERY_S
                self.prune()
            try:  # woken at least once a minute, so retention runs on an idle server too
                batch = [self._queue.get(timeout=_PRUNE_EVERY_S)]
            except queue.Empty:
                continue
            while len(batch) < _BATCH_MAX and batch[-1] is not None:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            calls = [call for call in batch if call is not None]
            try:
                store.add([self._step(call, images) for call in calls])
            except Exception:  # a recording must never take the server down
                log.exception("could not store %d recorded calls", len(calls))
            with self._done:
                self._written += len(calls)
                self._done.notify_all()
            if batch[-1] is None:
                return

    def _step(self, call: Call, images: ImageFiles) -> Step:
        found: dict[str, int] = {}
        data = images.extract(call.data, found)
        return Step(
            tenant=call.tenant,
            worker_id=call.worker_id,
            session_id=call.session_id,
            resource_type=call.resource_type,
            action=call.action,
            tool=call.tool,
            params=redact(call.params, self.redact_keys),
            code=call.code,
            message=call.message,
            data=data,
            started_at=call.started_at,
            execution_time_ms=call.execution_time_ms,
            trace_id=call.trace_id,
            images=found,
        )

    def prune(self) -> list[str]:
        """Apply retention now (age, then size); the images removed."""
        store, images = self._open()
        try:
            orphans = store.prune(self.clock() - self.max_age_s, self.max_bytes)
        except Exception:
            log.exception("could not apply the recording retention")
            return []
        for sha256 in orphans:
            images.remove(sha256)
        if orphans:
            log.info("recording retention removed %d images", len(orphans))
        return orphans

    # -- reading ----------------------------------------------------------------------

    def find(self, tenant: str, **filters: Any) -> list[TrajectorySummary]:
        """The tenant's trajectories (see `TrajectoryStore.find`)."""
        store, _ = self._open()
        self.flush()
        return store.find(tenant, **filters)

    def lines(
        self, tenant: str, session_id: str, *, inline: bool
    ) -> Iterator[dict[str, Any]] | None:
        """The trajectory's steps as export lines; None when the tenant has none such."""
        store, images = self._open()
        self.flush()
        steps = store.steps(tenant, session_id)
        if steps is None:
            return None
        if not inline:
            return (step.line() for step in steps)
        return ({**step.line(), "data": images.inline(step.data)} for step in steps)

    def image(self, tenant: str, sha256: str) -> Path | None:
        """The file of image `sha256` if one of the tenant's trajectories shows it."""
        store, images = self._open()
        self.flush()
        if not store.has_image(tenant, sha256):
            return None
        return images.find(sha256)

    def delete(self, tenant: str, session_id: str) -> bool:
        """Delete the tenant's trajectory and the images only it referenced; whether it was."""
        store, images = self._open()
        self.flush()
        orphans = store.delete(tenant, session_id)
        if orphans is None:
            return False
        for sha256 in orphans:
            images.remove(sha256)
        return True
