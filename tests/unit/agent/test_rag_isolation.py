"""rag sessions are isolated: private passages change no one else's scores, one
session's indexing holds up no one else, and what a session may index is bounded."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from sandbox.agent.errors import ConfigError
from sandbox.agent.rag.corpus import Document
from sandbox.agent.rag.sessions import SessionCollections, document_bytes
from sandbox.agent.rag.settings import RagSettings
from sandbox.agent.rag.store import RagIndex

from .harness import Agent, AgentClient
from .test_rag import PLANTED, open_session, start_rag, stop, wait_ready, write_corpus

QUERY = PLANTED["lighthouse"][2]


def planted_corpus(path: Path) -> Path:
    return write_corpus(
        path,
        [{"id": key, "title": title, "text": text} for key, (title, text, _) in PLANTED.items()]
        + [{"id": f"d{n}", "text": f"filler passage number {n} about rivers"} for n in range(200)],
    )


@pytest.fixture
def rag(tmp_path: Path) -> Iterator[Agent]:
    agent = start_rag(tmp_path, tmp_path / "data" / "index.sqlite3", planted_corpus(tmp_path / "c"))
    try:
        assert wait_ready(agent.client)["state"] == "ready"
        yield agent
    finally:
        stop(agent)


def scored(data: dict[str, Any]) -> list[tuple[str, float, str]]:
    return [(hit["id"], hit["score"], hit["collection"]) for hit in data["results"]]


def query_flood(count: int, prefix: str = "b") -> list[dict[str, str]]:
    """Passages full of the query's words, which in a shared index would lower their weight."""
    return [
        {"id": f"{prefix}{n}", "title": "lighthouse terns", "text": QUERY} for n in range(count)
    ]


# -- scores -------------------------------------------------------------------------


def test_another_sessions_documents_leave_shared_scores_unchanged(rag: Agent) -> None:
    client = rag.client
    open_session(client, "a")
    open_session(client, "b")
    client.call("rag.index", session="a", documents=[{"id": "own", "text": "keeper log"}])
    before_default = client.call("rag.search", query=QUERY, collection="default", top_k=10).data
    before_all = client.call("rag.search", query=QUERY, session="a", top_k=10).data
    before_batch = client.call("rag.batch_search", queries=[QUERY, "rye starter"]).data

    flood = client.call("rag.index", session="b", documents=query_flood(500))
    after_default = client.call("rag.search", query=QUERY, collection="default", top_k=10).data
    after_all = client.call("rag.search", query=QUERY, session="a", top_k=10).data
    after_batch = client.call("rag.batch_search", queries=[QUERY, "rye starter"]).data
    theirs = client.call("rag.search", query=QUERY, session="b", top_k=10).data

    assert flood.data["documents"] == 500
    assert scored(after_default) == scored(before_default)
    assert scored(after_default)[0][0] == "lighthouse"
    assert scored(after_all) == scored(before_all)
    assert after_batch == before_batch
    # The other session does find its own passages, next to the shared ones.
    assert {hit["collection"] for hit in theirs["results"]} == {"default", "session"}


def test_all_keeps_each_shared_score_as_default_gives_it(rag: Agent) -> None:
    client = rag.client
    open_session(client, "a")
    client.call("rag.index", session="a", documents=query_flood(50, "a"))

    default = client.call("rag.search", query="lighthouse rivers", collection="default").data
    everything = client.call("rag.search", query="lighthouse rivers", session="a").data

    shared = [entry for entry in scored(everything) if entry[2] == "default"]
    assert shared == scored(default)[: len(shared)]
    # Reciprocal rank interleaves the lists, the session's own first on a tie.
    assert [entry[2] for entry in scored(everything)[:4]] == [
        "session",
        "default",
        "session",
        "default",
    ]


# -- blocking -----------------------------------------------------------------------


def test_a_sessions_large_index_blocks_no_one_else(
    rag: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While session b's write is held open inside its transaction, the shared
    corpus, session a's search and session a's own indexing all complete."""
    client = rag.client
    for session in ("a", "b"):
        open_session(client, session)
    entered = threading.Event()
    release = threading.Event()
    real_add = RagIndex.add_documents

    def held_add(
        conn: sqlite3.Connection,
        cid: int,
        documents: Sequence[Document],
        *,
        replace: bool,
        vectors: Any = None,
    ) -> int:
        if documents[0].doc_id.startswith("b"):
            entered.set()
            release.wait(60)
        return real_add(conn, cid, documents, replace=replace, vectors=vectors)

    monkeypatch.setattr(RagIndex, "add_documents", staticmethod(held_add))
    replies: list[Any] = []

    def index_b() -> None:
        other = AgentClient(rag.server.url, rag.token)
        try:
            replies.append(other.call("rag.index", session="b", documents=query_flood(5000)))
        finally:
            other.close()

    writer = threading.Thread(target=index_b)
    writer.start()
    try:
        assert entered.wait(30)
        shared = client.call("rag.search", query=QUERY, collection="default")
        batch = client.call("rag.batch_search", queries=[QUERY, "rye starter"], collection="all")
        indexed = client.call("rag.index", session="a", documents=[{"id": "a1", "text": "lamp"}])
        mine = client.call("rag.search", query="lamp", collection="session", session="a")
        stats = client.call("rag.stats", session="a")
        still_writing = writer.is_alive()
    finally:
        release.set()
        writer.join()

    assert still_writing
    assert shared.data["results"][0]["id"] == "lighthouse"
    assert batch.data["errors"] == [None, None]
    assert indexed.data == {"indexed": 1, "documents": 1}
    assert [hit["id"] for hit in mine.data["results"]] == ["a1"]
    assert stats.data["session"]["documents"] == 1
    assert replies[0].data == {"indexed": 5000, "documents": 5000}


# -- bounds -------------------------------------------------------------------------


def bounded_rag(tmp_path: Path, **env: str) -> Agent:
    agent = start_rag(
        tmp_path, tmp_path / "data" / "index.sqlite3", planted_corpus(tmp_path / "c"), env
    )
    wait_ready(agent.client)
    return agent


def test_a_session_cannot_index_past_its_byte_bound(tmp_path: Path) -> None:
    agent = bounded_rag(tmp_path, SANDBOX_RAG_SESSION_MAX_BYTES="1000")
    try:
        client = agent.client
        open_session(client, "s")
        first = client.call("rag.index", session="s", documents=[{"id": "1", "text": "x" * 600}])
        again = client.call("rag.index", session="s", documents=[{"id": "1", "text": "y" * 900}])
        over = client.call("rag.index", session="s", documents=[{"id": "2", "text": "z" * 200}])
        found = client.call("rag.search", query="y" * 900, collection="session", session="s")
        stats = client.call("rag.stats", session="s").data["session"]
    finally:
        stop(agent)

    assert first.data == {"indexed": 1, "documents": 1}
    assert again.data == {"indexed": 1, "documents": 1}  # a replaced id frees its bytes
    assert over.status == 400
    assert over.error["field"] == "documents"
    assert "1100 bytes" in over.error["message"]
    assert "at most 1000" in over.error["message"]
    assert [hit["id"] for hit in found.data["results"]] == ["1"]
    assert stats == {"documents": 1, "bytes": 900, "max_bytes": 1000}


def test_documents_per_call_are_bounded_by_the_setting(tmp_path: Path) -> None:
    agent = bounded_rag(tmp_path, SANDBOX_RAG_INDEX_MAX_DOCUMENTS="3")
    try:
        open_session(agent.client, "s")
        documents = [{"id": str(n), "text": "t"} for n in range(4)]
        reply = agent.client.call("rag.index", session="s", documents=documents)
        stats = agent.client.call("rag.stats", session="s").data["session"]
    finally:
        stop(agent)

    assert reply.status == 400
    assert reply.error["field"] == "documents"
    assert "at most 3" in reply.error["message"]
    assert stats["documents"] == 0


@pytest.mark.parametrize(
    "name",
    [
        "SANDBOX_RAG_SESSION_MAX_BYTES",
        "SANDBOX_RAG_INDEX_MAX_DOCUMENTS",
        "SANDBOX_RAG_RESPONSE_MAX_CHARS",
    ],
)
@pytest.mark.parametrize("value", ["0", "-5", "lots"])
def test_bad_bound_settings_are_config_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        RagSettings.from_environ({name: value})


def test_documents_per_call_cannot_be_raised_past_the_maximum() -> None:
    with pytest.raises(ConfigError, match="at most 100000"):
        RagSettings.from_environ({"SANDBOX_RAG_INDEX_MAX_DOCUMENTS": "100001"})


def test_max_chars_cuts_hit_texts_and_says_so(rag: Agent) -> None:
    client = rag.client
    full = client.call("rag.search", query=QUERY, collection="default", top_k=3).data
    cut = client.call("rag.search", query=QUERY, collection="default", top_k=3, max_chars=10).data
    batch = client.call("rag.batch_search", queries=[QUERY], top_k=3, max_chars=10).data

    assert [hit["id"] for hit in cut["results"]] == [hit["id"] for hit in full["results"]]
    for whole, part in zip(full["results"], cut["results"], strict=True):
        assert part["text"] == whole["text"][:10]
        assert part["truncated"] is (len(whole["text"]) > 10)
        assert whole["truncated"] is False
    assert cut["results"][0]["truncated"] is True
    assert batch["results"][0] == cut["results"]
    assert len(cut["context"]) < len(full["context"])
    assert cut["results"][0]["text"] in cut["context"]


@pytest.mark.parametrize("value", [0, -1, 1_000_001, "10", True, 2.5])
def test_bad_max_chars_names_the_field(rag: Agent, value: object) -> None:
    reply = rag.client.call("rag.search", query=QUERY, max_chars=value)

    assert reply.status == 400
    assert reply.error["field"] == "max_chars"


def test_a_reply_carries_at_most_the_response_budget(tmp_path: Path) -> None:
    agent = bounded_rag(tmp_path, SANDBOX_RAG_RESPONSE_MAX_CHARS="150")
    try:
        search = agent.client.call("rag.search", query="filler rivers", top_k=10).data
        batch = agent.client.call(
            "rag.batch_search", queries=["filler rivers", "passage number"], top_k=10
        ).data
    finally:
        stop(agent)

    def carried(results: list[dict[str, Any]]) -> int:
        return sum(len(hit["title"]) + len(hit["text"]) for hit in results)

    assert len(search["results"]) == 10
    assert carried(search["results"]) == 150
    assert search["results"][0]["truncated"] is False
    assert search["results"][-1]["truncated"] is True
    assert search["results"][-1]["text"] == ""
    assert carried([hit for hits in batch["results"] for hit in hits]) == 150
    assert all(hit["truncated"] for hit in batch["results"][1])


# -- files --------------------------------------------------------------------------


def test_each_session_has_a_file_that_goes_with_it(rag: Agent, tmp_path: Path) -> None:
    client = rag.client
    directory = tmp_path / "data" / "index.sqlite3.sessions"
    open_session(client, "a")
    client.call("rag.index", session="a", documents=[{"id": "1", "text": "lamp"}])
    files_open = sorted(path.name for path in directory.iterdir())
    closed = client.call("rag.close_session", session="a").data
    search = client.call("rag.search", query="lamp", collection="session", session="a")

    assert files_open[0].endswith(".sqlite3")
    assert closed == {"removed": 1}
    assert list(directory.iterdir()) == []
    assert search.status == 400
    assert search.error["field"] == "session"


def test_session_passages_of_an_older_shared_file_move_to_their_own(tmp_path: Path) -> None:
    db = tmp_path / "data" / "index.sqlite3"
    old = RagIndex(str(db))
    with old.writing() as conn:
        record = RagIndex.open_session(conn, "s", "w")
        RagIndex.add_documents(conn, record.cid, [Document("p", "", "old lamp")], replace=False)
    old.close()
    (db.parent / "index.sqlite3.sessions").mkdir()
    (db.parent / "index.sqlite3.sessions" / "999.sqlite3").write_bytes(b"orphan")

    agent = start_rag(tmp_path, db, None)
    try:
        found = agent.client.call("rag.search", query="lamp", session="s").data
        stats = agent.client.call("rag.stats", session="s").data
    finally:
        stop(agent)
    check = sqlite3.connect(db)
    left = check.execute("SELECT count(*) FROM docs").fetchone()[0]
    check.close()

    assert [(hit["id"], hit["collection"]) for hit in found["results"]] == [("p", "session")]
    assert stats["session"]["documents"] == 1
    assert left == 0
    assert not (db.parent / "index.sqlite3.sessions" / "999.sqlite3").exists()


def test_rarely_used_session_files_let_go_and_reopen(tmp_path: Path) -> None:
    collections = SessionCollections(
        str(tmp_path / "sessions"), score_budget=3000, max_bytes=10_000, max_warm=1
    )
    try:
        for cid in (1, 2, 3):
            document = Document(f"p{cid}", "", f"lamp number{cid}")
            collections.add(cid, [document], [document_bytes(document)])
        found = {}
        for cid in (1, 2, 3):
            store = collections.get(cid).store
            with store.reading() as conn:
                found[cid] = [hit.doc_id for hit in store.search(conn, ["lamp"], [cid], 5)]
        held = open_files(tmp_path / "sessions")
        store = collections.get(1).store
        with store.reading() as conn:
            again = [hit.doc_id for hit in store.search(conn, ["lamp"], [1], 5)]
        sizes = [collections.get(cid).bytes for cid in (1, 2, 3)]
    finally:
        collections.close()

    assert found == {1: ["p1"], 2: ["p2"], 3: ["p3"]}
    assert held == {"3.sqlite3", "3.sqlite3-wal", "3.sqlite3-shm"}
    assert again == ["p1"]
    assert sizes == [12, 12, 12]


def open_files(directory: Path) -> set[str]:
    """The names of files in `directory` this process holds open."""
    names = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = Path(os.readlink(f"/proc/self/fd/{fd}"))
            if target.parent == directory:
                names.add(target.name)
    return names
