"""Integration fixtures: the real Docker engine, the images, a shared server."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from .support import ServerProcess, containers_of, remove_containers_of, start_server

IMAGES = ("sandbox/shell:latest", "sandbox/desktop:latest", "sandbox/rag:latest")


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
    proc = start_server(tmp_path_factory.mktemp("server"))
    try:
        yield proc
    finally:
        clean = proc.stop_gracefully()
        left = containers_of(docker_client, proc.server_id)
        remove_containers_of(docker_client, proc.server_id)
        assert clean, f"server exited with {proc.process.returncode}:\n{proc.log()}"
        assert left == [], f"SIGTERM left containers behind: {left}"


@pytest.fixture
def worker_id() -> str:
    return f"w-{secrets.token_hex(3)}"
