"""Dense and hybrid retrieval: the embedder, the vectors kept with the index, the modes."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sandbox.agent.rag.embedder import MAX_EMBED_CHARS, ModelError, StaticEmbedder, load_embedder
from sandbox.agent.rag.fusion import hybrid

from .harness import Agent, AgentClient
from .test_rag import open_session, start_rag, stop, wait_ready, write_corpus
from .tiny_model import write_safetensors, write_tiny_model

DEFAULT_DOCUMENTS = [
    {"id": "cars", "title": "", "text": "car repair garage notes"},
    {"id": "bread", "title": "Bakery", "text": "bread loaf baking guide"},
    {"id": "sea", "title": "", "text": "ocean waves and the sea"},
    {"id": "music", "title": "", "text": "a melody for the song"},
]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_tiny_model(tmp_path / "model")


@pytest.fixture
def dense_rag(tmp_path: Path, model: Path) -> Iterator[Agent]:
    corpus = write_corpus(tmp_path / "corpus.jsonl", DEFAULT_DOCUMENTS)
    agent = start_rag(
        tmp_path, tmp_path / "data" / "index.sqlite3", corpus, {"SANDBOX_RAG_MODEL": str(model)}
    )
    try:
        assert wait_ready(agent.client)["state"] == "ready"
        yield agent
    finally:
        stop(agent)


@pytest.fixture
def client(dense_rag: Agent) -> AgentClient:
    return dense_rag.client


def search(client: AgentClient, **params: Any) -> dict[str, Any]:
    reply = client.call("rag.search", **params)
    assert reply.status == 200, reply.body
    data: dict[str, Any] = reply.data
    return data


def ids(data: dict[str, Any]) -> list[str]:
    return [hit["id"] for hit in data["results"]]


# -- the embedder ---------------------------------------------------------------------


def test_texts_of_one_meaning_get_near_vectors(model: Path) -> None:
    embedder = StaticEmbedder(str(model))

    vectors = embedder.embed(["automobile fixing", "car repair garage", "bread loaf"])

    assert vectors.shape == (3, embedder.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.9
    assert abs(vectors[0] @ vectors[2]) < 0.1


def test_a_text_without_tokens_is_a_zero_vector_and_a_long_one_is_cut(model: Path) -> None:
    embedder = StaticEmbedder(str(model))
    head = "car " * (MAX_EMBED_CHARS // 4)

    vectors = embedder.embed(["", "   ", head + "bread " * 1000, "car"])

    assert not vectors[0].any()
    assert not vectors[1].any()
    # Only the first MAX_EMBED_CHARS characters count: the bread after them does not.
    assert vectors[2] @ vectors[3] > 0.99


def test_many_texts_embed_as_each_alone(model: Path) -> None:
    embedder = StaticEmbedder(str(model))
    texts = [f"car {'bread ' * (n % 7)}sea" for n in range(500)]

    together = embedder.embed(texts)
    alone = np.vstack([embedder.embed([text]) for text in texts[:20]])

    assert np.allclose(together[:20], alone, atol=1e-6)


def test_the_model_name_changes_with_its_weights(tmp_path: Path) -> None:
    first = StaticEmbedder(str(write_tiny_model(tmp_path / "a", seed=1)))
    second = StaticEmbedder(str(write_tiny_model(tmp_path / "b", seed=2)))

    assert first.name != second.name
    assert first.name == StaticEmbedder(str(tmp_path / "a")).name


@pytest.mark.parametrize(
    "content",
    [b"", b"\xff" * 8, struct.pack("<Q", 5) + b"notjs", struct.pack("<Q", 2) + b"{}"],
)
def test_a_broken_weights_file_is_a_model_error(model: Path, content: bytes) -> None:
    (model / "embeddings.safetensors").write_bytes(content)

    with pytest.raises(ModelError):
        StaticEmbedder(str(model))


def test_weights_shorter_than_their_shape_are_refused(model: Path) -> None:
    path = model / "embeddings.safetensors"
    write_safetensors(path, np.ones((4, 3), dtype=np.float32), dtype="F32")
    path.write_bytes(path.read_bytes()[:-8])

    with pytest.raises(ModelError, match="do not fill"):
        StaticEmbedder(str(model))


def test_a_missing_model_says_why(tmp_path: Path) -> None:
    assert load_embedder(None) == (None, "no embedding model is configured (SANDBOX_RAG_MODEL)")
    embedder, why = load_embedder(str(tmp_path / "nowhere"))
    assert embedder is None
    assert why is not None
    assert "does not exist" in why


# -- fusion -------------------------------------------------------------------------------


def test_hybrid_fusion_adds_the_ranks_of_both_lists() -> None:
    lexical = [(1, 9.0), (2, 8.0), (3, 7.0)]
    dense = [(3, 0.9), (4, 0.8), (1, 0.1)]

    fused = hybrid(lexical, dense, 3)

    # 1: 1/61 + 1/63 and 3: 1/63 + 1/61 tie (BM25's first wins); then 2 and 4
    # tie at 1/62 (BM25's again).
    assert [rowid for rowid, _ in fused] == [1, 3, 2]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 63)
    assert hybrid(lexical, [], 5) == [(r, 1 / (60 + n)) for n, (r, _) in enumerate(lexical, 1)]


# -- modes through the agent -----------------------------------------------------------------


def test_dense_finds_a_paraphrase_that_shares_no_word(client: AgentClient) -> None:
    query = "automobile fixing"

    lexical = search(client, query=query)
    dense = search(client, query=query, mode="dense", top_k=2)

    assert lexical["mode"] == "bm25"
    assert ids(lexical) == []
    assert dense["mode"] == "dense"
    assert ids(dense)[0] == "cars"
    assert dense["results"][0]["score"] > 0.9
    assert dense["results"][0]["text"] == "car repair garage notes"


def test_hybrid_holds_what_either_ranking_found(client: AgentClient) -> None:
    data = search(client, query="serpent melody", mode="hybrid", top_k=4)

    # "melody" matches the music passage's words; "serpent" matches nothing, but
    # its meaning is no passage's either: the music passage comes first.
    assert data["mode"] == "hybrid"
    assert ids(data)[0] == "music"


def test_batch_search_takes_a_mode_and_says_it(client: AgentClient) -> None:
    reply = client.call(
        "rag.batch_search", queries=["automobile fixing", "marine", "!!!"], mode="dense", top_k=1
    )

    assert reply.data["mode"] == "dense"
    assert [[hit["id"] for hit in hits] for hits in reply.data["results"]] == [
        ["cars"],
        ["sea"],
        [],
    ]
    assert reply.data["errors"][2] is not None


def test_a_bad_mode_is_refused_naming_mode(client: AgentClient) -> None:
    for tool, params in (
        ("rag.search", {"query": "car"}),
        ("rag.batch_search", {"queries": ["car"]}),
    ):
        reply = client.call(tool, **params, mode="semantic")

        assert reply.status == 400, reply.body
        assert reply.error["field"] == "mode"
        assert "mode" in reply.error["message"]


def test_without_a_model_dense_is_refused_and_bm25_still_answers(
    tmp_path: Path,
) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", DEFAULT_DOCUMENTS)
    agent = start_rag(tmp_path, tmp_path / "index.sqlite3", corpus)
    try:
        wait_ready(agent.client)
        refused = agent.client.call("rag.search", query="car", mode="hybrid")
        plain = agent.client.call("rag.search", query="car").data
        stats = agent.client.call("rag.stats").data
    finally:
        stop(agent)

    assert refused.status == 400
    assert refused.error["field"] == "mode"
    assert "SANDBOX_RAG_MODEL" in refused.error["message"]
    assert plain["mode"] == "bm25"
    assert ids(plain) == ["cars"]
    assert stats["model"] is None


def test_session_vectors_are_private_and_change_no_one_elses_results(
    client: AgentClient,
) -> None:
    open_session(client, "a")
    open_session(client, "b")
    query = {"query": "automobile", "mode": "dense", "top_k": 4}
    before = search(client, **query, session="b")

    indexed = client.call(
        "rag.index", session="a", documents=[{"id": "a-car", "text": "vehicle vehicle car"}]
    )
    assert indexed.status == 200, indexed.body
    own = search(client, **query, session="a")
    other = search(client, **query, session="b")
    hybrid_other = search(client, **{**query, "mode": "hybrid"}, session="b")

    assert ids(own)[0] == "a-car"
    assert own["results"][0]["collection"] == "session"
    assert other == before
    assert "a-car" not in ids(hybrid_other)


def test_a_replaced_passage_is_found_by_its_new_meaning(client: AgentClient) -> None:
    open_session(client, "s")
    client.call("rag.index", session="s", documents=[{"id": "p", "text": "ocean waves"}])
    assert ids(search(client, query="sea", mode="dense", session="s", collection="session")) == [
        "p"
    ]

    client.call("rag.index", session="s", documents=[{"id": "p", "text": "bread loaf"}])

    now = search(client, query="bakery", mode="dense", session="s", collection="session")
    assert ids(now) == ["p"]
    assert now["results"][0]["score"] > 0.9
    gone = search(client, query="sea", mode="dense", session="s", collection="session")
    assert gone["results"][0]["score"] < 0.1


def test_a_sessions_vectors_count_against_its_byte_bound(tmp_path: Path, model: Path) -> None:
    agent = start_rag(
        tmp_path,
        tmp_path / "index.sqlite3",
        None,
        {"SANDBOX_RAG_MODEL": str(model), "SANDBOX_RAG_SESSION_MAX_BYTES": "100"},
    )
    try:
        open_session(agent.client, "s")
        dim = StaticEmbedder(str(model)).dim
        kept = agent.client.call("rag.index", session="s", documents=[{"id": "1", "text": "car"}])
        stats = agent.client.call("rag.stats", session="s").data
        refused = agent.client.call(
            "rag.index", session="s", documents=[{"id": str(n), "text": "sea"} for n in range(9)]
        )
    finally:
        stop(agent)

    assert kept.status == 200, kept.body
    assert stats["session"]["bytes"] == len("car") + dim * 4
    assert refused.status == 400
    assert refused.error["field"] == "documents"


def test_vectors_are_reused_after_a_restart_and_remade_for_another_model(
    tmp_path: Path, model: Path
) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", DEFAULT_DOCUMENTS)
    db = tmp_path / "data" / "index.sqlite3"

    def run(model_dir: Path) -> tuple[dict[str, Any], list[str]]:
        agent = start_rag(tmp_path, db, corpus, {"SANDBOX_RAG_MODEL": str(model_dir)})
        try:
            status = wait_ready(agent.client)
            found = ids(search(agent.client, query="automobile", mode="dense", top_k=1))
        finally:
            stop(agent)
        return status, found

    first, _ = run(model)
    again, found_again = run(model)
    other, found_other = run(write_tiny_model(tmp_path / "other", seed=5))

    assert first["rebuilt"] is True
    assert again["rebuilt"] is False
    assert found_again == ["cars"]
    assert other["rebuilt"] is True
    assert found_other == ["cars"]


def test_a_sessions_vectors_of_another_model_are_dropped_not_compared(
    tmp_path: Path, model: Path
) -> None:
    db = tmp_path / "data" / "index.sqlite3"
    # Another model in which "car" means what "bread" means in the first.
    swapped = write_tiny_model(
        tmp_path / "swapped", [("car", "bread", "loaf"), ("ocean", "sea"), ("music", "song")]
    )

    def run(model_dir: Path, index: bool) -> tuple[list[str], list[str]]:
        agent = start_rag(tmp_path, db, None, {"SANDBOX_RAG_MODEL": str(model_dir)})
        try:
            if index:
                open_session(agent.client, "s")
                agent.client.call(
                    "rag.index", session="s", documents=[{"id": "p", "text": "car repair"}]
                )
            where = {"session": "s", "collection": "session", "top_k": 3}
            dense = ids(search(agent.client, query="bread", mode="dense", **where))
            lexical = ids(search(agent.client, query="car", **where))
        finally:
            stop(agent)
        return dense, lexical

    first_dense, _ = run(model, index=True)
    later_dense, later_lexical = run(swapped, index=False)

    assert first_dense == ["p"]  # a tiny collection: the one passage, however far
    assert later_dense == []  # no vector of the old model is compared
    assert later_lexical == ["p"]
