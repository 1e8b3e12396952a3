"""The retrieval index behind the ``rag`` toolset: SQLite FTS5 ranked with BM25.

One SQLite file (WAL mode) holds every collection, so BM25 scores of the shared
``default`` collection and of a session's private one come from the same
statistics and rank together in one list::

    docs      every passage: id, cid (collection number), doc_id, title, text
    fts       FTS5 over docs.title and docs.text (external content: text is stored once)
    sessions  cid (from 1; 0 is ``default``), session name, worker, created_at, documents
    meta      the default collection's build record, as JSON under key ``default``

A passage's rowid encodes its collection: ``cid << 32`` plus a sequence number.
FTS5 takes rowid ranges as constraints, so choosing a collection costs a rowid
comparison instead of an extra phrase in every MATCH (which BM25 would have to
count through for each query).

Users write natural language, never FTS5 syntax: `match_expression` keeps only
words (unicode61 rules), drops common English stopwords, quotes each word and
ORs them, so no input can be an FTS5 syntax error. The porter stemmer makes
"indexes", "indexing" and "indexed" meet.

Every thread takes a connection from a pool; reads never wait for the writer
(WAL), and the one writer at a time is serialised by a lock in this process
rather than by SQLite's busy loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
TOKENIZER = "porter unicode61 remove_diacritics 2"
# Title words say what a passage is about, so they count more than body words.
TITLE_WEIGHT = 2.0
TEXT_WEIGHT = 1.0
DEFAULT_CID = 0
_CID_SHIFT = 32
_SEQ_MAX = (1 << _CID_SHIFT) - 1
MAX_ID_CHARS = 256
MAX_TEXT_CHARS = 1_000_000
MAX_QUERY_TERMS = 64
# The most rows a query's candidate words may match (see `plan_query`): scoring
# costs about 0.8 µs a row. Measured over 100,000 man-page passages with 3 to 7
# word queries: 3,000 keeps a search near 3 ms instead of 13 ms for ranking
# every match, and puts the right passage first about 7% less often.
SCORED_ROWS_BUDGET = 3000
BUILD_BATCH = 2000
_BUSY_TIMEOUT_MS = 30_000
_HASH_CHUNK = 1 << 20

# Words so common that they only add noise (and work) to a BM25 OR query.
_STOPWORD_TEXT = """
    a about above after again against all am an and any are as at be because been
    before being below between both but by can could did do does doing down during
    each few for from further had has have having he her here hers herself him
    himself his how i if in into is it its itself just me more most my myself no nor
    not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# unicode61 token characters are letters, digits and private-use characters;
# combining marks stay with the word they decorate.
_WORD = re.compile(r"[^\W_](?:[^\W_]|[\u0300-\u036f])*")


def query_terms(query: str) -> list[str]:
    """The distinct words of `query` worth searching for, in order of appearance.

    Stopwords and one-letter words are dropped unless nothing else is left, so a
    query such as "The Who" still finds something.
    """
    words: list[str] = []
    seen: set[str] = set()
    for match in _WORD.finditer(query):
        word = match.group().lower()
        if word not in seen:
            seen.add(word)
            words.append(word)
    useful = [w for w in words if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]
    return (useful or words)[:MAX_QUERY_TERMS]


def match_expression(terms: Sequence[str]) -> str:
    """An FTS5 MATCH string ORing the quoted `terms` (each free of double quotes)."""
    return " OR ".join(f'"{term}"' for term in terms)


@dataclass(frozen=True)
class QueryPlan:
    """The MATCH expression to rank, and the exact one to fall back on."""

    expression: str
    fallback: str | None = None


def plan_query(
    terms: Sequence[str], frequencies: Sequence[int], budget: int = SCORED_ROWS_BUDGET
) -> QueryPlan:
    """Bound the rows BM25 must score, keeping every word in the score.

    FTS5 scores every row an OR query matches (about 1 µs each), so a query with
    a common word ("file", "use") over 100,000 passages would score most of
    them. The candidates are therefore the rows holding one of the rarest words,
    as many as fit in `budget` rows together, while every word still counts in
    their score: ``(rare) AND (all words)``. The rare words then appear twice in
    the expression and so weigh double, which only strengthens what BM25's IDF
    already says. When even the rarest word is over the budget, the candidates
    are the rows holding both of the two rarest words.

    Args:
        terms: The query's words.
        frequencies: How many rows hold each word (may be stale).
        budget: The most rows the candidate words may match together.
    """
    everything = match_expression(terms)
    order = sorted(range(len(terms)), key=lambda n: frequencies[n])
    rare: list[str] = []
    rows = 0
    for n in order:
        if rows + frequencies[n] > budget:
            break
        rare.append(terms[n])
        rows += frequencies[n]
    if len(rare) == len(terms):
        return QueryPlan(everything)
    if rare:
        candidates = match_expression(rare)
    elif len(terms) >= 2:
        candidates = f'"{terms[order[0]]}" AND "{terms[order[1]]}"'
    else:
        return QueryPlan(everything)
    return QueryPlan(f"({candidates}) AND ({everything})", everything)


class TermFrequencies:
    """How many rows hold each query word, remembered for a while.

    Counting a word's rows reads its whole posting list, as long as scoring
    them would; remembered, it is free. The counts only steer `plan_query`: a
    count too low makes a query slower, never wrong, and one too high (after
    passages were deleted, when `clear` is called) could drop candidates, so
    counts also expire after `ttl_s`.
    """

    def __init__(self, ttl_s: float = 60.0, limit: int = 100_000) -> None:
        self._ttl_s = ttl_s
        self._limit = limit
        self._counts: dict[str, tuple[int, float]] = {}

    def get(self, conn: sqlite3.Connection, term: str) -> int:
        """The number of rows holding `term` (a word without double quotes)."""
        now = time.monotonic()
        cached = self._counts.get(term)
        if cached is not None and now - cached[1] < self._ttl_s:
            return cached[0]
        count = int(
            conn.execute("SELECT count(*) FROM fts WHERE fts MATCH ?", (f'"{term}"',)).fetchone()[0]
        )
        if len(self._counts) >= self._limit:
            self._counts.clear()
        self._counts[term] = (count, now)
        return count

    def clear(self) -> None:
        """Forget every count (after deletions)."""
        self._counts.clear()


def collection_range(cid: int) -> tuple[int, int]:
    """The first and last rowid of collection `cid`."""
    low = cid << _CID_SHIFT
    return low, low + _SEQ_MAX


@dataclass(frozen=True)
class Document:
    """One passage to index."""

    doc_id: str
    title: str
    text: str


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
    """A session's private collection."""

    session: str
    cid: int
    worker: str
    created_at: float
    documents: int


class RagIndex:
    """The SQLite file: a connection pool, one writer at a time, and the queries.

    Args:
        path: The database file; its directory is created if missing.
        score_budget: The most rows a query's candidate words may match before
            the common ones are left out of the candidates (`plan_query`).

    Raises:
        sqlite3.Error: The file cannot be opened or lacks FTS5.
        OSError: Its directory cannot be created.
    """

    def __init__(self, path: str, *, score_budget: int = SCORED_ROWS_BUDGET) -> None:
        self.path = path
        self.score_budget = score_budget
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._every: list[sqlite3.Connection] = []
        self._write_lock = threading.Lock()
        self._closed = False
        self.frequencies = TermFrequencies()
        with self.writing() as conn:
            self._create_schema(conn)

    def close(self) -> None:
        """Close every pooled connection; safe to call twice."""
        with self._pool_lock:
            self._closed = True
            connections, self._every, self._idle = self._every, [], []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

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
                raise sqlite3.ProgrammingError("the index is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._open()
            with self._pool_lock:
                self._every.append(conn)
        try:
            yield conn
        finally:
            with self._pool_lock:
                if not self._closed:
                    self._idle.append(conn)

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
        conn.execute("PRAGMA cache_size = -32768")
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
            " worker TEXT NOT NULL, created_at REAL NOT NULL,"
            " documents INTEGER NOT NULL DEFAULT 0)"
        )
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
            "SELECT session, cid, worker, created_at, documents FROM sessions WHERE session = ?",
            (session,),
        ).fetchone()
        return None if row is None else SessionRecord(*row)

    @staticmethod
    def sessions(conn: sqlite3.Connection) -> list[SessionRecord]:
        """Every open session, oldest first."""
        rows = conn.execute(
            "SELECT session, cid, worker, created_at, documents FROM sessions ORDER BY cid"
        ).fetchall()
        return [SessionRecord(*row) for row in rows]

    @staticmethod
    def session_documents(conn: sqlite3.Connection) -> int:
        """How many passages all session collections hold together."""
        row = conn.execute("SELECT coalesce(sum(documents), 0) FROM sessions").fetchone()
        return int(row[0])

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
        return conn.execute("DELETE FROM docs WHERE id BETWEEN ? AND ?", (low, high)).rowcount

    @staticmethod
    def clear_default_fast(conn: sqlite3.Connection) -> None:
        """Delete the default collection by re-indexing what remains (the sessions).

        Cheaper than `clear_collection` when the sessions hold fewer passages
        than the default collection: FTS5 then re-reads the small part, not the big.
        """
        low, high = collection_range(DEFAULT_CID)
        conn.execute("DELETE FROM docs WHERE id BETWEEN ? AND ?", (low, high))
        conn.execute("INSERT INTO fts(fts) VALUES ('rebuild')")

    @staticmethod
    def add_documents(
        conn: sqlite3.Connection, cid: int, documents: Sequence[Document], *, replace: bool
    ) -> int:
        """Index `documents` into collection `cid`; the change in its passage count.

        With `replace`, passages of the same ids are replaced; without, the caller
        guarantees the ids are new. Ids must be unique within `documents`.
        """
        removed = 0
        if replace:
            keys = [(cid, document.doc_id) for document in documents]
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
        if cid != DEFAULT_CID:
            conn.execute(
                "UPDATE sessions SET documents = documents + ? WHERE cid = ?",
                (len(documents) - removed, cid),
            )
        return len(documents) - removed

    @staticmethod
    def optimize(conn: sqlite3.Connection) -> None:
        """Merge the index's segments into one: fewer b-trees for every query to read."""
        conn.execute("INSERT INTO fts(fts) VALUES ('optimize')")


_BM25 = f"bm25(fts, {TITLE_WEIGHT}, {TEXT_WEIGHT})"
_SEARCH_COLUMNS = "SELECT d.doc_id, d.title, d.text, r.rank, r.id FROM"
# FTS5 scores every match, SQLite keeps the best `top_k`, and only those are
# joined to their text. (An explicit bm25() sorts faster than FTS5's `rank`.)
_SEARCH_ONE = f"""{_SEARCH_COLUMNS} (
    SELECT rowid AS id, {_BM25} AS rank FROM fts
    WHERE fts MATCH ?1 AND rowid BETWEEN ?2 AND ?3 ORDER BY rank LIMIT ?4
) AS r JOIN docs AS d ON d.id = r.id ORDER BY r.rank"""
_SEARCH_TWO = f"""{_SEARCH_COLUMNS} (
    SELECT rowid AS id, {_BM25} AS rank FROM fts
    WHERE fts MATCH ?1 AND (rowid BETWEEN ?2 AND ?3 OR rowid BETWEEN ?4 AND ?5)
    ORDER BY rank LIMIT ?6
) AS r JOIN docs AS d ON d.id = r.id ORDER BY r.rank"""


# -- the corpus -------------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    """What identifies a corpus file's content, as far as rebuilding goes."""

    path: str
    size: int
    mtime_ns: int
    sha256: str = ""

    def same_file(self, other: Fingerprint) -> bool:
        """Same path, size and modification time: taken as unchanged without hashing."""
        return (self.path, self.size, self.mtime_ns) == (other.path, other.size, other.mtime_ns)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "path": self.path,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, value: Any) -> Fingerprint | None:
        """The fingerprint stored as `value`, or None if it is not one."""
        try:
            return cls(
                str(value["path"]), int(value["size"]), int(value["mtime_ns"]), str(value["sha256"])
            )
        except (KeyError, TypeError, ValueError):
            return None


def stat_fingerprint(path: str) -> Fingerprint:
    """Path, size and modification time of `path` (no hash yet).

    Raises:
        OSError: It cannot be stat'ed.
    """
    info = os.stat(path)
    return Fingerprint(os.path.abspath(path), info.st_size, info.st_mtime_ns)


def hash_and_count_lines(path: str, stop: threading.Event | None = None) -> tuple[str, int] | None:
    """The SHA-256 of `path` and its number of lines, or None if `stop` was set.

    One read serves both: the hash says whether a rebuild is needed, the count is
    the total the rebuild's progress (in lines) is measured against.

    Raises:
        OSError: It cannot be read.
    """
    digest = hashlib.sha256()
    lines = 0
    last = b"\n"
    with open(path, "rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            if stop is not None and stop.is_set():
                return None
            digest.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1  # a last line without its newline
    return digest.hexdigest(), lines


@dataclass
class SkippedLines:
    """Corpus lines that are not usable passages."""

    count: int = 0
    first_line: int | None = None
    first_reason: str | None = None

    def add(self, line: int, reason: str) -> None:
        """Count line `line` as skipped, remembering the first one's reason."""
        self.count += 1
        if self.first_line is None:
            self.first_line = line
            self.first_reason = reason

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"count": self.count, "first_line": self.first_line, "reason": self.first_reason}

    @classmethod
    def from_dict(cls, value: Any) -> SkippedLines:
        """The record `as_dict` made (empty if `value` is not one)."""
        if not isinstance(value, dict):
            return cls()
        return cls(int(value.get("count", 0)), value.get("first_line"), value.get("reason"))


def read_corpus(path: str, skipped: SkippedLines) -> Iterator[tuple[int, Document | None]]:
    """Each non-empty line of JSONL file `path` as (line number, passage or None if bad).

    A line must be a JSON object with a non-empty string ``text``, an ``id``
    (string, or integer taken as its decimal string) and optionally a string
    ``title``; bad lines and repeated ids are counted in `skipped`.
    """
    seen: set[str] = set()
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            if not raw.strip():
                continue
            document, reason = _parse_line(raw)
            if document is not None and document.doc_id in seen:
                reason = f"id {document.doc_id!r} repeats an earlier line"
                document = None
            if document is None:
                skipped.add(number, reason)
            else:
                seen.add(document.doc_id)
            yield number, document


def _parse_line(raw: bytes) -> tuple[Document | None, str]:
    try:
        value = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        return None, f"not JSON: {exc}"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    doc_id = value.get("id")
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id or len(doc_id) > MAX_ID_CHARS:
        return None, f"id must be a string of 1 to {MAX_ID_CHARS} characters"
    text = value.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT_CHARS:
        return None, f"text must be a non-empty string of at most {MAX_TEXT_CHARS} characters"
    title = value.get("title")
    if title is None:
        title = ""
    elif not isinstance(title, str) or len(title) > MAX_TEXT_CHARS:
        return None, "title must be a string"
    try:
        # SQLite takes UTF-8 only; JSON can smuggle in lone surrogates.
        (doc_id + title + text).encode("utf-8")
    except UnicodeEncodeError:
        return None, "contains an unpaired surrogate"
    return Document(doc_id, title, text), ""


# -- the default collection ---------------------------------------------------------

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
    thread while the agent already answers.

    Args:
        index: The index to build into.
        corpus: The JSONL file, or None when there is none.
        hook: Called before each batch of a build, for tests.
    """

    def __init__(self, index: RagIndex, corpus: str | None, hook: BuildHook | None = None) -> None:
        self._index = index
        self._corpus = corpus
        self._hook = hook
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
        if complete and stored is not None and stored.same_file(current):
            self._ready_from(record)
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
                },
            )
        self._index.frequencies.clear()
        # A build leaves a log as large as the index; fold it in while nobody waits.
        self._index.checkpoint()
        self._set(state="ready", documents=documents, done=done, total=done, elapsed_s=elapsed)

    def _write_batch(self, batch: list[Document], total: int) -> bool:
        if self._hook is not None:
            self._hook(self._status.done, total)
        if self._stop.is_set():
            return False
        with self._index.writing() as conn:
            RagIndex.add_documents(conn, DEFAULT_CID, batch, replace=False)
        return True

    def _drop_default(self, conn: sqlite3.Connection) -> None:
        low, high = collection_range(DEFAULT_CID)
        in_default = conn.execute(
            "SELECT count(*) FROM docs WHERE id BETWEEN ? AND ?", (low, high)
        ).fetchone()[0]
        if in_default == 0:
            return
        if RagIndex.session_documents(conn) < in_default:
            RagIndex.clear_default_fast(conn)
        else:
            RagIndex.clear_collection(conn, DEFAULT_CID)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
