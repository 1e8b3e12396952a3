"""Passage vectors: stored beside the passages, searched as one matrix in memory.

Each SQLite file (the shared one, each session's) holds a table ``vectors``
(``id`` = the passage's rowid in ``docs``, ``v`` = float16 bytes), written in
the same transaction as the passage, so a build that completes has every
vector and the build's fingerprint covers them (they are reused across restarts).

A search multiplies the query's vector by a float32 matrix of the collection's
vectors (cosine: every vector is unit length) and keeps the best rows. A plain
matrix was measured good enough at 100,000 passages (docs/benchmarks.md), so
no approximate index (faiss, usearch, sqlite-vec) is needed: exact results,
nothing more to install. The matrix is loaded on first use and again only
after `VectorCache.invalidate`, which every write of vectors calls.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .embedder import as_blob

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

_LOAD_BATCH = 20_000


def create_table(conn: sqlite3.Connection) -> None:
    """The ``vectors`` table, if missing."""
    conn.execute("CREATE TABLE IF NOT EXISTS vectors (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")


def store_vectors(conn: sqlite3.Connection, first_rowid: int, vectors: Any) -> None:
    """Store `vectors` (rows of a matrix) for rowids `first_rowid`, `first_rowid` + 1, ..."""
    conn.executemany(
        "INSERT OR REPLACE INTO vectors(id, v) VALUES (?, ?)",
        [(first_rowid + n, as_blob(vector)) for n, vector in enumerate(vectors)],
    )


@dataclass(frozen=True)
class _Loaded:
    generation: int
    rowids: npt.NDArray[np.int64]
    matrix: npt.NDArray[np.float32]


Reading = Callable[[], contextlib.AbstractContextManager[sqlite3.Connection]]
"""Opens a read transaction on the file (`RagIndex.reading`)."""


class VectorCache:
    """The matrices of one SQLite file's collections, reloaded after writes.

    Args:
        reading: Opens a read transaction of the file; a matrix is read in a
            snapshot of its own, begun after the generation it is kept under
            was read, so a write committed before `invalidate` is never missed.
    """

    def __init__(self, reading: Reading) -> None:
        self._reading = reading
        self._lock = threading.Lock()
        self._generation = 0
        self._loaded: dict[int, _Loaded] = {}

    def invalidate(self) -> None:
        """Vectors were written or deleted (call after the commit): the next
        search reloads its matrix."""
        with self._lock:
            self._generation += 1
            self._loaded.clear()

    def clear(self) -> None:
        """Let go of the matrices (a cold session's memory)."""
        self.invalidate()

    def search(
        self,
        low: int,
        high: int,
        query: npt.NDArray[np.float32],
        top_k: int,
    ) -> list[tuple[int, float]]:
        """The `top_k` (rowid, cosine) of rowids `low`..`high` closest to `query`."""
        import numpy as np

        loaded = self._matrix(low, high, int(query.shape[0]))
        if loaded.rowids.size == 0:
            return []
        scores = loaded.matrix @ query
        size = scores.size
        k = min(top_k, size)
        best = np.argpartition(scores, size - k)[size - k :] if k < size else np.arange(size)
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(loaded.rowids[n]), float(scores[n])) for n in best]

    def preload(self, low: int, high: int, dim: int) -> None:
        """Load the matrix of rowids `low`..`high` now, so the first search does not
        wait for it (about a second at 100,000 passages)."""
        self._matrix(low, high, dim)

    def _matrix(self, low: int, high: int, dim: int) -> _Loaded:
        with self._lock:
            generation = self._generation
            found = self._loaded.get(low)
        if found is not None and found.matrix.shape[1] == dim:
            return found
        # A write committed meanwhile bumped the generation: then this matrix
        # serves this call but is not kept.
        with self._reading() as conn:
            loaded = self._read(conn, low, high, dim, generation)
        with self._lock:
            if self._generation == generation:
                self._loaded[low] = loaded
        return loaded

    @staticmethod
    def _read(conn: sqlite3.Connection, low: int, high: int, dim: int, generation: int) -> _Loaded:
        import numpy as np

        width = dim * 2
        rowids: list[int] = []
        chunks: list[bytes] = []
        after = low - 1
        while True:
            rows = conn.execute(
                "SELECT id, v FROM vectors WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                (after, high, _LOAD_BATCH),
            ).fetchall()
            if not rows:
                break
            after = rows[-1][0]
            for rowid, blob in rows:
                if len(blob) == width:
                    rowids.append(rowid)
                    chunks.append(blob)
        matrix = np.frombuffer(b"".join(chunks), dtype="<f2").reshape(len(rowids), dim)
        return _Loaded(
            generation,
            np.asarray(rowids, dtype=np.int64),
            np.ascontiguousarray(matrix, dtype=np.float32),
        )


def fetch_passages(
    conn: sqlite3.Connection, ranked: Sequence[tuple[int, float]]
) -> list[tuple[int, str, str, str, float]]:
    """(rowid, doc_id, title, text, score) of `ranked` rowids, in their order
    (a rowid deleted meanwhile is left out)."""
    if not ranked:
        return []
    placeholders = ",".join("?" * len(ranked))
    rows = conn.execute(
        f"SELECT id, doc_id, title, text FROM docs WHERE id IN ({placeholders})",
        [rowid for rowid, _ in ranked],
    ).fetchall()
    by_id = {row[0]: row for row in rows}
    return [(rowid, *by_id[rowid][1:], score) for rowid, score in ranked if rowid in by_id]
