"""The ``rag`` toolset through an in-process agent: corpus, search, sessions, persistence."""

from __future__ import annotations

import json
import os
import random
import secrets
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.agent import AgentServer
from sandbox.agent.toolsets import rag as rag_toolset

from .harness import Agent, AgentClient

TOKEN_ENV = "SANDBOX_AGENT_TOKEN"

# Passages planted among the distractors, each with a query that says the same
# thing in other words, other word forms and another order.
PLANTED = {
    "lighthouse": (
        "Lighthouse log",
        "The keeper of the northern lighthouse recorded migrating arctic terns every "
        "autumn and counted the flocks passing the lamp.",
        "which lighthouse keepers count tern migrations in the fall",
    ),
    "sourdough": (
        "Rye starter",
        "Feeding a sourdough starter with rye flour twice daily keeps the wild yeast "
        "active and the bread rising well.",
        "how often should I feed my rye starter so that its yeast stays active?",
    ),
    "compiler": (
        "Optimisation levels",
        "The compiler inlines small functions and unrolls loops when the highest "
        "optimisation level is selected.",
        "does selecting the highest level make compilers unroll a loop and inline a function",
    ),
    "glacier": (
        "Valley glacier",
        "The valley glacier retreated four kilometres since 1900, exposing moraines "
        "and meltwater lakes.",
        "how far did glaciers in the valley retreat, and what lakes did that expose",
    ),
    "endgame": (
        "Chess endgames",
        "In the endgame a passed pawn supported by its king usually decides the game.",
        "kings supporting passed pawns decide most endgames",
    ),
}
# Words the distractors are made of: everyday words plus each planted topic's
# words, so that every query matches many distractors in part.
_VOCABULARY_TEXT = (
    "river house market winter garden window street music letter paper water "
    "engine bridge forest mountain school doctor teacher village harbour station "
    "keeper lighthouse autumn flocks lamp northern recorded bread flour daily wild "
    "active rising compiler functions small loops level selected valley kilometres "
    "lakes exposing game king usually decides supported pawn board queen summer "
    "yeast birds migrating counted inlines retreated moraines endgame passed"
)
_VOCABULARY = _VOCABULARY_TEXT.split()


def corpus_lines(distractors: int, seed: int = 3) -> list[dict[str, str]]:
    """`distractors` random passages, with the planted ones spread among them."""
    rng = random.Random(seed)
    documents = [
        {
            "id": f"d{n}",
            "title": " ".join(rng.sample(_VOCABULARY, 2)),
            "text": " ".join(rng.choices(_VOCABULARY, k=rng.randint(12, 40))) + ".",
        }
        for n in range(distractors)
    ]
    for number, (key, (title, text, _)) in enumerate(PLANTED.items()):
        position = (number + 1) * distractors // (len(PLANTED) + 1)
        documents.insert(position, {"id": key, "title": title, "text": text})
    return documents


def write_corpus(path: Path, documents: Sequence[dict[str, Any] | list[str] | str]) -> Path:
    with path.open("w", encoding="utf-8") as file:
        for document in documents:
            line = document if isinstance(document, str) else json.dumps(document)
            file.write(line + "\n")
    return path


def start_rag(
    home: Path, db: Path, corpus: Path | None, extra_env: dict[str, str] | None = None
) -> Agent:
    """An agent with only the rag toolset, its index in `db`, built from `corpus`."""
    token = secrets.token_hex(16)
    environ = {key: value for key, value in os.environ.items() if not key.startswith("SANDBOX_")}
    environ.update({TOKEN_ENV: token, "SANDBOX_RAG_DB": str(db), **(extra_env or {})})
    if corpus is not None:
        environ["SANDBOX_RAG_CORPUS"] = str(corpus)
    server = AgentServer(
        "127.0.0.1", 0, token=token, toolsets=("rag",), home=str(home), environ=environ
    )
    server.start()
    return Agent(server, token, home, AgentClient(server.url, token))


def stop(agent: Agent) -> None:
    agent.client.close()
    agent.server.close()


def wait_ready(client: AgentClient, timeout: float = 60) -> dict[str, Any]:
    deadline = threading.Event()
    timer = threading.Timer(timeout, deadline.set)
    timer.start()
    try:
        while not deadline.is_set():
            status = client.call("rag.status").data
            if status["state"] != "indexing":
                return status
            deadline.wait(0.02)
    finally:
        timer.cancel()
    raise AssertionError(f"the default collection is still indexing after {timeout}s")


def ids(reply_data: dict[str, Any]) -> list[str]:
    return [hit["id"] for hit in reply_data["results"]]


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    return write_corpus(path, corpus_lines(3000))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "index.sqlite3"


@pytest.fixture
def rag(tmp_path: Path, db: Path, big_corpus: Path) -> Iterator[Agent]:
    """An agent whose default collection (3,005 passages) is built."""
    agent = start_rag(tmp_path, db, big_corpus)
    try:
        assert wait_ready(agent.client)["state"] == "ready"
        yield agent
    finally:
        stop(agent)


@pytest.fixture
def client(rag: Agent) -> AgentClient:
    return rag.client


def open_session(client: AgentClient, session: str, worker: str = "w1") -> None:
    assert client.call("rag.open_session", session=session, worker=worker).data["session"] == (
        session
    )


# -- the default collection ----------------------------------------------------------


def test_build_reports_progress_and_ends_ready(tmp_path: Path, db: Path, big_corpus: Path) -> None:
    agent = start_rag(tmp_path, db, big_corpus)
    try:
        status = wait_ready(agent.client)
    finally:
        stop(agent)

    assert status["state"] == "ready"
    assert status["documents"] == 3005
    assert status["progress"] == {"done": 3005, "total": 3005}
    assert status["corpus"] == str(big_corpus)
    assert status["error"] is None
    assert status["rebuilt"] is True
    assert status["elapsed_s"] > 0
    assert status["skipped"]["count"] == 0


def test_search_finds_each_planted_passage_first_from_a_paraphrase(client: AgentClient) -> None:
    for key, (title, text, query) in PLANTED.items():
        data = client.call("rag.search", query=query, collection="default").data

        assert ids(data)[0] == key, (query, data["results"][:3])
        best = data["results"][0]
        assert best == {
            "id": key,
            "title": title,
            "text": text,
            "score": best["score"],
            "collection": "default",
            "truncated": False,
        }
        scores = [hit["score"] for hit in data["results"]]
        assert scores == sorted(scores, reverse=True)
        assert scores[0] > 0
        assert data["context"].startswith(f"[1] {title}\n{text}\n\n[2] ")


def test_top_k_bounds_the_results(client: AgentClient) -> None:
    query = PLANTED["glacier"][2]

    assert len(client.call("rag.search", query=query, top_k=1).data["results"]) == 1
    assert len(client.call("rag.search", query=query, top_k=100).data["results"]) == 100
    assert len(client.call("rag.search", query=query).data["results"]) == 5


def test_no_match_is_an_empty_answer(client: AgentClient) -> None:
    data = client.call("rag.search", query="xylophone zeppelin").data

    assert data == {"query": "xylophone zeppelin", "mode": "bm25", "results": [], "context": ""}


def test_malformed_corpus_lines_are_skipped_and_counted(tmp_path: Path, db: Path) -> None:
    corpus = write_corpus(
        tmp_path / "corpus.jsonl",
        [
            {"id": "1", "title": "one", "text": "first passage about otters"},
            "",
            "{not json",
            {"id": "2", "text": ""},
            {"id": 3, "text": "an integer id is taken as text, otters again"},
            {"id": "1", "text": "a repeated id"},
            ["not", "an", "object"],
        ],
    )
    agent = start_rag(tmp_path, db, corpus)
    try:
        status = wait_ready(agent.client)
        found = agent.client.call("rag.search", query="otters").data
    finally:
        stop(agent)

    assert status["state"] == "ready"
    assert status["documents"] == 2
    assert status["skipped"]["count"] == 4
    assert status["skipped"]["first_line"] == 3
    assert "JSON" in status["skipped"]["reason"]
    assert sorted(ids(found)) == ["1", "3"]


def test_missing_corpus_fails_and_searches_say_why(tmp_path: Path, db: Path) -> None:
    agent = start_rag(tmp_path, db, tmp_path / "nope.jsonl")
    try:
        status = agent.client.call("rag.status").data
        reply = agent.client.call("rag.search", query="anything")
        open_session(agent.client, "s1")
        session_search = agent.client.call(
            "rag.search", query="anything", collection="session", session="s1"
        )
    finally:
        stop(agent)

    assert status["state"] == "failed"
    assert "nope.jsonl" in status["error"]
    assert reply.status == 503
    assert reply.error["kind"] == "unavailable"
    assert "nope.jsonl" in reply.error["message"]
    assert session_search.data["results"] == []


def test_no_corpus_means_an_empty_default_collection(tmp_path: Path, db: Path) -> None:
    agent = start_rag(tmp_path, db, None)
    try:
        status = agent.client.call("rag.status").data
        found = agent.client.call("rag.search", query="anything at all").data
    finally:
        stop(agent)

    assert status["state"] == "empty"
    assert status["documents"] == 0
    assert found["results"] == []


def test_searches_are_unavailable_while_the_default_collection_builds(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", corpus_lines(4500))
    release = threading.Event()
    paused = threading.Event()

    def hold(done: int, total: int) -> None:
        if done > 0:  # let the first batch in, then hold the build
            paused.set()
            release.wait(30)

    monkeypatch.setattr(rag_toolset, "BUILD_HOOK", hold)
    agent = start_rag(tmp_path, db, corpus)
    try:
        assert paused.wait(30)
        status = agent.client.call("rag.status").data
        health = httpx.get(f"{agent.url}/health", timeout=5)
        default = agent.client.call("rag.search", query="lighthouse", collection="default")
        everything = agent.client.call("rag.batch_search", queries=["lighthouse"])
        open_session(agent.client, "s1")
        agent.client.call(
            "rag.index", session="s1", documents=[{"id": "x", "text": "lighthouse lamp"}]
        )
        private = agent.client.call(
            "rag.search", query="lighthouse", collection="session", session="s1"
        )
        release.set()
        ready = wait_ready(agent.client)
        after = agent.client.call("rag.search", query="lighthouse lamp", session="s1", top_k=100)
    finally:
        release.set()
        stop(agent)

    assert status["state"] == "indexing"
    assert status["progress"] == {"done": 2000, "total": 4505}
    assert status["documents"] == 2000
    assert health.status_code == 200
    assert default.status == 503
    assert default.error["kind"] == "unavailable"
    assert "2000 of 4505" in default.error["message"]
    assert default.error["data"]["progress"] == {"done": 2000, "total": 4505}
    assert everything.status == 503
    assert ids(private.data) == ["x"]
    assert ready["state"] == "ready"
    assert ready["documents"] == 4505
    assert "x" in ids(after.data)
    assert {hit["collection"] for hit in after.data["results"]} == {"default", "session"}


# -- sessions --------------------------------------------------------------------------


def test_all_ranks_default_and_session_passages_in_one_list(client: AgentClient) -> None:
    open_session(client, "s1")
    indexed = client.call(
        "rag.index",
        session="s1",
        documents=[
            {"id": "mine", "title": "Terns", "text": "Arctic terns migrate past lighthouses."},
            {"id": "other", "text": "Nothing to do with the query."},
        ],
    )
    query = "arctic terns migrating past the lighthouse"
    everything = client.call("rag.search", query=query, session="s1", top_k=10).data
    default = client.call("rag.search", query=query, collection="default", session="s1").data
    private = client.call("rag.search", query=query, collection="session", session="s1").data

    assert indexed.data == {"indexed": 2, "documents": 2}
    assert ids(everything)[:2] == ["lighthouse", "mine"] or ids(everything)[:2] == [
        "mine",
        "lighthouse",
    ]
    assert {hit["collection"] for hit in everything["results"]} == {"default", "session"}
    for collection in ("default", "session"):
        scores = [hit["score"] for hit in everything["results"] if hit["collection"] == collection]
        assert scores == sorted(scores, reverse=True)
    assert "mine" not in ids(default)
    assert ids(private) == ["mine"]
    assert private["results"][0]["collection"] == "session"


def test_sessions_do_not_see_each_other(client: AgentClient) -> None:
    open_session(client, "a", worker="wa")
    open_session(client, "b", worker="wb")
    client.call("rag.index", session="a", documents=[{"id": "s", "text": "zanzibar quokka"}])

    from_a = client.call("rag.search", query="zanzibar quokka", session="a").data
    from_b = client.call("rag.search", query="zanzibar quokka", session="b").data
    from_b_private = client.call(
        "rag.search", query="zanzibar quokka", session="b", collection="session"
    ).data
    listed = client.call("rag.sessions").data["sessions"]

    assert ids(from_a) == ["s"]
    assert from_b["results"] == []
    assert from_b_private["results"] == []
    assert [(s["session"], s["worker"], s["documents"]) for s in listed] == [
        ("a", "wa", 1),
        ("b", "wb", 0),
    ]
    assert all(isinstance(s["created_at"], float) for s in listed)


def test_reindexing_an_id_replaces_it(client: AgentClient) -> None:
    open_session(client, "s1")
    client.call("rag.index", session="s1", documents=[{"id": "p", "text": "old walrus text"}])
    again = client.call(
        "rag.index",
        session="s1",
        documents=[
            {"id": "p", "text": "new narwhal text"},
            {"id": "q", "text": "first narwhal"},
            {"id": "q", "text": "second narwhal, the one kept"},
        ],
    ).data

    walrus = client.call("rag.search", query="walrus", session="s1", collection="session").data
    narwhal = client.call("rag.search", query="narwhal", session="s1", collection="session").data

    assert again == {"indexed": 2, "documents": 2}
    assert walrus["results"] == []
    assert {hit["id"]: hit["text"] for hit in narwhal["results"]} == {
        "p": "new narwhal text",
        "q": "second narwhal, the one kept",
    }


def test_many_documents_in_one_call(client: AgentClient) -> None:
    open_session(client, "bulk")
    documents = [{"id": f"n{n}", "text": f"bulk passage number{n} ocelot"} for n in range(20_000)]

    reply = client.call("rag.index", session="bulk", documents=documents)
    found = client.call("rag.search", query="number12345", session="bulk").data
    stats = client.call("rag.stats", session="bulk").data

    assert reply.data == {"indexed": 20_000, "documents": 20_000}
    assert ids(found) == ["n12345"]
    assert stats["session"]["documents"] == 20_000


def test_close_session_removes_its_passages(client: AgentClient) -> None:
    open_session(client, "gone")
    open_session(client, "kept")
    for session in ("gone", "kept"):
        client.call(
            "rag.index",
            session=session,
            documents=[{"id": f"{session}{n}", "text": f"capybara {n}"} for n in range(3)],
        )

    closed = client.call("rag.close_session", session="gone").data
    again = client.call("rag.close_session", session="gone").data
    search = client.call("rag.search", query="capybara", session="gone")
    kept = client.call("rag.search", query="capybara", session="kept").data
    listed = [s["session"] for s in client.call("rag.sessions").data["sessions"]]
    reopened = client.call("rag.open_session", session="gone", worker="w1").data

    assert closed == {"removed": 3}
    assert again == {"removed": 0}
    assert search.status == 400
    assert search.error["field"] == "session"
    assert sorted(ids(kept)) == ["kept0", "kept1", "kept2"]
    assert listed == ["kept"]
    assert reopened["documents"] == 0


def test_open_session_is_idempotent(client: AgentClient) -> None:
    first = client.call("rag.open_session", session="s", worker="w1").data
    client.call("rag.index", session="s", documents=[{"id": "1", "text": "gecko"}])
    second = client.call("rag.open_session", session="s", worker="w1").data

    assert first["documents"] == 0
    assert second == {**first, "documents": 1}


def test_stats_count_queries_and_sizes(client: AgentClient) -> None:
    open_session(client, "s")
    client.call("rag.index", session="s", documents=[{"id": "1", "text": "gecko"}])
    before = client.call("rag.stats").data
    client.call("rag.search", query="gecko", session="s")
    client.call("rag.batch_search", queries=["gecko", "lamp"], session="s")
    after = client.call("rag.stats", session="s").data

    assert before["default"] == {"documents": 3005, "state": "ready"}
    assert before["session"] is None
    assert after["session"] == {"documents": 1, "bytes": 5, "max_bytes": 256 << 20}
    assert after["queries"] == before["queries"] + 3
    assert after["index_bytes"] > 100_000
    assert 0 < after["latency_ms"]["p50"] <= after["latency_ms"]["p95"]
    by_mode = after["latency_ms_by_mode"]
    assert 0 < by_mode["bm25"]["p50"] <= by_mode["bm25"]["p95"]
    assert by_mode["dense"] == {"p50": None, "p95": None}, "no dense search ran"


# -- batches -----------------------------------------------------------------------------


def test_batch_keeps_order_and_reports_bad_queries_alone(client: AgentClient) -> None:
    queries: list[Any] = [
        PLANTED["endgame"][2],
        "   ",
        PLANTED["sourdough"][2],
        "?!* ( ) ^",
        7,
        "x" * 2001,
        PLANTED["lighthouse"][2],
    ]

    data = client.call("rag.batch_search", queries=queries, top_k=3, collection="default").data

    assert [hits[0]["id"] if hits else None for hits in data["results"]] == [
        "endgame",
        None,
        "sourdough",
        None,
        None,
        None,
        "lighthouse",
    ]
    assert [len(hits) for hits in data["results"]] == [3, 0, 3, 0, 0, 0, 3]
    # AgentFlow's shape beside ours: a count and one joined context per query.
    assert data["count"] == len(queries) == len(data["contexts"])
    assert data["contexts"][1] == ""
    assert data["results"][0][0]["text"][:40] in data["contexts"][0]
    errors = data["errors"]
    assert errors[0] is None
    assert errors[2] is None
    assert errors[6] is None
    assert "queries.1" in errors[1]
    assert "queries.3" in errors[3]
    assert "queries.4" in errors[4]
    assert "queries.5" in errors[5]


def test_batch_of_many_queries_matches_single_searches(client: AgentClient) -> None:
    queries = [query for _, _, query in PLANTED.values()] * 10

    batch = client.call("rag.batch_search", queries=queries).data["results"]
    singles = [client.call("rag.search", query=query).data["results"] for query in queries]

    assert batch == singles


# -- validation and hostile input ---------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "params", "field"),
    [
        ("rag.search", {}, "query"),
        ("rag.search", {"query": ""}, "query"),
        ("rag.search", {"query": "  \n "}, "query"),
        ("rag.search", {"query": 5}, "query"),
        ("rag.search", {"query": "x" * 2001}, "query"),
        ("rag.search", {"query": "ok", "top_k": 0}, "top_k"),
        ("rag.search", {"query": "ok", "top_k": 101}, "top_k"),
        ("rag.search", {"query": "ok", "top_k": 2.5}, "top_k"),
        ("rag.search", {"query": "ok", "top_k": True}, "top_k"),
        ("rag.search", {"query": "ok", "collection": "mine"}, "collection"),
        ("rag.search", {"query": "ok", "collection": "session"}, "session"),
        ("rag.search", {"query": "ok", "session": "never-opened"}, "session"),
        ("rag.search", {"query": "ok", "session": ""}, "session"),
        ("rag.batch_search", {"queries": []}, "queries"),
        ("rag.batch_search", {"queries": "one"}, "queries"),
        ("rag.batch_search", {"queries": ["q"] * 257}, "queries"),
        ("rag.batch_search", {"queries": ["q"], "top_k": -1}, "top_k"),
        ("rag.index", {"documents": [{"id": "1", "text": "t"}]}, "session"),
        ("rag.index", {"session": "s", "documents": {"id": "1"}}, "documents"),
        ("rag.index", {"session": "s", "documents": [{"id": "1", "text": "t"}, 3]}, "documents.1"),
        ("rag.index", {"session": "s", "documents": [{"text": "t"}]}, "documents.0.id"),
        ("rag.index", {"session": "s", "documents": [{"id": "", "text": "t"}]}, "documents.0.id"),
        ("rag.index", {"session": "s", "documents": [{"id": 1, "text": "t"}]}, "documents.0.id"),
        (
            "rag.index",
            {"session": "s", "documents": [{"id": "x" * 257, "text": "t"}]},
            "documents.0.id",
        ),
        ("rag.index", {"session": "s", "documents": [{"id": "1"}]}, "documents.0.text"),
        (
            "rag.index",
            {"session": "s", "documents": [{"id": "1", "text": " "}]},
            "documents.0.text",
        ),
        (
            "rag.index",
            {"session": "s", "documents": [{"id": "1", "text": "t", "title": 4}]},
            "documents.0.title",
        ),
        (
            "rag.index",
            {"session": "s", "documents": [{"id": "1", "text": "x" * 1_000_001}]},
            "documents.0.text",
        ),
        ("rag.index", {"session": "unknown", "documents": [{"id": "1", "text": "t"}]}, "session"),
        ("rag.index", {"session": "s", "documents": []}, "documents"),
        ("rag.open_session", {"worker": "w"}, "session"),
        ("rag.open_session", {"session": "s" * 257}, "session"),
        ("rag.close_session", {}, "session"),
        ("rag.stats", {"session": "unknown"}, "session"),
    ],
)
def test_bad_parameters_name_their_field(
    client: AgentClient, tool: str, params: dict[str, Any], field: str
) -> None:
    open_session(client, "s")

    reply = client.call(tool, **params)

    assert reply.status == 400, reply.body
    assert reply.error["kind"] == "invalid_params"
    assert reply.error["field"] == field
    assert field.split(".")[0] in reply.error["message"]


def test_a_bad_document_stops_the_whole_call(client: AgentClient) -> None:
    open_session(client, "s")
    documents: list[dict[str, Any]] = [{"id": f"{n}", "text": "wombat"} for n in range(20)]
    documents[12] = {"id": "12", "text": ["not", "text"]}

    reply = client.call("rag.index", session="s", documents=documents)
    found = client.call("rag.search", query="wombat", session="s", collection="session").data

    assert reply.error["field"] == "documents.12.text"
    assert found["results"] == []


def test_too_many_documents_in_one_call_is_refused(client: AgentClient) -> None:
    open_session(client, "s")
    documents = [{"id": "x", "text": "t"}] * 100_001

    reply = client.call("rag.index", session="s", documents=documents)

    assert reply.error["field"] == "documents"
    assert "100000" in reply.error["message"]


@pytest.mark.parametrize(
    "query",
    [
        '"AND OR NOT * ( ) ^ :',
        "NEAR(lighthouse keeper, 2)",
        "title: lighthouse",
        "{title text}: keeper",
        "lamp* -flocks +terns",
        '"unbalanced quote',
        "keeper's lamp (northern) [arctic] {terns}",
        "AND",
        "c'est l'été à Zürich — naïve café",
        "日本語のテキスト",
        "emoji 🦀 lamp",
        "\0\x01 lamp \ud800",
    ],
)
def test_fts5_syntax_in_queries_is_just_text(client: AgentClient, query: str) -> None:
    reply = client.call("rag.search", query=query)

    assert reply.status == 200, reply.body
    assert isinstance(reply.data["results"], list)


def test_random_text_never_fails_a_search(client: AgentClient) -> None:
    rng = random.Random(11)
    alphabet = "\"*^:()[]{}-+.,;!?'\\/ANDORNOTnear " + "éßøЖ日本🦀\t\n"
    for _ in range(200):
        query = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        reply = client.call("rag.search", query=query)
        assert reply.status in (200, 400), (query, reply.body)
        if reply.status == 400:
            assert reply.error["field"] == "query"


# -- persistence ------------------------------------------------------------------------------


def test_a_restarted_agent_keeps_its_index_and_sessions(
    tmp_path: Path, db: Path, big_corpus: Path
) -> None:
    first = start_rag(tmp_path, db, big_corpus)
    try:
        assert wait_ready(first.client)["rebuilt"] is True
        open_session(first.client, "s1", worker="w7")
        first.client.call(
            "rag.index", session="s1", documents=[{"id": "kept", "text": "pangolin scales"}]
        )
    finally:
        stop(first)

    second = start_rag(tmp_path, db, big_corpus)
    try:
        # Ready at once: the fingerprint matches, nothing is rebuilt.
        status = second.client.call("rag.status").data
        sessions = second.client.call("rag.sessions").data["sessions"]
        found = second.client.call("rag.search", query="pangolin", session="s1").data
        planted = second.client.call("rag.search", query=PLANTED["glacier"][2]).data
    finally:
        stop(second)

    assert status["state"] == "ready"
    assert status["rebuilt"] is False
    assert status["documents"] == 3005
    assert [(s["session"], s["worker"], s["documents"]) for s in sessions] == [("s1", "w7", 1)]
    assert ids(found) == ["kept"]
    assert ids(planted)[0] == "glacier"


def test_a_changed_corpus_is_rebuilt_and_a_touched_one_is_not(tmp_path: Path, db: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", corpus_lines(50))
    agent = start_rag(tmp_path, db, corpus)
    try:
        wait_ready(agent.client)
        open_session(agent.client, "s1")
        agent.client.call(
            "rag.index", session="s1", documents=[{"id": "p", "text": "session pangolin"}]
        )
    finally:
        stop(agent)

    os.utime(corpus, ns=(1_000_000_000, 1_000_000_000))
    agent = start_rag(tmp_path, db, corpus)
    try:
        touched = wait_ready(agent.client)
    finally:
        stop(agent)

    with corpus.open("a", encoding="utf-8") as file:
        file.write(json.dumps({"id": "new", "text": "a freshly added pangolin"}) + "\n")
    agent = start_rag(tmp_path, db, corpus)
    try:
        changed = wait_ready(agent.client)
        found = agent.client.call("rag.search", query="pangolin", session="s1").data
    finally:
        stop(agent)

    assert touched["rebuilt"] is False
    assert touched["documents"] == 55
    assert changed["rebuilt"] is True
    assert changed["documents"] == 56
    assert sorted(ids(found)) == ["new", "p"]


def test_concurrent_searches_and_writes(client: AgentClient, rag: Agent) -> None:
    open_session(client, "w")
    failures: list[Any] = []

    def search() -> None:
        own = AgentClient(rag.url, rag.token)
        try:
            for _ in range(20):
                reply = own.call("rag.search", query=PLANTED["endgame"][2], session="w")
                if reply.status != 200 or ids(reply.data)[0] != "endgame":
                    failures.append(reply.body)
        finally:
            own.close()

    threads = [threading.Thread(target=search) for _ in range(8)]
    for thread in threads:
        thread.start()
    for batch in range(10):
        documents = [{"id": f"{batch}-{n}", "text": f"filler {n}"} for n in range(500)]
        assert client.call("rag.index", session="w", documents=documents).status == 200
    for thread in threads:
        thread.join()

    assert failures == []
    assert client.call("rag.stats", session="w").data["session"]["documents"] == 5000
