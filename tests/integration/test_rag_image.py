"""The rag image on its own, as a container under test (testcontainers)."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest

# The reaper's image cannot be pulled where no registry is reachable; each test
# removes its own container and volume (and the label lets anything missed be found).
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import HttpWaitStrategy

TOKEN = secrets.token_hex(8)
LABELS = {"sandbox.managed": "1", "sandbox.server": "testcontainers"}


@pytest.fixture
def volume(docker_client: docker.DockerClient) -> Iterator[str]:
    """A named volume for /data, removed afterwards."""
    created = docker_client.volumes.create(name=f"sandbox-rag-test-{secrets.token_hex(4)}")
    try:
        yield str(created.name)
    finally:
        created.remove(force=True)


def rag_container(volume: str) -> DockerContainer:
    return (
        DockerContainer("sandbox/rag:latest")
        .with_env("SANDBOX_AGENT_TOKEN", TOKEN)
        .with_exposed_ports(8765)
        .with_volume_mapping(volume, "/data", "rw")
        .with_kwargs(labels=LABELS)
        .waiting_for(HttpWaitStrategy(8765, "/health").for_status_code(200))
    )


def client_for(container: DockerContainer) -> httpx.Client:
    url = f"http://{container.get_container_host_ip()}:{container.get_exposed_port(8765)}"
    return httpx.Client(base_url=url, timeout=60)


def call(client: httpx.Client, tool: str, **params: Any) -> dict[str, Any]:
    response = client.post(
        f"/call/{tool}", json=params, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    return {"status": response.status_code, **response.json()}


def wait_ready(client: httpx.Client, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: dict[str, Any] = call(client, "rag.status")["data"]
        if status["state"] != "indexing":
            return status
        time.sleep(0.2)
    raise AssertionError(f"the demo corpus is still indexing after {timeout}s")


def top_ids(client: httpx.Client, query: str, **params: Any) -> list[str]:
    reply = call(client, "rag.search", query=query, **params)
    assert reply["status"] == 200, reply
    return [hit["id"] for hit in reply["data"]["results"]]


def test_demo_corpus_answers_and_the_index_survives_a_restart(volume: str) -> None:
    with rag_container(volume) as first, client_for(first) as client:
        health = client.get("/health").json()
        status = wait_ready(client)
        user = first.get_wrapped_container().exec_run(["id", "-un"]).output.decode().strip()
        curl = top_ids(client, "tool for transferring data from a server with URL syntax")
        jq = top_ids(client, "which package provides a command line JSON processor", top_k=3)
        refused = client.post("/call/rag.status", headers={"Authorization": "Bearer wrong"})
        call(client, "rag.open_session", session="s1", worker="w1")
        indexed = call(
            client,
            "rag.index",
            session="s1",
            documents=[
                {"id": "note", "title": "Field note", "text": "The okapi is a giraffid."},
                {"id": "other", "text": "Something else entirely."},
            ],
        )

    assert health["toolsets"] == ["agent", "rag"]
    assert "rag.search" in health["tools"]
    assert user == "sandbox"
    assert status["state"] == "ready"
    assert status["rebuilt"] is True
    assert status["corpus"] == "/opt/rag/demo-corpus.jsonl"
    assert 2000 <= status["documents"] <= 5000
    assert "curl" in curl[0]
    assert any("jq" in doc_id for doc_id in jq), jq
    assert refused.status_code == 401
    assert indexed["data"] == {"indexed": 2, "documents": 2}

    with rag_container(volume) as second, client_for(second) as client:
        # The index on the volume matches the image's corpus: ready without a rebuild.
        again = call(client, "rag.status")["data"]
        sessions = call(client, "rag.sessions")["data"]["sessions"]
        okapi = top_ids(client, "what kind of animal is an okapi", session="s1")
        still_curl = top_ids(client, "tool for transferring data from a server with URL syntax")

    assert again["state"] == "ready"
    assert again["rebuilt"] is False
    assert again["documents"] == status["documents"]
    assert [(s["session"], s["worker"], s["documents"]) for s in sessions] == [("s1", "w1", 2)]
    assert okapi[0] == "note"
    assert still_curl == curl
