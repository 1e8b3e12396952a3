"""The SQLite store behind the ``rag`` toolset: FTS5 ranked with BM25.

A `RagIndex` is one SQLite file (WAL mode). The shared file holds the
``default`` collection and the registry of sessions; each session's private
collection lives in a file of its own (`sessions.SessionCollections`), so that
BM25 statistics and the writer lock are never shared between collections::

    docs      every passage: id, cid (collection number), doc_id, title, text
    fts       FTS5 over docs.title and docs.text (external content: text is stored once)
    vectors   each passage's embedding (`vectors`), by docs.id, when a model is loaded
    sessions  (shared file) cid (from 1; 0 is ``default``), session name, worker, created_at
    meta      JSON records: ``default`` (the build), ``totals`` (a session file's size)

A passage's rowid encodes its collection: ``cid << 32`` plus a sequence number.
FTS5 takes rowid ranges as constraints, so choosing a collection costs a rowid
comparison instead of an extra phrase in every MATCH (which BM25 would have to
count through for each query).

Every thread takes a connection from a pool; reads never wait for the writer
(WAL), and the one writer at a time is serialised by a lock in this process
rather than by SQLite's busy loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .corpus import Document
from .query import SCORED_ROWS_BUDGET, TermFrequencies, plan_query
from .vectors import VectorCache, create_table, fetch_passages, store_vectors

SCHEMA_VERSION = 1
TOKENIZER = "porter unicode61 remove_diacritics 2"
# Title words say what a passage is about, so they count more than body words.
TITLE_WEIGHT = 2.0
TEXT_WEIGHT = 1.0
DEFAULT_CID = 0
_CID_SHIFT = 32
_SEQ_MAX = (1 << _CID_SHIFT) - 1
_BUSY_TIMEOUT_MS = 30_000


def collection_range(cid: int) -> tuple[int, int]:
    """The first and last rowid of collection `cid`."""
    low = cid << _CID_SHIFT
    return low, low + _SEQ_MAX


class IndexClosed(sqlite3.ProgrammingError):
    """The store was closed (its session ended) while a call wanted it."""


@dataclass(frozen=True)
class Hit:
    """One search result."""

    doc_id: str
    title: str
    text: str
    score: float
    cid: int


@dataclass(frozen=True)
class SessionRecord:
    """A session as the shared file's registry records it (files written before
    sessions had files of their own also hold an unused ``documents`` column)."""

    session: str
    cid: int
    worker: str
    created_at: float


class RagIndex:
    """The SQLite file: a connection pool, one writer at a time, and the queries.

    Args:
        path: The database file; its directory is created if missing.
        score_budget: The most rows a query's candidate words may match before
            the common ones are left out of the candidates (`plan_query`).
        cache_kib: SQLite's page cache per connection, in KiB.
        frequency_limit: The most word counts remembered (`TermFrequencies`).

    Raises:
        sqlite3.Error: The file cannot be opened or lacks FTS5.
        OSError: Its directory cannot be created.
    """

    def __init__(
        self,
        path: str,
        *,
        score_budget: int = SCORED_ROWS_BUDGET,
        cache_kib: int = 32768,
        frequency_limit: int = 100_000,
    ) -> None:
        self.path = path
        self.score_budget = score_budget
        self._cache_kib = cache_kib
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._write_lock = threading.Lock()
        self._closed = False
        self.frequencies = TermFrequencies(limit=frequency_limit)
        self.vectors = VectorCache(self.reading)
        with self.writing() as conn:
            self._create_schema(conn)

    def close(self) -> None:
        """Close the pooled connections; safe to call twice.

        A connection in use by another thread is closed when that thread gives it
        back, so a call running while its session is closed still finishes.
        """
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def release_idle(self) -> None:
        """Close the idle connections and forget the word counts, keeping the store
        usable (it reopens on demand): what a rarely used session costs goes."""
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self.frequencies.clear()
        self.vectors.clear()

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A pooled connection for reads, inside one read transaction (one snapshot)."""
        with self._connection() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """A pooled connection holding the write lock, inside one write transaction."""
        with self._write_lock, self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._pool_lock:
            if self._closed:
                raise IndexClosed("the index is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._open()
        try:
            yield conn
        finally:
            with self._pool_lock:
                keep = not self._closed
                if keep:
                    self._idle.append(conn)
            if not keep:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def _open(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (`reading`, `writing`).
        conn = sqlite3.connect(
            self.path,
            timeout=_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
        )
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        # WAL with NORMAL survives a crash of the process; only power loss can cost
        # the last transactions, which rebuild or are re-sent.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA mmap_size = 1073741824")
        conn.execute(f"PRAGMA cache_size = -{self._cache_kib}")
        return conn

    @staticmethod
    def _create_schema(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is not None and int(row[0]) != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"index schema version {row[0]} is not {SCHEMA_VERSION}: remove the file"
            )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS docs ("
            " id INTEGER PRIMARY KEY, cid INTEGER NOT NULL, doc_id TEXT NOT NULL,"
            " title TEXT NOT NULL, text TEXT NOT NULL, UNIQUE (cid, doc_id))"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS sessions ("
            " cid INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL UNIQUE,"
            " worker TEXT NOT NULL, created_at REAL NOT NULL)"
        )
        create_table(conn)
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'fts'"
        ).fetchone()
        if exists is None:
            conn.execute(
                "CREATE VIRTUAL TABLE fts USING fts5(title, text, content='docs',"
                f" content_rowid='id', tokenize='{TOKENIZER}')"
            )
        conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
        )

    # -- reads ------------------------------------------------------------------

    def search(
        self, conn: sqlite3.Connection, terms: Sequence[str], cids: Sequence[int], top_k: int
    ) -> list[Hit]:
        """The `top_k` best passages of collections `cids` for the words `terms`."""
        frequencies = [self.frequencies.get(conn, term) for term in terms]
        plan = plan_query(terms, frequencies, self.score_budget)
        hits = self._run(conn, plan.expression, cids, top_k)
        if len(hits) < top_k and plan.fallback is not None:
            # The pruned candidates were too few: rank every match after all.
            hits = self._run(conn, plan.fallback, cids, top_k)
        return hits

    def lexical_ranking(
        self, conn: sqlite3.Connection, terms: Sequence[str], cid: int, top_k: int, enough: int
    ) -> list[tuple[int, float]]:
        """(rowid, BM25) of collection `cid`'s best `top_k` for `terms`, without
        reading their texts; every match is ranked when fewer than `enough` of the
        pruned candidates match (as in `search`)."""
        frequencies = [self.frequencies.get(conn, term) for term in terms]
        plan = plan_query(terms, frequencies, self.score_budget)
        low, high = collection_range(cid)
        rows = conn.execute(_RANK_ONE, (plan.expression, low, high, top_k)).fetchall()
        if len(rows) < enough and plan.fallback is not None:
            rows = conn.execute(_RANK_ONE, (plan.fallback, low, high, top_k)).fetchall()
        return [(rowid, -rank) for rowid, rank in rows]

    def dense_ranking(self, query: Any, cid: int, top_k: int) -> list[tuple[int, float]]:
        """(rowid, cosine) of the `top_k` passages of collection `cid` whose vectors
        are closest to `query` (a unit vector)."""
        low, high = collection_range(cid)
        return self.vectors.search(low, high, query, top_k)

    def dense_search(self, conn: sqlite3.Connection, query: Any, cid: int, top_k: int) -> list[Hit]:
        """The `top_k` passages of collection `cid` whose vectors are closest to
        `query` (a unit vector); each scored by its cosine."""
        return self.passages(conn, self.dense_ranking(query, cid, top_k))

    @staticmethod
    def passages(conn: sqlite3.Connection, ranked: Sequence[tuple[int, float]]) -> list[Hit]:
        """The passages of `ranked` (rowid, score) pairs, in their order, with those scores."""
        return [
            Hit(doc_id, title, text, score, rowid >> _CID_SHIFT)
            for rowid, doc_id, title, text, score in fetch_passages(conn, ranked)
        ]

    @staticmethod
    def _run(
        conn: sqlite3.Connection, expression: str, cids: Sequence[int], top_k: int
    ) -> list[Hit]:
        if len(cids) == 1:
            low, high = collection_range(cids[0])
            rows = conn.execute(_SEARCH_ONE, (expression, low, high, top_k)).fetchall()
        else:
            (low1, high1), (low2, high2) = (collection_range(c) for c in cids)
            rows = conn.execute(
                _SEARCH_TWO, (expression, low1, high1, low2, high2, top_k)
            ).fetchall()
        return [
            Hit(doc_id, title, text, -rank, rowid >> _CID_SHIFT)
            for doc_id, title, text, rank, rowid in rows
        ]

    @staticmethod
    def session(conn: sqlite3.Connection, session: str) -> SessionRecord | None:
        """The record of `session`, or None when it is not open."""
        row = conn.execute(
            "SELECT session, cid, worker, created_at FROM sessions WHERE session = ?",
            (session,),
        ).fetchone()
        return None if row is None else SessionRecord(*row)

    @staticmethod
    def sessions(conn: sqlite3.Connection) -> list[SessionRecord]:
        """Every open session, oldest first."""
        rows = conn.execute(
            "SELECT session, cid, worker, created_at FROM sessions ORDER BY cid"
        ).fetchall()
        return [SessionRecord(*row) for row in rows]

    @staticmethod
    def load_meta(conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
        """The JSON object stored under `key`, or None."""
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        value = json.loads(row[0])
        return value if isinstance(value, dict) else None

    @staticmethod
    def collection_holds_any(conn: sqlite3.Connection, cid: int) -> bool:
        """Whether collection `cid` holds at least one passage."""
        low, high = collection_range(cid)
        row = conn.execute("SELECT 1 FROM docs WHERE id BETWEEN ? AND ? LIMIT 1", (low, high))
        return row.fetchone() is not None

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file and empty the log."""
        with self._write_lock, self._connection() as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def size_bytes(self) -> int:
        """The database's size on disk, its write-ahead log included."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(self.path + suffix)
        return total

    # -- writes (call inside `writing`) -------------------------------------------

    @staticmethod
    def store_meta(conn: sqlite3.Connection, key: str, value: dict[str, Any]) -> None:
        """Store `value` as JSON under `key`."""
        conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value))
        )

    @staticmethod
    def open_session(conn: sqlite3.Connection, session: str, worker: str) -> SessionRecord:
        """Record `session` unless it is recorded already; its record either way."""
        conn.execute(
            "INSERT OR IGNORE INTO sessions(session, worker, created_at) VALUES (?, ?, ?)",
            (session, worker, time.time()),
        )
        record = RagIndex.session(conn, session)
        assert record is not None
        return record

    @staticmethod
    def close_session(conn: sqlite3.Connection, record: SessionRecord) -> int:
        """Delete `record`'s passages and the record; how many passages went."""
        removed = RagIndex.clear_collection(conn, record.cid)
        conn.execute("DELETE FROM sessions WHERE cid = ?", (record.cid,))
        return removed

    @staticmethod
    def clear_collection(conn: sqlite3.Connection, cid: int) -> int:
        """Delete every passage of collection `cid`; how many there were."""
        low, high = collection_range(cid)
        # External content: FTS5 is told the old values of what it forgets.
        conn.execute(
            "INSERT INTO fts(fts, rowid, title, text)"
            " SELECT 'delete', id, title, text FROM docs WHERE id BETWEEN ? AND ?",
            (low, high),
        )
        conn.execute("DELETE FROM vectors WHERE id BETWEEN ? AND ?", (low, high))
        return conn.execute("DELETE FROM docs WHERE id BETWEEN ? AND ?", (low, high)).rowcount

    @staticmethod
    def clear_default_fast(conn: sqlite3.Connection) -> None:
        """Delete the default collection by re-indexing what remains (the sessions).

        Cheaper than `clear_collection` when the sessions hold fewer passages
        than the default collection: FTS5 then re-reads the small part, not the big.
        """
        low, high = collection_range(DEFAULT_CID)
        conn.execute("DELETE FROM docs WHERE id BETWEEN ? AND ?", (low, high))
        conn.execute("DELETE FROM vectors WHERE id BETWEEN ? AND ?", (low, high))
        conn.execute("INSERT INTO fts(fts) VALUES ('rebuild')")

    @staticmethod
    def add_documents(
        conn: sqlite3.Connection,
        cid: int,
        documents: Sequence[Document],
        *,
        replace: bool,
        vectors: Any | None = None,
    ) -> int:
        """Index `documents` into collection `cid`; the change in its passage count.

        With `replace`, passages of the same ids are replaced; without, the caller
        guarantees the ids are new. Ids must be unique within `documents`.
        `vectors`, when given, holds one row per document, stored with it (the
        caller then invalidates the store's `VectorCache` after the commit).
        """
        removed = 0
        if replace:
            keys = [(cid, document.doc_id) for document in documents]
            conn.executemany(
                "DELETE FROM vectors WHERE id IN"
                " (SELECT id FROM docs WHERE cid = ? AND doc_id = ?)",
                keys,
            )
            conn.executemany(
                "INSERT INTO fts(fts, rowid, title, text)"
                " SELECT 'delete', id, title, text FROM docs WHERE cid = ? AND doc_id = ?",
                keys,
            )
            removed = conn.executemany(
                "DELETE FROM docs WHERE cid = ? AND doc_id = ?", keys
            ).rowcount
        low, high = collection_range(cid)
        last = conn.execute(
            "SELECT coalesce(max(id), ?) FROM docs WHERE id BETWEEN ? AND ?", (low, low, high)
        ).fetchone()[0]
        if last + len(documents) > high:
            raise sqlite3.IntegrityError("the collection has used up its passage numbers")
        conn.executemany(
            "INSERT INTO docs(id, cid, doc_id, title, text) VALUES (?, ?, ?, ?, ?)",
            [
                (last + 1 + n, cid, document.doc_id, document.title, document.text)
                for n, document in enumerate(documents)
            ],
        )
        conn.execute(
            "INSERT INTO fts(rowid, title, text)"
            " SELECT id, title, text FROM docs WHERE id BETWEEN ? AND ?",
            (last + 1, last + len(documents)),
        )
        if vectors is not None:
            store_vectors(conn, last + 1, vectors)
        return len(documents) - removed

    @staticmethod
    def measure(conn: sqlite3.Connection, cid: int, doc_ids: Sequence[str]) -> tuple[int, int]:
        """How many of `doc_ids` collection `cid` holds, and their title and text bytes."""
        row = conn.execute(
            "SELECT count(*), coalesce(sum(length(CAST(title AS BLOB))"
            " + length(CAST(text AS BLOB))), 0) FROM docs"
            " WHERE cid = ? AND doc_id IN (SELECT value FROM json_each(?))",
            (cid, json.dumps(list(doc_ids))),
        ).fetchone()
        return int(row[0]), int(row[1])

    @staticmethod
    def optimize(conn: sqlite3.Connection) -> None:
        """Merge the index's segments into one: fewer b-trees for every query to read."""
        conn.execute("INSERT INTO fts(fts) VALUES ('optimize')")


_BM25 = f"bm25(fts, {TITLE_WEIGHT}, {TEXT_WEIGHT})"
_SEARCH_COLUMNS = "SELECT d.doc_id, d.title, d.text, r.rank, r.id FROM"
# FTS5 scores every match, SQLite keeps the best `top_k`, and only those are
# joined to their text. (An explicit bm25() sorts faster than FTS5's `rank`.)
_RANK_ONE = f"""SELECT rowid, {_BM25} AS rank FROM fts
    WHERE fts MATCH ?1 AND rowid BETWEEN ?2 AND ?3 ORDER BY rank LIMIT ?4"""
_SEARCH_ONE = f"""{_SEARCH_COLUMNS} (
    SELECT rowid AS id, {_BM25} AS rank FROM fts
    WHERE fts MATCH ?1 AND rowid BETWEEN ?2 AND ?3 ORDER BY rank LIMIT ?4
) AS r JOIN docs AS d ON d.id = r.id ORDER BY r.rank"""
_SEARCH_TWO = f"""{_SEARCH_COLUMNS} (
    SELECT rowid AS id, {_BM25} AS rank FROM fts
    WHERE fts MATCH ?1 AND (rowid BETWEEN ?2 AND ?3 OR rowid BETWEEN ?4 AND ?5)
    ORDER BY rank LIMIT ?6
) AS r JOIN docs AS d ON d.id = r.id ORDER BY r.rank"""
