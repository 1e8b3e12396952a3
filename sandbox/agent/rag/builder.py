"""The index builder: keeps the shared ``default`` collection in step with its corpus."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .corpus import (
    Document,
    Fingerprint,
    SkippedLines,
    hash_and_count_lines,
    read_corpus,
    stat_fingerprint,
)
from .embedder import StaticEmbedder, embedding_texts
from .store import DEFAULT_CID, RagIndex, collection_range

BUILD_BATCH = 2000

BuildHook = Callable[[int, int], None]
"""Called before each batch of a default build with (done, total); tests pause here."""


@dataclass
class DefaultStatus:
    """Where the default collection stands (what ``rag.status`` reports)."""

    state: str = "empty"
    documents: int = 0
    done: int = 0
    total: int = 0
    corpus: str | None = None
    error: str | None = None
    elapsed_s: float = 0.0
    rebuilt: bool = False
    skipped: SkippedLines = field(default_factory=SkippedLines)
    started: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        elapsed = self.elapsed_s
        if self.state == "indexing" and self.started is not None:
            elapsed = time.monotonic() - self.started
        return {
            "state": self.state,
            "documents": self.documents,
            "progress": {"done": self.done, "total": self.total},
            "corpus": self.corpus,
            "error": self.error,
            "elapsed_s": round(elapsed, 3),
            "rebuilt": self.rebuilt,
            "skipped": self.skipped.as_dict(),
        }


class DefaultCollection:
    """Keeps the ``default`` collection in step with its corpus file.

    At `start` it compares the corpus with the fingerprint the index recorded
    after its last complete build: the same path, size and modification time
    mean nothing to do; otherwise the content is hashed, and only a different
    hash (or a build that never finished) starts a rebuild, in a background
    thread while the agent already answers. The passages' vectors are made in
    the same build, so they are reused exactly as long as the passages are; an
    index whose vectors came from another model (or none) is rebuilt.

    Args:
        index: The index to build into.
        corpus: The JSONL file, or None when there is none.
        hook: Called before each batch of a build, for tests.
        embedder: Makes the passages' vectors; None builds BM25 alone.
    """

    def __init__(
        self,
        index: RagIndex,
        corpus: str | None,
        hook: BuildHook | None = None,
        embedder: StaticEmbedder | None = None,
    ) -> None:
        self._index = index
        self._corpus = corpus
        self._hook = hook
        self._embedder = embedder
        self._lock = threading.Lock()
        self._status = DefaultStatus(corpus=corpus)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def status(self) -> DefaultStatus:
        """A copy of the current status."""
        with self._lock:
            return DefaultStatus(**{**self._status.__dict__})

    def start(self) -> None:
        """Decide whether to (re)build, and start doing it in the background."""
        with self._index.reading() as conn:
            record = RagIndex.load_meta(conn, "default") or {}
        stored = Fingerprint.from_dict(record.get("fingerprint"))
        complete = record.get("state") == "ready"
        if self._corpus is None:
            with self._index.reading() as conn:
                holds_default = RagIndex.collection_holds_any(conn, DEFAULT_CID)
            if holds_default:
                self._spawn(self._clear)
            else:
                self._set(state="empty", documents=0)
            return
        try:
            current = stat_fingerprint(self._corpus)
        except OSError as exc:
            self._set(state="failed", error=f"cannot read corpus {self._corpus}: {_reason(exc)}")
            return
        model = None if self._embedder is None else self._embedder.name
        if complete and model is not None and record.get("model") != model:
            # Passages without this model's vectors: rebuild them all.
            self._spawn(lambda: self._refresh(current, None, record))
            return
        if complete and stored is not None and stored.same_file(current):
            self._ready_from(record)
            threading.Thread(target=self._preload_vectors, name="rag-vectors", daemon=True).start()
            return
        self._spawn(lambda: self._refresh(current, stored if complete else None, record))

    def close(self) -> None:
        """Stop a running build (it resumes from scratch at the next start)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _ready_from(self, record: dict[str, Any]) -> None:
        """Ready, as the stored record of the last complete build says."""
        self._set(
            state="ready",
            documents=int(record.get("documents", 0)),
            done=int(record.get("total", 0)),
            total=int(record.get("total", 0)),
            elapsed_s=float(record.get("elapsed_s", 0.0)),
            skipped=SkippedLines.from_dict(record.get("skipped")),
        )

    def _set(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self._status, name, value)

    def _spawn(self, target: Callable[[], None]) -> None:
        self._set(state="indexing", started=time.monotonic())

        def run() -> None:
            try:
                target()
            except Exception as exc:
                self._set(state="failed", error=f"{type(exc).__name__}: {exc}")
                with self._lock:
                    if self._status.started is not None:
                        self._status.elapsed_s = time.monotonic() - self._status.started

        self._thread = threading.Thread(target=run, name="rag-default-build", daemon=True)
        self._thread.start()

    def _clear(self) -> None:
        with self._index.writing() as conn:
            self._drop_default(conn)
            RagIndex.store_meta(conn, "default", {"state": "ready", "fingerprint": None})
        self._index.frequencies.clear()
        self._index.vectors.invalidate()
        self._set(state="empty", documents=0, elapsed_s=0.0)

    def _refresh(
        self, current: Fingerprint, stored: Fingerprint | None, record: dict[str, Any]
    ) -> None:
        assert self._corpus is not None
        hashed = hash_and_count_lines(self._corpus, self._stop)
        if hashed is None:
            return
        digest, total = hashed
        current = Fingerprint(current.path, current.size, current.mtime_ns, digest)
        if stored is not None and stored.sha256 == digest:
            # Same content, new mtime or path (a copied file): keep the index.
            with self._index.writing() as conn:
                RagIndex.store_meta(conn, "default", {**record, "fingerprint": current.as_dict()})
            self._ready_from(record)
            return
        self._build(current, total)

    def _build(self, fingerprint: Fingerprint, total: int) -> None:
        assert self._corpus is not None
        started = time.monotonic()
        skipped = SkippedLines()
        self._set(total=total, done=0, documents=0, rebuilt=True, skipped=skipped)
        with self._index.writing() as conn:
            # A build that stops half way must not look complete at the next start.
            RagIndex.store_meta(conn, "default", {"state": "indexing"})
            self._drop_default(conn)
        self._index.frequencies.clear()
        self._index.vectors.invalidate()
        documents = 0
        done = 0
        batch: list[Document] = []
        # Progress counts lines (blank and bad ones too), so it ends at the total.
        for done, document in read_corpus(self._corpus, skipped):
            if document is not None:
                batch.append(document)
            if len(batch) >= BUILD_BATCH:
                if not self._write_batch(batch, total):
                    return
                documents += len(batch)
                batch = []
                self._set(done=done, documents=documents)
        if batch:
            if not self._write_batch(batch, total):
                return
            documents += len(batch)
        with self._index.writing() as conn:
            RagIndex.optimize(conn)
            elapsed = time.monotonic() - started
            RagIndex.store_meta(
                conn,
                "default",
                {
                    "state": "ready",
                    "fingerprint": fingerprint.as_dict(),
                    "documents": documents,
                    "total": done,
                    "elapsed_s": elapsed,
                    "skipped": skipped.as_dict(),
                    "built_at": time.time(),
                    "model": None if self._embedder is None else self._embedder.name,
                },
            )
        self._index.frequencies.clear()
        self._index.vectors.invalidate()
        # A build leaves a log as large as the index; fold it in while nobody waits.
        self._index.checkpoint()
        self._preload_vectors()
        self._set(state="ready", documents=documents, done=done, total=done, elapsed_s=elapsed)

    def _write_batch(self, batch: list[Document], total: int) -> bool:
        if self._hook is not None:
            self._hook(self._status.done, total)
        if self._stop.is_set():
            return False
        # Embedded before the write lock is taken: the lock is held for SQLite alone.
        vectors = None if self._embedder is None else self._embedder.embed(embedding_texts(batch))
        with self._index.writing() as conn:
            RagIndex.add_documents(conn, DEFAULT_CID, batch, replace=False, vectors=vectors)
        return True

    def _preload_vectors(self) -> None:
        """Load the default collection's vectors into memory (dense searches use them)."""
        if self._embedder is None:
            return
        low, high = collection_range(DEFAULT_CID)
        # A store closed meanwhile (the agent stopping) is no error worth a word.
        with contextlib.suppress(sqlite3.Error):
            self._index.vectors.preload(low, high, self._embedder.dim)

    @staticmethod
    def _drop_default(conn: sqlite3.Connection) -> None:
        # The shared file holds nothing but the default collection (sessions
        # have files of their own), so re-indexing the empty rest is cheapest.
        low, high = collection_range(DEFAULT_CID)
        in_default = conn.execute(
            "SELECT 1 FROM docs WHERE id BETWEEN ? AND ? LIMIT 1", (low, high)
        )
        if in_default.fetchone() is not None:
            RagIndex.clear_default_fast(conn)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
