"""rag sessions through a real server: one shared index service, private collections."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import docker
import pytest

from sandbox import Sandbox
from sandbox.errors import ErrorCode

from .support import ServerProcess, containers_of, remove_containers_of, start_server

PLANTED = [
    {
        "id": "planted-volcano",
        "title": "Volcanic eruptions",
        "text": "Magma rising through the crust erupts as lava; the ash cloud of a large "
        "eruption can cool the climate for years.",
    },
    {
        "id": "planted-bees",
        "title": "Honey bee navigation",
        "text": "Foraging bees tell their hive mates where flowers are with a waggle dance "
        "whose angle points along the direction of the sun.",
    },
]


@pytest.fixture
async def sb(server: ServerProcess, worker_id: str) -> AsyncIterator[Sandbox]:
    async with Sandbox(server_url=server.url, worker_id=worker_id) as sandbox:
        warm = await sandbox.warmup(["rag"], wait=True)
        assert warm["code"] == 0, warm
        yield sandbox
        await sandbox.client.disconnect()


def ids(envelope: dict[str, Any]) -> list[str]:
    assert envelope["code"] == 0, envelope
    return [hit["id"] for hit in envelope["data"]["results"]]


async def test_the_demo_corpus_answers(sb: Sandbox) -> None:
    found = await sb.execute("rag:search", {"query": "GNU Bourne Again shell", "top_k": 3})
    hits = found["data"]["results"]
    assert hits, found
    assert "bash" in (hits[0]["title"] + hits[0]["text"]).lower()
    assert hits == sorted(hits, key=lambda hit: -hit["score"])
    assert hits[0]["text"] in found["data"]["context"]


async def test_private_collections_rank_with_the_default_and_stay_private(
    sb: Sandbox, server: ServerProcess
) -> None:
    indexed = await sb.execute("rag:index", {"documents": PLANTED})
    assert indexed["code"] == 0, indexed
    assert indexed["data"]["indexed"] == 2
    query = {"query": "which dance do bees use to point hive mates toward flowers", "top_k": 5}
    assert ids(await sb.execute("rag:search", {**query, "collection": "session"}))[0] == (
        "planted-bees"
    )
    assert ids(await sb.execute("rag:search", query))[0] == "planted-bees"
    assert "planted-bees" not in ids(
        await sb.execute("rag:search", {**query, "collection": "default"})
    )
    async with Sandbox(server_url=server.url, worker_id=f"{sb.worker_id}-other") as other:
        assert "planted-bees" not in ids(await other.execute("rag:search", query))
        await other.destroy_session()
    stats = await sb.execute("rag:stats", {})
    assert stats["data"]["session"]["documents"] == 2
    assert stats["data"]["default"]["documents"] > 100

    await sb.destroy_session("rag")
    assert "planted-bees" not in ids(await sb.execute("rag:search", query)), "gone with it"


async def test_batch_search_keeps_order_and_reports_bad_queries(sb: Sandbox) -> None:
    await sb.execute("rag:index", {"documents": PLANTED})
    envelope = await sb.execute(
        "rag:batch_search",
        {"queries": ["lava and volcanic ash", "?!", "bee dance"], "collection": "session"},
    )
    assert envelope["code"] == 0, envelope
    results, errors = envelope["data"]["results"], envelope["data"]["errors"]
    assert [r[0]["id"] if r else None for r in results] == [
        "planted-volcano",
        None,
        "planted-bees",
    ]
    assert errors[0] is None
    assert errors[2] is None
    assert "queries.1" in errors[1]


async def test_bad_input_is_1002_naming_the_field(sb: Sandbox) -> None:
    empty = await sb.execute("rag:search", {"query": ""})
    assert (empty["code"], empty["data"]["field"]) == (ErrorCode.INVALID_PARAMS, "params.query")
    huge = await sb.execute("rag:search", {"query": "x", "top_k": 10_000})
    assert huge["data"]["field"] == "params.top_k"
    bad_doc = await sb.execute("rag:index", {"documents": [{"id": "x", "text": ""}]})
    assert bad_doc["data"]["field"] == "params.documents.0.text"
    bad_mode = await sb.execute("rag:search", {"query": "shell", "mode": "semantic"})
    assert (bad_mode["code"], bad_mode["data"]["field"]) == (
        ErrorCode.INVALID_PARAMS,
        "params.mode",
    )
    assert "mode" in bad_mode["message"]
    still = await sb.execute("rag:search", {"query": "shell"})
    assert still["code"] == 0
    assert still["data"]["mode"] == "bm25"


async def test_dense_and_hybrid_search_the_image_model_and_session_vectors_stay_private(
    sb: Sandbox, server: ServerProcess
) -> None:
    # A paraphrase sharing no content word with the planted passage.
    query = {"query": "insects that waggle to show their colony where blossoms are", "top_k": 5}
    stats = await sb.execute("rag:stats", {})
    assert str(stats["data"]["model"]).startswith("static-256-"), stats
    async with Sandbox(server_url=server.url, worker_id=f"{sb.worker_id}-other") as other:
        before = {
            mode: (await other.execute("rag:search", {**query, "mode": mode}))["data"]
            for mode in ("dense", "hybrid")
        }
        indexed = await sb.execute("rag:index", {"documents": PLANTED})
        assert indexed["code"] == 0, indexed
        own = await sb.execute("rag:search", {**query, "mode": "dense", "collection": "session"})
        mixed = await sb.execute("rag:search", {**query, "mode": "hybrid"})
        after = {
            mode: (await other.execute("rag:search", {**query, "mode": mode}))["data"]
            for mode in ("dense", "hybrid")
        }
        await other.destroy_session()

    assert own["data"]["mode"] == "dense"
    assert ids(own)[0] == "planted-bees"
    assert mixed["data"]["mode"] == "hybrid"
    assert "planted-bees" in ids(mixed)
    # The other worker's results, scores and all, did not move.
    assert after == before
    assert before["dense"]["results"], before
    assert all(hit["collection"] == "default" for hit in after["hybrid"]["results"])


def test_an_operator_corpus_and_a_crash_restart(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    distractors = [
        {"id": f"d{i}", "title": f"Note {i}", "text": f"Routine maintenance log entry {i}."}
        for i in range(300)
    ]
    corpus.write_text("\n".join(json.dumps(doc) for doc in [*distractors, *PLANTED]) + "\n")
    server = start_server(tmp_path, env={"SANDBOX_RAG__CORPUS": str(corpus)})
    try:
        with Sandbox(server_url=server.url, worker_id="corpus") as sb:
            # No warmup: the first call starts the service and waits for its index.
            hits = ids(sb.execute_sync("rag:search", {"query": "molten rock erupting"}))
            assert hits[0] == "planted-volcano"
            assert sb.warmup_sync(["rag"], wait=True)["code"] == 0
            status = sb.get_warmup_status_sync()["data"]["resources"]["rag"]
            assert status["service"]["state"] == "ready"
            assert status["service"]["documents"] == 302
            sb.execute_sync("rag:index", {"documents": [{"id": "mine", "text": "kept zebra"}]})
        server.stop(signal.SIGKILL)

        again = start_server(
            tmp_path, server_id=server.server_id, env={"SANDBOX_RAG__CORPUS": str(corpus)}
        )
        with Sandbox(server_url=again.url, worker_id="corpus") as sb:
            hits = ids(sb.execute_sync("rag:search", {"query": "zebra", "collection": "session"}))
            assert hits == ["mine"], "the session and its collection survived the crash"
        assert again.stop_gracefully()
        assert containers_of(docker_client, server.server_id) == []
    finally:
        remove_containers_of(docker_client, server.server_id)
