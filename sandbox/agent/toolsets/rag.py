"""The ``rag`` toolset: BM25, dense and hybrid retrieval over a shared corpus and
per-session collections.

One rag container serves every worker of a server. The server opens a session
per worker (``rag.open_session``) and passes its name as parameter ``session`` to
every call; a session's private collection is what ``rag.index`` fills and
``rag.close_session`` empties. The shared ``default`` collection is built from a
JSONL corpus in the background at start, when the index does not hold it yet.

Isolation: each session's collection is a SQLite file of its own
(`sandbox.agent.rag.sessions`), so its passages never change the BM25
statistics behind anyone else's scores, and its writes never hold a lock that
a search of the shared corpus or of another session waits for. Collection
``all`` searches the shared index and the session's own, each ranking with its
own statistics, and interleaves the two lists by reciprocal rank
(`merge_by_rank`), the session's passage first where two share a rank (the
caller indexed it for the task at hand). Every hit keeps the BM25 score its
own index gave it, so a shared passage scores the same whether searched as
``default`` or ``all``; scores of the two collections are not comparable (a
small collection's are near zero).

Modes (parameter ``mode``): ``bm25`` ranks by FTS5's BM25; ``dense`` by the
cosine of static-embedding vectors (`sandbox.agent.rag.embedder`), made for
every passage when it is indexed and kept in the same file; ``hybrid`` fuses
the two rankings of each collection by reciprocal rank (`fusion.hybrid`).
Collections are still ranked each on its own and interleaved by rank, so a
session's vectors never touch anyone else's results either.

Output bounds: a hit's text is cut to ``max_chars`` when given, and the titles
and texts of one reply together hold at most ``SANDBOX_RAG_RESPONSE_MAX_CHARS``
(later hits are cut to what is left); a cut hit says ``"truncated": true``. The
``context`` is made of the cut hits, so it is bounded the same way.

Tools (declared in `sandbox/agent/tools/rag.py`, which checks their parameters):
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
    SANDBOX_RAG_MODEL: The embedding model's directory; the image's when unset.
        Without one, ``dense`` and ``hybrid`` are refused and ``bm25`` is the default.
    SANDBOX_RAG_SCORE_BUDGET: Rows a query may score before its commonest words
        stop choosing candidates (default 3000; higher ranks better, slower).
    SANDBOX_RAG_SESSION_MAX_BYTES: UTF-8 bytes of titles and texts one session's
        collection may hold (default 256 MiB).
    SANDBOX_RAG_INDEX_MAX_DOCUMENTS: Documents one ``rag.index`` call may carry
        (default 100,000).
    SANDBOX_RAG_RESPONSE_MAX_CHARS: Characters of titles and texts one search
        reply may carry (default 8,000,000).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import ConfigError, InvalidParams, Unavailable
from ..params import Params
from ..rag.builder import BuildHook, DefaultCollection
from ..rag.embedder import load_embedder
from ..rag.fusion import HYBRID_DEPTH, hybrid, merge_by_rank
from ..rag.latency import Latencies
from ..rag.output import ReplyBudget, context_text
from ..rag.params import (
    MAX_SESSION_CHARS,
    check_text,
    index_documents,
    no_session,
    optional_session,
    required_session,
    search_terms,
)
from ..rag.sessions import (
    CollectionFull,
    CollectionGone,
    SessionCollection,
    SessionCollections,
)
from ..rag.settings import RagSettings
from ..rag.store import DEFAULT_CID, Hit, IndexClosed, RagIndex, SessionRecord
from ..registry import AgentContext, Tool, Toolset
from ..tools import bind
from ..tools.rag import DEFAULT_MODE, MODES, TOOLS

_BATCH_THREADS = 4

BUILD_HOOK: BuildHook | None = None
"""Called before each batch of the default build with (done, total); for tests."""


Target = tuple[RagIndex, int]
"""A collection to search: the file that holds it and its collection number."""

Search = tuple[int, list[str], Any]
"""One query of a call: its position, its words, and its vector (None for bm25)."""


class RagToolset(Toolset):
    """The shared index, the session files, the default builder, and the tools.

    Args:
        settings: Where the index is, what the default collection holds, bounds.
        build_hook: Called before each batch of a default build (tests pause here).

    Raises:
        ConfigError: The index file cannot be opened.
    """

    name = "rag"

    def __init__(self, settings: RagSettings, build_hook: BuildHook | None = None) -> None:
        self._settings = settings
        self._embedder, self._no_model = load_embedder(settings.model)
        try:
            self._index = RagIndex(settings.db, score_budget=settings.score_budget)
            self._sessions = SessionCollections(
                f"{settings.db}.sessions",
                score_budget=settings.score_budget,
                max_bytes=settings.session_max_bytes,
                embedder=self._embedder,
            )
            self._adopt_session_files()
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"cannot open the rag index {settings.db}: {exc}") from None
        self._default = DefaultCollection(
            self._index, settings.corpus, build_hook, embedder=self._embedder
        )
        self._latencies = Latencies()
        self._mode_latencies = {mode: Latencies() for mode in MODES}
        self._batch_threads = max(1, min(_BATCH_THREADS, os.cpu_count() or 1))
        self._batch_pool = ThreadPoolExecutor(
            max_workers=self._batch_threads, thread_name_prefix="rag-batch"
        )
        try:
            self._default.start()
        except BaseException:
            self.close()
            raise

    def _adopt_session_files(self) -> None:
        """Keep the files of recorded sessions, delete the rest, and move passages
        an older version kept in the shared file into their sessions' files."""
        with self._index.reading() as conn:
            records = RagIndex.sessions(conn)
            legacy = [r for r in records if RagIndex.collection_holds_any(conn, r.cid)]
        self._sessions.remove_orphans(record.cid for record in records)
        if legacy:
            self._sessions.migrate_from(self._index, legacy)

    def tools(self) -> Sequence[Tool]:
        """The ``rag.*`` tools."""
        return bind(
            TOOLS,
            {
                "status": self.status,
                "search": self.search,
                "batch_search": self.batch_search,
                "index": self.index,
                "stats": self.stats,
                "open_session": self.open_session,
                "close_session": self.close_session,
                "sessions": self.sessions,
            },
        )

    def close(self) -> None:
        """Stop a running build and close the index files."""
        self._default.close()
        self._batch_pool.shutdown(wait=True)
        self._sessions.close()
        self._index.close()

    # -- tools ----------------------------------------------------------------------

    def status(self, params: Params) -> dict[str, Any]:
        """``rag.status``: the default collection's state, size and build progress."""
        return self._default.status().as_dict()

    def search(self, params: Params) -> dict[str, Any]:
        """``rag.search``: `query` (`top_k`, `mode`, `collection`, `session`,
        `max_chars` optional)."""
        started = time.perf_counter()
        raw = params.raw()
        terms = search_terms(raw["query"], "query")
        top_k, max_chars = raw["top_k"], raw.get("max_chars")
        mode = self._mode(params)
        targets = self._targets(params)
        hits: list[Hit] = []
        if targets:
            vector = self._query_vectors([raw["query"]], mode)[0]
            hits = self._search_many([(0, terms, vector)], targets, top_k, mode)[0][1]
        results = ReplyBudget(self._settings.response_max_chars, max_chars).results(hits)
        self._latencies.add(time.perf_counter() - started)
        self._mode_latencies[mode].add(time.perf_counter() - started)
        # `query` echoed as AgentFlow's result formatter reads it.
        return {
            "query": raw["query"],
            "mode": mode,
            "results": results,
            "context": context_text(results),
        }

    def batch_search(self, params: Params) -> dict[str, Any]:
        """``rag.batch_search``: `queries` (`top_k`, `mode`, `collection`, `session`,
        `max_chars` optional).

        A query that cannot be searched (no words, too long, not a string) gets an
        empty result list and an error naming it (``queries.N``); the rest run.
        """
        started = time.perf_counter()
        raw = params.raw()
        queries: list[Any] = raw["queries"]
        top_k, max_chars = raw["top_k"], raw.get("max_chars")
        mode = self._mode(params)
        targets = self._targets(params)
        found: list[list[Hit]] = [[] for _ in queries]
        errors: list[str | None] = [None] * len(queries)
        valid: list[tuple[int, list[str]]] = []
        for number, query in enumerate(queries):
            try:
                valid.append((number, search_terms(query, f"queries.{number}")))
            except InvalidParams as exc:
                errors[number] = exc.message
        searches: list[Search] = []
        if targets and valid:
            vectors = self._query_vectors([queries[number] for number, _ in valid], mode)
            pairs = zip(valid, vectors, strict=True)
            searches = [(number, terms, vector) for (number, terms), vector in pairs]
        if searches:
            # SQLite lets go of the GIL while it ranks, so a batch spreads over the CPUs.
            parts = [searches[n :: self._batch_threads] for n in range(self._batch_threads)]
            parts = [part for part in parts if part]
            futures = [
                self._batch_pool.submit(self._search_many, part, targets, top_k, mode)
                for part in parts[1:]
            ]
            done = self._search_many(parts[0], targets, top_k, mode)
            for future in futures:
                done.extend(future.result())
            for number, hits in done:
                found[number] = hits
        budget = ReplyBudget(self._settings.response_max_chars, max_chars)
        results = [budget.results(hits) for hits in found]
        self._latencies.add(time.perf_counter() - started, len(queries))
        self._mode_latencies[mode].add(time.perf_counter() - started, len(queries))
        return {
            "mode": mode,
            "results": results,
            "errors": errors,
            # AgentFlow's shape: one joined context per query.
            "count": len(queries),
            "contexts": [context_text(hits) for hits in results],
        }

    def _search_many(
        self, searches: Sequence[Search], targets: Sequence[Target], top_k: int, mode: str
    ) -> list[tuple[int, list[Hit]]]:
        """Each search's best `top_k` over `targets`, each target ranked by its own file."""
        with contextlib.ExitStack() as stack:
            try:
                conns = [
                    (store, cid, stack.enter_context(store.reading())) for store, cid in targets
                ]
            except IndexClosed:
                raise no_session("the session") from None
            return [
                (
                    number,
                    merge_by_rank(
                        [
                            self._rank(store, conn, cid, terms, vector, top_k, mode)
                            for store, cid, conn in conns
                        ],
                        top_k,
                    ),
                )
                for number, terms, vector in searches
            ]

    @staticmethod
    def _rank(
        store: RagIndex,
        conn: sqlite3.Connection,
        cid: int,
        terms: list[str],
        vector: Any,
        top_k: int,
        mode: str,
    ) -> list[Hit]:
        """One collection's best `top_k` for one query, ranked as `mode` says."""
        if mode == "bm25":
            return store.search(conn, terms, [cid], top_k)
        if mode == "dense":
            return store.dense_search(conn, vector, cid, top_k)
        # Both rankings deep, without texts; only the fused head is read.
        depth = max(top_k, HYBRID_DEPTH)
        fused = hybrid(
            store.lexical_ranking(conn, terms, cid, depth, enough=top_k),
            store.dense_ranking(vector, cid, depth),
            top_k,
        )
        return store.passages(conn, fused)

    def _mode(self, params: Params) -> str:
        """The call's ``mode`` (the declaration checked its spelling); refuses a
        mode that needs the model where there is none."""
        mode = params.optional_string("mode")
        if mode is None:
            return DEFAULT_MODE if self._embedder is not None else "bm25"
        if mode != "bm25" and self._embedder is None:
            raise InvalidParams(
                f"mode {mode!r} needs the embedding model, and {self._no_model}; use mode 'bm25'",
                field="mode",
            )
        return mode

    def _query_vectors(self, queries: Sequence[str], mode: str) -> list[Any]:
        """The queries' vectors, or Nones when `mode` needs none."""
        if mode == "bm25" or self._embedder is None:
            return [None] * len(queries)
        return list(self._embedder.embed(queries))

    def index(self, params: Params) -> dict[str, Any]:
        """``rag.index``: `documents` into the collection of `session`.

        Every document is checked before any is written: one bad document
        (named like ``documents.12.text``), or more than the session's collection
        may hold, and nothing is indexed.
        """
        session = required_session(params)
        documents, sizes = index_documents(
            params.raw()["documents"], self._settings.index_max_documents
        )
        record = self._record(session)
        try:
            total = self._sessions.add(record.cid, documents, sizes)
        except CollectionGone:
            raise no_session(session) from None
        except CollectionFull as exc:
            raise InvalidParams(
                f"documents would make session {session!r}'s collection hold "
                f"{exc.would_hold} bytes of titles and texts; at most {exc.limit} are "
                "allowed (SANDBOX_RAG_SESSION_MAX_BYTES)",
                field="documents",
            ) from None
        return {"indexed": len(documents), "documents": total}

    def stats(self, params: Params) -> dict[str, Any]:
        """``rag.stats``: sizes, index bytes, query count and latency (`session` optional)."""
        session = optional_session(params)
        status = self._default.status()
        session_stats: dict[str, Any] | None = None
        if session is not None:
            collection = self._collection(self._record(session))
            session_stats = {
                "documents": collection.documents,
                "bytes": collection.bytes,
                "max_bytes": self._sessions.max_bytes,
            }
        return {
            "default": {"documents": status.documents, "state": status.state},
            "session": session_stats,
            "model": None if self._embedder is None else self._embedder.name,
            "index_bytes": self._index.size_bytes() + self._sessions.size_bytes(),
            "queries": self._latencies.count,
            "latency_ms": self._latencies.percentiles(),
            "latency_ms_by_mode": {
                mode: latencies.percentiles() for mode, latencies in self._mode_latencies.items()
            },
        }

    def open_session(self, params: Params) -> dict[str, Any]:
        """``rag.open_session``: record `session` for `worker` (idempotent)."""
        session = required_session(params)
        worker = params.optional_string("worker") or ""
        check_text(worker, "worker", MAX_SESSION_CHARS)
        with self._index.writing() as conn:
            record = RagIndex.open_session(conn, session, worker)
        return self._session_data(record)

    def close_session(self, params: Params) -> dict[str, Any]:
        """``rag.close_session``: delete `session`'s passages and record (idempotent)."""
        session = required_session(params)
        with self._index.writing() as conn:
            record = RagIndex.session(conn, session)
            if record is not None:
                conn.execute("DELETE FROM sessions WHERE cid = ?", (record.cid,))
        # The record goes first: a crash now leaves an orphan file, removed at start.
        removed = 0 if record is None else self._sessions.drop(record.cid)
        return {"removed": removed}

    def sessions(self, params: Params) -> dict[str, Any]:
        """``rag.sessions``: every recorded session, oldest first."""
        with self._index.reading() as conn:
            records = RagIndex.sessions(conn)
        return {"sessions": [self._session_data(record) for record in records]}

    # -- helpers ------------------------------------------------------------------------

    def _record(self, session: str) -> SessionRecord:
        """The registry's record of `session` (a read: it never waits for a writer)."""
        with self._index.reading() as conn:
            record = RagIndex.session(conn, session)
        if record is None:
            raise no_session(session)
        return record

    def _collection(self, record: SessionRecord) -> SessionCollection:
        try:
            return self._sessions.get(record.cid)
        except CollectionGone:
            raise no_session(record.session) from None

    def _targets(self, params: Params) -> list[Target]:
        """The collections a search covers, the session's first (it wins rank ties);
        refuses an unready default."""
        collection = params.string("collection")
        session = optional_session(params)
        targets: list[Target] = []
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
                targets.append((self._index, DEFAULT_CID))
        if collection == "session" and session is None:
            raise InvalidParams(
                "session is required to search collection 'session'", field="session"
            )
        if collection in ("all", "session") and session is not None:
            own = self._collection(self._record(session))
            if own.documents:  # an empty file has nothing to rank
                targets.insert(0, (own.store, own.cid))
        return targets

    def _session_data(self, record: SessionRecord) -> dict[str, Any]:
        try:
            documents = self._sessions.get(record.cid).documents
        except CollectionGone:
            documents = 0
        return {
            "session": record.session,
            "worker": record.worker,
            "created_at": record.created_at,
            "documents": documents,
        }


def create_toolset(context: AgentContext) -> Toolset:
    """The factory the agent looks up in every toolset module."""
    return RagToolset(RagSettings.from_environ(context.child_env), build_hook=BUILD_HOOK)
