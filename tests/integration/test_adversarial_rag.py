"""rag sessions against a hostile neighbour, on the real engine and rag service.

A session that indexes passages full of another's query words must not move
that session's scores; one that holds its collection's writer must not hold up
anyone else; and what a session may index or get back is bounded.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import docker
import pytest

from sandbox import Sandbox
from sandbox.errors import ErrorCode

from .support import ServerProcess, checked, start_server

QUERY = "GNU Bourne Again shell command line editing"
# Room for the 1,000-passage flood below: each passage counts its text and its
# vector (1 KiB with the image's model).
SESSION_MAX_BYTES = 2_000_000
# Run in the service (a compromised neighbour, simulated): take the
# writer lock of one session's file, say so, hold it until the release file
# appears (docker exec's stdin cannot be relied on to stay open here).
RELEASE = "/tmp/rag-release-writer"
HOLD_WRITER = f"""
import os, sqlite3, sys, time
worker = sys.argv[1]
registry = sqlite3.connect("/data/index.sqlite3")
(cid,) = registry.execute("SELECT cid FROM sessions WHERE worker = ?", (worker,)).fetchone()
path = "/data/index.sqlite3.sessions/%d.sqlite3" % cid
conn = sqlite3.connect(path, isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
deadline = time.monotonic() + 120
while not os.path.exists("{RELEASE}") and time.monotonic() < deadline:
    time.sleep(0.05)
conn.execute("ROLLBACK")
"""


@pytest.fixture(scope="module")
def server(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server whose rag sessions may hold at most `SESSION_MAX_BYTES` each."""
    env = {"SANDBOX_RAG__SESSION_MAX_BYTES": str(SESSION_MAX_BYTES)}
    with checked(docker_client, start_server(tmp_path_factory.mktemp("server"), env=env)) as proc:
        yield proc


@pytest.fixture
async def pair(server: ServerProcess, worker_id: str) -> AsyncIterator[tuple[Sandbox, Sandbox]]:
    """Two workers' rag sessions in the one shared service."""
    async with (
        Sandbox(server_url=server.url, worker_id=f"{worker_id}-a") as a,
        Sandbox(server_url=server.url, worker_id=f"{worker_id}-b") as b,
    ):
        assert (await a.warmup(["rag"], wait=True))["code"] == 0
        for sb in (a, b):
            assert (await sb.create_session("rag"))["status"] == "success"
        yield a, b
        for sb in (a, b):
            await sb.destroy_session("rag")


def ok(envelope: dict[str, Any]) -> dict[str, Any]:
    assert envelope["code"] == 0, envelope
    data: dict[str, Any] = envelope["data"]
    return data


def scored(data: dict[str, Any]) -> list[tuple[str, float, str]]:
    return [(hit["id"], hit["score"], hit["collection"]) for hit in data["results"]]


def flood(count: int, prefix: str) -> list[dict[str, str]]:
    return [{"id": f"{prefix}{n}", "title": "bash shell", "text": QUERY} for n in range(count)]


async def test_a_neighbours_documents_leave_my_scores_unchanged(
    pair: tuple[Sandbox, Sandbox],
) -> None:
    a, b = pair
    ok(await a.execute("rag:index", {"documents": [{"id": "mine", "text": "shell notes"}]}))
    searches = [{"query": QUERY, "top_k": 10, "collection": c} for c in ("default", "all")]
    before = [ok(await a.execute("rag:search", search)) for search in searches]

    indexed = ok(await b.execute("rag:index", {"documents": flood(1000, "b")}))
    after = [ok(await a.execute("rag:search", search)) for search in searches]
    theirs = ok(await b.execute("rag:search", {"query": QUERY, "top_k": 10}))

    assert indexed["documents"] == 1000
    assert [scored(data) for data in after] == [scored(data) for data in before]
    assert {hit[2] for hit in scored(after[0])} == {"default"}
    assert {hit[2] for hit in scored(theirs)} == {"default", "session"}


async def test_a_held_neighbour_writer_blocks_no_one_else(
    pair: tuple[Sandbox, Sandbox], server: ServerProcess, docker_client: docker.DockerClient
) -> None:
    a, b = pair
    ok(await b.execute("rag:index", {"documents": flood(1, "b")}))
    service = _rag_container(docker_client, server.server_id)
    # The service's root has no capabilities: act as the index files' owner.
    owner = subprocess.run(
        ["docker", "exec", service, "stat", "-c", "%u", "/data/index.sqlite3"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    holder = subprocess.Popen(
        ["docker", "exec", "-u", owner, service, "python3", "-c", HOLD_WRITER, b.worker_id],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"  # the event: b's writer is taken
        blocked = asyncio.create_task(b.execute("rag:index", {"documents": flood(100, "c")}))
        shared = ok(await a.execute("rag:search", {"query": QUERY, "collection": "default"}))
        batch = ok(await a.execute("rag:batch_search", {"queries": [QUERY, "tar archive"]}))
        mine = ok(await a.execute("rag:index", {"documents": [{"id": "a1", "text": "zebra"}]}))
        found = ok(await a.execute("rag:search", {"query": "zebra", "collection": "session"}))
        pending = not blocked.done()
    finally:
        subprocess.run(["docker", "exec", "-u", owner, service, "touch", RELEASE], check=True)
        holder.wait(30)
        if holder.stdout is not None:
            holder.stdout.close()
    released = ok(await blocked)

    assert pending, "b's call waits for its own writer"
    assert shared["results"]
    assert batch["errors"] == [None, None]
    assert mine == {"indexed": 1, "documents": 1}
    assert [hit["id"] for hit in found["results"]] == ["a1"]
    assert released["documents"] == 101


async def test_a_session_cannot_index_past_its_bound(pair: tuple[Sandbox, Sandbox]) -> None:
    a, b = pair
    big = [{"id": f"x{n}", "text": "y" * 1000} for n in range(SESSION_MAX_BYTES // 1000 + 1)]

    refused = await a.execute("rag:index", {"documents": big})
    stats = ok(await a.execute("rag:stats", {}))
    neighbour = ok(await b.execute("rag:index", {"documents": big[:10]}))

    assert refused["code"] == ErrorCode.INVALID_PARAMS
    assert refused["data"]["field"] == "params.documents"
    assert f"at most {SESSION_MAX_BYTES}" in refused["message"]
    assert stats["session"]["documents"] == 0
    assert neighbour["documents"] == 10


async def test_hits_are_cut_to_max_chars(pair: tuple[Sandbox, Sandbox]) -> None:
    a, _ = pair
    full = ok(await a.execute("rag:search", {"query": QUERY, "top_k": 3}))
    cut = ok(await a.execute("rag:search", {"query": QUERY, "top_k": 3, "max_chars": 20}))
    bad = await a.execute("rag:search", {"query": QUERY, "max_chars": 0})
    too_many = await a.execute("rag:batch_search", {"queries": ["shell"] * 257})

    assert [hit["id"] for hit in cut["results"]] == [hit["id"] for hit in full["results"]]
    assert all(len(hit["text"]) <= 20 for hit in cut["results"])
    assert any(hit["truncated"] for hit in cut["results"])
    assert len(cut["context"]) < len(full["context"])
    assert (bad["code"], bad["data"]["field"]) == (ErrorCode.INVALID_PARAMS, "params.max_chars")
    assert too_many["data"]["field"] == "params.queries"


def _rag_container(client: docker.DockerClient, server_id: str) -> str:
    # By label, not image tag: images are named by SANDBOX_IMAGE_NAMESPACE.
    labels = [f"sandbox.server={server_id}", "sandbox.resource=rag"]
    for container in client.containers.list(filters={"label": labels}):
        return str(container.name)
    raise AssertionError("no rag service container")
