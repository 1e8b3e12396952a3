"""Each session's private collection in a SQLite file of its own.

Why a file per session rather than a collection number in the shared file:

- BM25 weighs a word by how many passages of the index hold it. In one shared
  index a session's private passages would change the scores of everyone's
  shared results; in its own file they change only that session's own scores.
- A file has its own writer. One session's large ``rag.index`` holds only that
  file's lock; searches of the shared corpus and of other sessions never wait
  for it (WAL readers do not wait for writers either).

The files are ``<directory>/<cid>.sqlite3``, named by the registry's collection
number (never by a caller's string, and never reused: the registry counts up).
Each file records its size under meta key ``totals``, which bounds what one
session may index. With an embedding model, each passage's vector is stored in
its file too (`vectors`), and counts `StaticEmbedder.vector_bytes` against the
bound, since dense search holds it in memory.

Files are many and each open one costs descriptors and memory in a service
every session shares, so only the `max_warm` most recently used keep their
connections and word counts; the others are let go of and reopen on demand.
A session file's page cache is smaller than the shared file's for the same reason.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .corpus import Document
from .embedder import StaticEmbedder, embedding_texts
from .store import IndexClosed, RagIndex, SessionRecord, collection_range

_SUFFIXES = ("", "-wal", "-shm")
_MIGRATE_BATCH = 2000
MAX_WARM = 128
_SESSION_CACHE_KIB = 4096
_SESSION_FREQUENCY_LIMIT = 10_000


class CollectionGone(Exception):
    """The session was closed while a call wanted its collection."""


class CollectionFull(Exception):
    """Indexing would take a session's collection over its byte bound.

    Attributes:
        would_hold: The bytes the collection would hold after the call.
        limit: The bound.
    """

    def __init__(self, would_hold: int, limit: int) -> None:
        super().__init__(f"{would_hold} bytes would be over the bound of {limit}")
        self.would_hold = would_hold
        self.limit = limit


@dataclass
class SessionCollection:
    """One session's file and its size (updated under the file's writer lock)."""

    cid: int
    store: RagIndex
    documents: int = 0
    bytes: int = 0


def document_bytes(document: Document) -> int:
    """What `document` counts against its session's byte bound: UTF-8 title and text."""
    return len(document.title.encode("utf-8")) + len(document.text.encode("utf-8"))


class SessionCollections:
    """The open session files, opened on first use and deleted with their session.

    Args:
        directory: Where the files live; created if missing.
        score_budget: Passed to each file's `RagIndex`.
        max_bytes: The most title and text bytes one session's collection may hold.
        max_warm: How many files keep their connections between calls.
        embedder: Makes the passages' vectors; None indexes for BM25 alone.
    """

    def __init__(
        self,
        directory: str,
        *,
        score_budget: int,
        max_bytes: int,
        max_warm: int = MAX_WARM,
        embedder: StaticEmbedder | None = None,
    ) -> None:
        os.makedirs(directory, exist_ok=True)
        self._embedder = embedder
        self._model = None if embedder is None else embedder.name
        self.directory = directory
        self.max_bytes = max_bytes
        self._score_budget = score_budget
        self._max_warm = max_warm
        self._lock = threading.Lock()
        self._open: dict[int, SessionCollection] = {}
        # Most recently used last; the ones that fall off the front let go.
        self._warm: OrderedDict[int, SessionCollection] = OrderedDict()
        # Collection numbers are never reused, so remembering the closed ones
        # keeps a call that raced its session's close from re-creating the file.
        self._gone: set[int] = set()

    def get(self, cid: int) -> SessionCollection:
        """The collection numbered `cid`, opening (or creating) its file.

        Raises:
            CollectionGone: Its session was closed.
            sqlite3.Error: The file cannot be opened.
        """
        with self._lock:
            if cid in self._gone:
                raise CollectionGone(cid)
            found = self._open.get(cid)
            if found is None:
                # Opened under the lock: a racing `drop` must not miss a new file.
                found = self._open[cid] = self._load(cid)
            self._warm[cid] = found
            self._warm.move_to_end(cid)
            cold = self._warm.popitem(last=False)[1] if len(self._warm) > self._max_warm else None
        if cold is not None:
            cold.store.release_idle()
        return found

    def add(
        self, cid: int, documents: Sequence[Document], sizes: Sequence[int], *, bound: bool = True
    ) -> int:
        """Index `documents` (of `sizes` bytes each) into collection `cid`; its new count.

        Ids must be unique within `documents`; an id the collection holds is replaced.
        With an embedding model, each passage also counts its vector's bytes.

        Raises:
            CollectionFull: They would take it over `max_bytes`; nothing is written.
            CollectionGone: Its session was closed.
        """
        collection = self.get(cid)
        extra = 0 if self._embedder is None else self._embedder.vector_bytes
        if bound and sum(sizes) + extra * len(documents) > self.max_bytes:
            # Over the bound whatever it replaces: refused before the embedding work.
            raise CollectionFull(sum(sizes) + extra * len(documents), self.max_bytes)
        vectors = None
        if self._embedder is not None:
            # Embedded before the file's write lock is taken.
            vectors = self._embedder.embed(embedding_texts(documents))
        try:
            with collection.store.writing() as conn:
                replaced, replaced_bytes = (0, 0)
                if collection.documents:
                    ids = [document.doc_id for document in documents]
                    replaced, replaced_bytes = RagIndex.measure(conn, cid, ids)
                would_hold = (
                    collection.bytes
                    - replaced_bytes
                    - extra * replaced
                    + sum(sizes)
                    + extra * len(documents)
                )
                if bound and would_hold > self.max_bytes:
                    raise CollectionFull(would_hold, self.max_bytes)
                RagIndex.add_documents(conn, cid, documents, replace=replaced > 0, vectors=vectors)
                count = collection.documents + len(documents) - replaced
                RagIndex.store_meta(
                    conn, "totals", {"documents": count, "bytes": would_hold, "model": self._model}
                )
            collection.documents, collection.bytes = count, would_hold
            collection.store.vectors.invalidate()
        except IndexClosed:
            raise CollectionGone(cid) from None
        return count

    def drop(self, cid: int) -> int:
        """Close and delete collection `cid`'s file; how many passages it held."""
        with self._lock:
            self._gone.add(cid)
            self._warm.pop(cid, None)
            collection = self._open.pop(cid, None)
            if collection is None and os.path.exists(self._path(cid)):
                with contextlib.suppress(sqlite3.Error):
                    collection = self._load(cid)
        documents = 0
        if collection is not None:
            documents = collection.documents
            collection.store.close()
        for suffix in _SUFFIXES:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._path(cid) + suffix)
        return documents

    def remove_orphans(self, known: Iterable[int]) -> None:
        """Delete the files of collections the registry does not hold (left by a
        crash between a session's record going and its file going)."""
        keep = set(known)
        for name in os.listdir(self.directory):
            stem = name.split(".", 1)[0]
            if stem.isdigit() and int(stem) not in keep:
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(self.directory, name))

    def size_bytes(self) -> int:
        """Every session file's size on disk, write-ahead logs included."""
        total = 0
        for name in os.listdir(self.directory):
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(self.directory, name))
        return total

    def close(self) -> None:
        """Close every open file (they stay on disk for the next start)."""
        with self._lock:
            collections, self._open = list(self._open.values()), {}
            self._warm.clear()
        for collection in collections:
            collection.store.close()

    def migrate_from(self, shared: RagIndex, records: Sequence[SessionRecord]) -> None:
        """Move session passages that an older version kept in the shared file
        into the sessions' own files, then delete them from the shared file.

        Re-running after a crash is safe: a moved id replaces its earlier copy.
        """
        for record in records:
            low, high = collection_range(record.cid)
            after = low - 1
            while True:
                with shared.reading() as conn:
                    rows = conn.execute(
                        "SELECT id, doc_id, title, text FROM docs WHERE id > ? AND id <= ?"
                        " ORDER BY id LIMIT ?",
                        (after, high, _MIGRATE_BATCH),
                    ).fetchall()
                if not rows:
                    break
                after = rows[-1][0]
                documents = [Document(doc_id, title, text) for _, doc_id, title, text in rows]
                self.add(record.cid, documents, [document_bytes(d) for d in documents], bound=False)
            with shared.writing() as conn:
                RagIndex.clear_collection(conn, record.cid)
        shared.frequencies.clear()

    def _load(self, cid: int) -> SessionCollection:
        store = RagIndex(
            self._path(cid),
            score_budget=self._score_budget,
            cache_kib=_SESSION_CACHE_KIB,
            frequency_limit=_SESSION_FREQUENCY_LIMIT,
        )
        try:
            with store.reading() as conn:
                totals = RagIndex.load_meta(conn, "totals") or {}
            if self._model is not None and totals.get("model") != self._model:
                # Vectors of another model (an older image) must never meet this
                # one's queries: they go, and the passages they belonged to are
                # found by BM25 alone until indexed again. (Embedding them anew
                # here would hold every session's `get` for as long.)
                with store.writing() as conn:
                    conn.execute("DELETE FROM vectors")
                    totals = {**totals, "model": self._model}
                    RagIndex.store_meta(conn, "totals", totals)
        except BaseException:
            store.close()
            raise
        return SessionCollection(
            cid, store, int(totals.get("documents", 0)), int(totals.get("bytes", 0))
        )

    def _path(self, cid: int) -> str:
        return os.path.join(self.directory, f"{cid}.sqlite3")
