"""Integration fixtures: the real Docker engine, the images, a shared server."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from .support import STARTED_SERVER_IDS, ServerProcess, checked, start_server

NAMESPACE = os.environ.get("SANDBOX_IMAGE_NAMESPACE", "sandbox")
"""The servers the tests start use the images of this namespace (a setting)."""
IMAGES = tuple(f"{NAMESPACE}/{name}:latest" for name in ("shell", "desktop", "rag"))


def _docker_client() -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except docker.errors.DockerException:
        return None
    return client


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session", autouse=True)
def no_container_leaks() -> Iterator[None]:
    """After the whole integration run, no container of ours is left that was not there."""
    client = _docker_client()
    if client is None:
        yield
        return
    mine = {"label": "sandbox.managed"}
    before = {c.id for c in client.containers.list(all=True, filters=mine)}
    yield
    leaked = [
        c.name
        for c in client.containers.list(all=True, filters=mine)
        if c.id not in before and c.labels.get("sandbox.server") in STARTED_SERVER_IDS
    ]
    client.close()
    assert leaked == [], f"the integration tests leaked containers: {leaked}"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = _docker_client()
    if client is None:
        pytest.skip("no Docker engine answers (start dockerd to run integration tests)")
    missing = []
    for image in IMAGES:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            missing.append(image)
    if missing:
        pytest.fail(
            f"images {', '.join(missing)} are missing: run `sandbox images build` (.ci/run does it)"
        )
    yield client
    client.close()


@pytest.fixture(scope="module")
def server(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server shared by a test module; proves at the end that nothing leaked."""
    with checked(docker_client, start_server(tmp_path_factory.mktemp("server"))) as proc:
        yield proc


@pytest.fixture(scope="module")
def networked_server(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Like `server`, but callers may ask for network (off by default)."""
    env = {"SANDBOX_CEILINGS__ALLOW_NETWORK": "true"}
    with checked(docker_client, start_server(tmp_path_factory.mktemp("server"), env=env)) as proc:
        yield proc


@pytest.fixture
def worker_id() -> str:
    return f"w-{secrets.token_hex(3)}"
