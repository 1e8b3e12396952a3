"""The default trajectory store: one SQLite database in WAL mode.

WAL with ``synchronous=NORMAL`` keeps every committed transaction through a crash
of the process (only a power loss can take the last ones), and readers never
wait for the writer. The writer thread holds one connection; every read opens
its own, which WAL lets run beside the writes.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .store import Step, TrajectorySummary

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trajectories (
    tenant TEXT NOT NULL, session_id TEXT NOT NULL, worker_id TEXT NOT NULL,
    resource_type TEXT NOT NULL, started_at REAL NOT NULL, updated_at REAL NOT NULL,
    steps INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (tenant, session_id));
CREATE INDEX IF NOT EXISTS trajectories_by_time ON trajectories (tenant, updated_at);
CREATE TABLE IF NOT EXISTS steps (
    tenant TEXT NOT NULL, session_id TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (tenant, session_id, seq));
CREATE TABLE IF NOT EXISTS step_images (
    tenant TEXT NOT NULL, session_id TEXT NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (tenant, session_id, sha256));
CREATE INDEX IF NOT EXISTS step_images_by_sha ON step_images (sha256);
"""
_STEP_FIELDS = ("action", "tool", "params", "code", "message", "data", "started_at")


class SQLiteStore:
    """`TrajectoryStore` in one SQLite file.

    Args:
        path: The database file (made with its directory when missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._db = self._connect()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # -- writing --------------------------------------------------------------------

    def add(self, steps: Sequence[Step]) -> None:
        """Store `steps` (numbering each within its trajectory) in one transaction."""
        with self._write_lock, self._db:
            for step in steps:
                self._add_one(step)

    def _add_one(self, step: Step) -> None:
        key = (step.tenant, step.session_id)
        row = self._db.execute(
            "SELECT steps FROM trajectories WHERE tenant=? AND session_id=?", key
        ).fetchone()
        seq = (row[0] if row else 0) + 1
        body = json.dumps(_body(dataclasses.replace(step, seq=seq)), separators=(",", ":"))
        size = len(body) + sum(step.images.values())
        if row is None:
            self._db.execute(
                "INSERT INTO trajectories VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                (*key, step.worker_id, step.resource_type, step.started_at, step.started_at, size),
            )
        else:
            self._db.execute(
                "UPDATE trajectories SET steps=?, bytes=bytes+?, updated_at=max(updated_at, ?) "
                "WHERE tenant=? AND session_id=?",
                (seq, size, step.started_at, *key),
            )
        self._db.execute("INSERT INTO steps VALUES (?, ?, ?, ?)", (*key, seq, body))
        self._db.executemany(
            "INSERT OR IGNORE INTO step_images VALUES (?, ?, ?)",
            [(*key, sha256) for sha256 in step.images],
        )

    def delete(self, tenant: str, session_id: str) -> list[str] | None:
        """Remove a trajectory; the images no longer referenced, or None if unknown."""
        key = (tenant, session_id)
        with self._write_lock, self._db:
            gone = self._db.execute(
                "DELETE FROM trajectories WHERE tenant=? AND session_id=?", key
            ).rowcount
            if not gone:
                return None
            return self._drop_steps([key])

    def prune(self, older_than: float, max_bytes: int) -> list[str]:
        """Drop trajectories idle since before `older_than`, then oldest first
        until the total is at most `max_bytes`; the images no longer referenced."""
        with self._write_lock, self._db:
            rows = self._db.execute(
                "SELECT tenant, session_id, updated_at, bytes FROM trajectories "
                "ORDER BY updated_at DESC"
            ).fetchall()
            total, doomed = 0, []
            for tenant, session_id, updated_at, size in rows:
                total += size
                if updated_at < older_than or total > max_bytes:
                    doomed.append((tenant, session_id))
            if not doomed:
                return []
            self._db.executemany("DELETE FROM trajectories WHERE tenant=? AND session_id=?", doomed)
            return self._drop_steps(doomed)

    def _drop_steps(self, keys: list[tuple[str, str]]) -> list[str]:
        """Delete the steps of `keys`; the images nobody references any more."""
        shas: set[str] = set()
        for key in keys:
            shas.update(
                sha
                for (sha,) in self._db.execute(
                    "SELECT sha256 FROM step_images WHERE tenant=? AND session_id=?", key
                )
            )
        self._db.executemany("DELETE FROM steps WHERE tenant=? AND session_id=?", keys)
        self._db.executemany("DELETE FROM step_images WHERE tenant=? AND session_id=?", keys)
        return sorted(
            sha
            for sha in shas
            if self._db.execute("SELECT 1 FROM step_images WHERE sha256=?", (sha,)).fetchone()
            is None
        )

    def close(self) -> None:
        """Close the writer's connection (every committed step is on disk)."""
        with self._write_lock:
            self._db.close()

    # -- reading --------------------------------------------------------------------

    def find(
        self,
        tenant: str,
        *,
        worker_id: str | None = None,
        session_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[TrajectorySummary]:
        """The tenant's trajectories, newest first, active in [since, until]."""
        where, args = ["tenant=?"], [tenant]
        for clause, value in (
            ("worker_id=?", worker_id),
            ("session_id=?", session_id),
            ("updated_at>=?", since),
            ("started_at<=?", until),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)  # type: ignore[arg-type]
        query = (
            "SELECT session_id, worker_id, resource_type, started_at, updated_at, steps, bytes "
            f"FROM trajectories WHERE {' AND '.join(where)} ORDER BY updated_at DESC LIMIT ?"
        )
        db = self._connect()
        try:
            return [TrajectorySummary(*row) for row in db.execute(query, (*args, limit))]
        finally:
            db.close()

    def steps(self, tenant: str, session_id: str) -> Iterator[Step] | None:
        """The trajectory's steps in order; None when the tenant has no such trajectory."""
        db = self._connect()
        row = db.execute(
            "SELECT 1 FROM trajectories WHERE tenant=? AND session_id=?", (tenant, session_id)
        ).fetchone()
        if row is None:
            db.close()
            return None
        return _read_steps(db, tenant, session_id)

    def has_image(self, tenant: str, sha256: str) -> bool:
        """Whether one of the tenant's trajectories references image `sha256`."""
        db = self._connect()
        try:
            query = "SELECT 1 FROM step_images WHERE sha256=? AND tenant=? LIMIT 1"
            return db.execute(query, (sha256, tenant)).fetchone() is not None
        finally:
            db.close()


def _body(step: Step) -> dict[str, Any]:
    body = {name: getattr(step, name) for name in _STEP_FIELDS}
    body.update(
        seq=step.seq,
        worker_id=step.worker_id,
        resource_type=step.resource_type,
        execution_time_ms=step.execution_time_ms,
        trace_id=step.trace_id,
        images=step.images,
    )
    return body


def _read_steps(db: sqlite3.Connection, tenant: str, session_id: str) -> Iterator[Step]:
    try:
        rows = db.execute(
            "SELECT body FROM steps WHERE tenant=? AND session_id=? ORDER BY seq",
            (tenant, session_id),
        )
        for (body,) in rows:
            fields = json.loads(body)
            yield Step(tenant=tenant, session_id=session_id, **fields)
    finally:
        db.close()
