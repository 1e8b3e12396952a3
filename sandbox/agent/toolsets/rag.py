"""The ``rag`` toolset: BM25 retrieval over a shared corpus and per-session collections.

One rag container serves every worker of a server. The server opens a session
per worker (``rag.open_session``) and passes its name as parameter ``session`` to
every call; a session's private collection is what ``rag.index`` fills and
``rag.close_session`` empties. The shared ``default`` collection is built from a
JSONL corpus in the background at start, when the index does not hold it yet.

Tools:
    rag.status: Where the default collection's build stands.
    rag.search: The best passages for one query.
    rag.batch_search: The best passages for each of many queries.
    rag.index: Add passages to a session's collection (replacing same ids).
    rag.stats: Sizes, query count and search latency.
    rag.open_session: Record a session (idempotent).
    rag.close_session: Delete a session's passages and record.
    rag.sessions: Every recorded session, so a restarted server can adopt them.

Settings (environment):
    SANDBOX_RAG_DB: The SQLite file (default ``/data/index.sqlite3``).
    SANDBOX_RAG_CORPUS: The JSONL corpus; the image's demo corpus when unset.
    SANDBOX_RAG_SCORE_BUDGET: Rows a query may score before its commonest words
        stop choosing candidates (default 3000; higher ranks better, slower).
"""

from __future__ import annotations

import collections
import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, InvalidParams, Unavailable
from ..params import Params
from ..rag.builder import BuildHook, DefaultCollection
from ..rag.corpus import MAX_ID_CHARS, MAX_TEXT_CHARS, Document
from ..rag.query import SCORED_ROWS_BUDGET, query_terms
from ..rag.store import DEFAULT_CID, Hit, RagIndex, SessionRecord
from ..registry import AgentContext, Tool, Toolset

DEFAULT_DB = "/data/index.sqlite3"
DEMO_CORPUS = "/opt/rag/demo-corpus.jsonl"
COLLECTIONS = ("all", "default", "session")
DEFAULT_TOP_K = 5
MAX_TOP_K = 100
MAX_QUERY_CHARS = 2000
MAX_BATCH_QUERIES = 256
MAX_DOCUMENTS_PER_CALL = 100_000
MAX_SESSION_CHARS = 256
_LATENCY_WINDOW = 10_000
_BATCH_THREADS = 4

BUILD_HOOK: BuildHook | None = None
"""Called before each batch of the default build with (done, total); for tests."""


@dataclass(frozen=True)
class RagSettings:
    """Where the index lives and what the default collection is built from.

    Attributes:
        db: The SQLite file (``SANDBOX_RAG_DB``).
        corpus: The JSONL corpus (``SANDBOX_RAG_CORPUS``; else the image's demo
            corpus if present; else None: the default collection stays empty).
        score_budget: Rows a query may score before its commonest words stop
            choosing candidates (``SANDBOX_RAG_SCORE_BUDGET``).
    """

    db: str
    corpus: str | None
    score_budget: int = SCORED_ROWS_BUDGET

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> RagSettings:
        """Read the settings from `environ`.

        Raises:
            ConfigError: ``SANDBOX_RAG_SCORE_BUDGET`` is not a positive integer.
        """
        corpus = environ.get("SANDBOX_RAG_CORPUS") or None
        if corpus is None and os.path.isfile(DEMO_CORPUS):
            corpus = DEMO_CORPUS
        raw_budget = environ.get("SANDBOX_RAG_SCORE_BUDGET", "").strip()
        try:
            budget = int(raw_budget) if raw_budget else SCORED_ROWS_BUDGET
        except ValueError:
            budget = 0
        if budget < 1:
            raise ConfigError(
                f"SANDBOX_RAG_SCORE_BUDGET must be a positive integer, not {raw_budget!r}"
            )
        return cls(
            db=environ.get("SANDBOX_RAG_DB") or DEFAULT_DB, corpus=corpus, score_budget=budget
        )


class _Latencies:
    """Query count and recent per-query latencies, shared by the serving threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: collections.deque[float] = collections.deque(maxlen=_LATENCY_WINDOW)
        self.count = 0

    def add(self, seconds: float, queries: int = 1) -> None:
        with self._lock:
            self.count += queries
            self._recent.extend([seconds * 1000 / queries] * queries)

    def percentiles(self) -> dict[str, float | None]:
        with self._lock:
            ordered = sorted(self._recent)
        if not ordered:
            return {"p50": None, "p95": None}
        return {
            "p50": round(ordered[(len(ordered) - 1) // 2], 3),
            "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 3),
        }


class RagToolset(Toolset):
    """The index, its default collection's builder, and the tools over them.

    Args:
        settings: Where the index is and what the default collection holds.
        build_hook: Called before each batch of a default build (tests pause here).

    Raises:
        ConfigError: The index file cannot be opened.
    """

    name = "rag"

    def __init__(self, settings: RagSettings, build_hook: BuildHook | None = None) -> None:
        try:
            self._index = RagIndex(settings.db, score_budget=settings.score_budget)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"cannot open the rag index {settings.db}: {exc}") from None
        self._default = DefaultCollection(self._index, settings.corpus, build_hook)
        self._latencies = _Latencies()
        self._batch_threads = max(1, min(_BATCH_THREADS, os.cpu_count() or 1))
        self._batch_pool = ThreadPoolExecutor(
            max_workers=self._batch_threads, thread_name_prefix="rag-batch"
        )
        try:
            self._default.start()
        except BaseException:
            self.close()
            raise

    def tools(self) -> Sequence[Tool]:
        """The ``rag.*`` tools."""
        return (
            Tool("rag.status", self.status, "State and progress of the shared default corpus."),
            Tool("rag.search", self.search, "The best passages for a natural-language query."),
            Tool("rag.batch_search", self.batch_search, "rag.search for many queries at once."),
            Tool("rag.index", self.index, "Add passages to the session's private collection."),
            Tool("rag.stats", self.stats, "Collection sizes, query count and search latency."),
            Tool("rag.open_session", self.open_session, "Record a session (idempotent)."),
            Tool("rag.close_session", self.close_session, "Delete a session and its passages."),
            Tool("rag.sessions", self.sessions, "Every recorded session."),
        )

    def close(self) -> None:
        """Stop a running build and close the index."""
        self._default.close()
        self._batch_pool.shutdown(wait=True)
        self._index.close()

    # -- tools ----------------------------------------------------------------------

    def status(self, params: Params) -> dict[str, Any]:
        """``rag.status``: the default collection's state, size and build progress."""
        return self._default.status().as_dict()

    def search(self, params: Params) -> dict[str, Any]:
        """``rag.search``: `query` (`top_k`, `collection`, `session` optional)."""
        started = time.perf_counter()
        terms = _terms(params.raw().get("query"), "query")
        top_k = _top_k(params)
        collection = params.choice("collection", COLLECTIONS, default="all")
        session = _optional_session(params)
        with self._index.reading() as conn:
            cids = self._collections(conn, collection, session)
            hits = self._index.search(conn, terms, cids, top_k) if cids else []
        results = [_result(hit) for hit in hits]
        self._latencies.add(time.perf_counter() - started)
        return {"results": results, "context": _context(results)}

    def batch_search(self, params: Params) -> dict[str, Any]:
        """``rag.batch_search``: `queries` (`top_k`, `collection`, `session` optional).

        A query that cannot be searched (no words, too long, not a string) gets an
        empty result list and an error naming it (``queries.N``); the rest run.
        """
        started = time.perf_counter()
        queries = params.raw().get("queries")
        if not isinstance(queries, list) or not queries:
            raise InvalidParams("queries must be a non-empty list of strings", field="queries")
        if len(queries) > MAX_BATCH_QUERIES:
            raise InvalidParams(
                f"queries holds {len(queries)} queries; at most {MAX_BATCH_QUERIES} are allowed",
                field="queries",
            )
        top_k = _top_k(params)
        collection = params.choice("collection", COLLECTIONS, default="all")
        session = _optional_session(params)
        results: list[list[dict[str, Any]]] = [[] for _ in queries]
        errors: list[str | None] = [None] * len(queries)
        searches: list[tuple[int, list[str]]] = []
        for number, query in enumerate(queries):
            try:
                searches.append((number, _terms(query, f"queries.{number}")))
            except InvalidParams as exc:
                errors[number] = exc.message
        with self._index.reading() as conn:
            cids = self._collections(conn, collection, session)
        if cids and searches:
            # SQLite lets go of the GIL while it ranks, so a batch spreads over the CPUs.
            parts = [searches[n :: self._batch_threads] for n in range(self._batch_threads)]
            parts = [part for part in parts if part]
            futures = [
                self._batch_pool.submit(self._search_many, part, cids, top_k) for part in parts[1:]
            ]
            found = self._search_many(parts[0], cids, top_k)
            for future in futures:
                found.extend(future.result())
            for number, hits in found:
                results[number] = [_result(hit) for hit in hits]
        self._latencies.add(time.perf_counter() - started, len(queries))
        return {"results": results, "errors": errors}

    def _search_many(
        self, searches: Sequence[tuple[int, list[str]]], cids: Sequence[int], top_k: int
    ) -> list[tuple[int, list[Hit]]]:
        with self._index.reading() as conn:
            return [
                (number, self._index.search(conn, terms, cids, top_k)) for number, terms in searches
            ]

    def index(self, params: Params) -> dict[str, Any]:
        """``rag.index``: `documents` into the collection of `session`.

        Every document is checked before any is written: one bad document
        (named like ``documents.12.text``) and nothing is indexed.
        """
        session = _session(params)
        documents = _documents(params.raw().get("documents"))
        with self._index.writing() as conn:
            record = _require_session(RagIndex.session(conn, session), session)
            RagIndex.add_documents(conn, record.cid, documents, replace=record.documents > 0)
            total = _require_session(RagIndex.session(conn, session), session).documents
        return {"indexed": len(documents), "documents": total}

    def stats(self, params: Params) -> dict[str, Any]:
        """``rag.stats``: sizes, index bytes, query count and latency (`session` optional)."""
        session = _optional_session(params)
        status = self._default.status()
        session_stats: dict[str, Any] | None = None
        if session is not None:
            with self._index.reading() as conn:
                record = _require_session(RagIndex.session(conn, session), session)
            session_stats = {"documents": record.documents}
        return {
            "default": {"documents": status.documents, "state": status.state},
            "session": session_stats,
            "index_bytes": self._index.size_bytes(),
            "queries": self._latencies.count,
            "latency_ms": self._latencies.percentiles(),
        }

    def open_session(self, params: Params) -> dict[str, Any]:
        """``rag.open_session``: record `session` for `worker` (idempotent)."""
        session = _session(params)
        worker = params.optional_string("worker") or ""
        _check_text(worker, "worker", MAX_SESSION_CHARS)
        with self._index.writing() as conn:
            record = RagIndex.open_session(conn, session, worker)
        return _session_data(record)

    def close_session(self, params: Params) -> dict[str, Any]:
        """``rag.close_session``: delete `session`'s passages and record (idempotent)."""
        session = _session(params)
        with self._index.writing() as conn:
            record = RagIndex.session(conn, session)
            removed = 0 if record is None else RagIndex.close_session(conn, record)
        if removed:
            self._index.frequencies.clear()
        return {"removed": removed}

    def sessions(self, params: Params) -> dict[str, Any]:
        """``rag.sessions``: every recorded session, oldest first."""
        with self._index.reading() as conn:
            records = RagIndex.sessions(conn)
        return {"sessions": [_session_data(record) for record in records]}

    # -- helpers ------------------------------------------------------------------------

    def _collections(
        self, conn: sqlite3.Connection, collection: str, session: str | None
    ) -> list[int]:
        """The collection numbers a search covers; refuses an unready default."""
        cids: list[int] = []
        if collection in ("all", "default"):
            status = self._default.status()
            if status.state in ("indexing", "failed"):
                detail = status.as_dict()
                if status.state == "failed":
                    message = f"the default collection failed to build: {status.error}"
                else:
                    message = (
                        f"the default collection is still indexing ({status.done} of "
                        f"{status.total} documents done); try again later or search "
                        "collection 'session'"
                    )
                raise Unavailable(message, data=detail)
            if status.state == "ready":
                cids.append(DEFAULT_CID)
        if collection == "session" and session is None:
            raise InvalidParams(
                "session is required to search collection 'session'", field="session"
            )
        if collection in ("all", "session") and session is not None:
            cids.append(_require_session(RagIndex.session(conn, session), session).cid)
        return cids


def create_toolset(context: AgentContext) -> Toolset:
    """The factory the agent looks up in every toolset module."""
    return RagToolset(RagSettings.from_environ(context.child_env), build_hook=BUILD_HOOK)


def _terms(query: Any, name: str) -> list[str]:
    if not isinstance(query, str):
        raise InvalidParams(f"{name} must be a string", field=name)
    if not query.strip():
        raise InvalidParams(f"{name} must not be empty", field=name)
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidParams(
            f"{name} is {len(query)} characters long; at most {MAX_QUERY_CHARS} are allowed",
            field=name,
        )
    terms = query_terms(query)
    if not terms:
        raise InvalidParams(f"{name} has no words to search for", field=name)
    return terms


def _top_k(params: Params) -> int:
    value = params.raw().get("top_k")
    if value is None:
        return DEFAULT_TOP_K
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise InvalidParams(f"top_k must be an integer from 1 to {MAX_TOP_K}", field="top_k")
    return value


def _session(params: Params) -> str:
    session = _optional_session(params)
    if session is None:
        raise InvalidParams("session is required", field="session")
    return session


def _optional_session(params: Params) -> str | None:
    session = params.optional_string("session")
    if session is None:
        return None
    if not session.strip():
        raise InvalidParams("session must not be empty", field="session")
    _check_text(session, "session", MAX_SESSION_CHARS)
    return session


def _check_text(value: str, name: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidParams(f"{name} is over {limit} characters", field=name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidParams(f"{name} contains an unpaired surrogate", field=name) from None


def _require_session(record: SessionRecord | None, session: str) -> SessionRecord:
    if record is None:
        raise InvalidParams(
            f"no open rag session {session!r} (rag.open_session opens one)", field="session"
        )
    return record


def _documents(value: Any) -> list[Document]:
    """The validated documents of a ``rag.index`` call; a repeated id keeps its last text."""
    if not isinstance(value, list):
        raise InvalidParams("documents must be a list of objects", field="documents")
    if len(value) > MAX_DOCUMENTS_PER_CALL:
        raise InvalidParams(
            f"documents holds {len(value)} documents; at most {MAX_DOCUMENTS_PER_CALL} "
            "are allowed per call",
            field="documents",
        )
    documents: dict[str, Document] = {}
    for number, item in enumerate(value):
        where = f"documents.{number}"
        if not isinstance(item, dict):
            raise InvalidParams(f"{where} must be an object", field=where)
        doc_id = item.get("id")
        if not isinstance(doc_id, str) or not doc_id:
            raise InvalidParams(f"{where}.id must be a non-empty string", field=f"{where}.id")
        _check_text(doc_id, f"{where}.id", MAX_ID_CHARS)
        title = item.get("title")
        if title is None:
            title = ""
        elif not isinstance(title, str):
            raise InvalidParams(f"{where}.title must be a string", field=f"{where}.title")
        else:
            _check_text(title, f"{where}.title", MAX_TEXT_CHARS)
        text = item.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InvalidParams(f"{where}.text must be a non-empty string", field=f"{where}.text")
        _check_text(text, f"{where}.text", MAX_TEXT_CHARS)
        documents.pop(doc_id, None)  # the last copy wins, in its own position
        documents[doc_id] = Document(doc_id, title, text)
    return list(documents.values())


def _result(hit: Hit) -> dict[str, Any]:
    return {
        "id": hit.doc_id,
        "title": hit.title,
        "text": hit.text,
        "score": round(hit.score, 6),
        "collection": "default" if hit.cid == DEFAULT_CID else "session",
    }


def _context(results: Sequence[Mapping[str, Any]]) -> str:
    """The results as one block of text to put in an LLM prompt, numbered for citing."""
    blocks = []
    for number, result in enumerate(results, start=1):
        head = f"[{number}] {result['title']}" if result["title"] else f"[{number}]"
        blocks.append(f"{head}\n{result['text']}")
    return "\n\n".join(blocks)


def _session_data(record: SessionRecord) -> dict[str, Any]:
    return {
        "session": record.session,
        "worker": record.worker,
        "created_at": record.created_at,
        "documents": record.documents,
    }
