"""The server image as a container (testcontainers), driven by the `Sandbox` client.

The container gets the host's Docker socket, the host's socket directory at the
same path, and a Docker network of its own that no session joins (sessions with
network get the runtime's sessions network); it starts its session containers as
siblings, as docker-compose.yml runs it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import pytest

# The reaper's image cannot be pulled where no registry is reachable; the
# fixture removes what the test made, by its server id.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.wait_strategies import HealthcheckWaitStrategy

from sandbox import Sandbox

from .deploy_support import (
    DOCKER_SOCKET,
    SOCKET_ROOT,
    labelled,
    png_size,
    remove_everything_of,
    server_image_or_fail,
    server_process_status,
    socket_gid_groups,
    wait_for_health_endpoint,
)
from .support import STARTED_SERVER_IDS

PORT = 18890
API_KEY = f"image-{secrets.token_hex(16)}"


@dataclass
class ServerContainer:
    url: str
    server_id: str
    network: str
    """The server's own network."""
    session_network: str
    """Where sessions with network go (never the server's)."""
    container: DockerContainer

    @property
    def id(self) -> str:
        return str(self.container.get_wrapped_container().id)


@pytest.fixture(scope="module")
def server(docker_client: docker.DockerClient) -> Iterator[ServerContainer]:
    image = server_image_or_fail(docker_client)
    server_id = f"img-{secrets.token_hex(4)}"
    STARTED_SERVER_IDS.add(server_id)
    network = Network(docker_network_kw={"labels": {"sandbox.server": server_id}})
    network.create()
    session_network = f"sandbox-test-sessions-{server_id}"
    container = (
        DockerContainer(image)
        .with_command(["serve", "--warmup", "rag"])
        .with_env("SANDBOX_SERVER_ID", server_id)
        .with_env("SANDBOX_SESSION_NETWORK", session_network)
        .with_env("SANDBOX_CEILINGS__ALLOW_NETWORK", "true")
        # Listening beyond the container's loopback: the server wants a key.
        .with_env("SANDBOX_API_KEY", API_KEY)
        .with_env("SANDBOX_LOG_LEVEL", "info")
        .with_volume_mapping(DOCKER_SOCKET, DOCKER_SOCKET, "rw")
        .with_volume_mapping(str(SOCKET_ROOT), str(SOCKET_ROOT), "rw")
        .with_network(network)
        # Not `sandbox.server`: the server would remove its own container as an orphan.
        .with_kwargs(labels={"sandbox.test": server_id})
        # The image's own HEALTHCHECK: /health answers and Docker is reachable.
        .waiting_for(HealthcheckWaitStrategy().with_startup_timeout(90))
    )
    # Published on the host's loopback only, as the compose file does.
    container.ports[f"{PORT}/tcp"] = ("127.0.0.1", None)  # type: ignore[assignment]
    try:
        container.start()
        url = f"http://127.0.0.1:{container.get_exposed_port(PORT)}"
        wait_for_health_endpoint(url)
        yield ServerContainer(url, server_id, network.name, session_network, container)
    finally:
        container.stop()
        remove_everything_of(docker_client, server_id)
        network.remove()
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.networks.get(session_network).remove()


def test_the_server_runs_unprivileged_in_the_docker_socket_group(
    docker_client: docker.DockerClient, server: ServerContainer
) -> None:
    status = server_process_status(docker_client, server.id)
    uids = status["Uid"].split()
    groups = {int(g) for g in status["Groups"].split()}
    assert set(uids) == {"10001"}, status
    assert socket_gid_groups() <= groups
    health = wait_for_health_endpoint(server.url)
    assert health["status"] == "ok"
    assert health["docker"] == "ok"
    assert health["server_id"] == server.server_id


def test_a_bash_session_without_network_is_reached_through_its_socket(
    docker_client: docker.DockerClient, server: ServerContainer
) -> None:
    with Sandbox(server_url=server.url, api_key=API_KEY, worker_id="img-bash") as sb:
        first = sb.execute_sync("bash:run", {"command": "cd /tmp && echo made > note"})
        again = sb.execute_sync("bash:run", {"command": "cat note; pwd; whoami"})
        assert first["code"] == 0, first
        assert again["data"]["stdout"] == "made\n/tmp\nsandbox\n"
        # The server made the socket directory inside its container; the host sees it.
        session_dirs = list((SOCKET_ROOT / server.server_id).iterdir())
        assert session_dirs
        assert any((directory / "agent.sock").is_socket() for directory in session_dirs)
        (session,) = docker_client.containers.list(
            filters={"label": ["sandbox.worker=img-bash", f"sandbox.server={server.server_id}"]}
        )
        assert session.attrs["HostConfig"]["NetworkMode"] == "none"
        sb.destroy_session_sync("bash")


def test_a_session_with_network_joins_the_sessions_network_not_the_servers(
    docker_client: docker.DockerClient, server: ServerContainer
) -> None:
    with Sandbox(server_url=server.url, api_key=API_KEY, worker_id="img-net") as sb:
        created = sb.create_session_sync("code", {"network": True})
        assert created["status"] == "success", created
        result = sb.execute_sync("code:execute", {"code": "print(6 * 7)"})
        assert result["data"]["stdout"] == "42\n"
        (session,) = docker_client.containers.list(
            filters={"label": ["sandbox.worker=img-net", f"sandbox.server={server.server_id}"]}
        )
        assert list(session.attrs["NetworkSettings"]["Networks"]) == [server.session_network]
        assert not session.attrs["NetworkSettings"]["Ports"], "no agent port is published"
        assert session.attrs["HostConfig"]["ReadonlyRootfs"] is True
        sb.destroy_session_sync("code")


def test_a_desktop_session_takes_a_screenshot(server: ServerContainer) -> None:
    with Sandbox(server_url=server.url, api_key=API_KEY, worker_id="img-vm") as sb:
        created = sb.create_session_sync("vm", {"screen_size": [800, 600]})
        assert created["status"] == "success", created
        shot = sb.execute_sync("vm:screenshot")
        assert shot["code"] == 0, shot
        assert png_size(shot["data"]["image"]) == (800, 600)
        sb.destroy_session_sync("vm")


def test_the_retrieval_service_started_at_boot_answers(
    docker_client: docker.DockerClient, server: ServerContainer
) -> None:
    with Sandbox(server_url=server.url, api_key=API_KEY, worker_id="img-rag") as sb:
        warm = sb.warmup_sync(["rag"], wait=True)
        assert warm["code"] == 0, warm
        result = sb.execute_sync("rag:search", {"query": "command line JSON processor", "top_k": 3})
        assert result["code"] == 0, result
        assert any("json" in hit["title"].lower() for hit in result["data"]["results"])
    services = docker_client.containers.list(
        filters={"label": ["sandbox.service=rag", f"sandbox.server={server.server_id}"]}
    )
    assert len(services) == 1
    volumes = [m["Name"] for m in services[0].attrs["Mounts"] if m["Type"] == "volume"]
    assert volumes == [f"sandbox-rag-{server.server_id}"]


def test_sigterm_removes_every_session_and_service(
    docker_client: docker.DockerClient, server: ServerContainer
) -> None:
    with Sandbox(server_url=server.url, api_key=API_KEY, worker_id="img-last") as sb:
        assert sb.execute_sync("bash:run", {"command": "true"})["code"] == 0
    assert labelled(docker_client, server.server_id)  # a session and the rag service
    wrapped = server.container.get_wrapped_container()
    wrapped.stop(timeout=60)  # SIGTERM, then 60 s before SIGKILL
    wrapped.reload()
    logs = wrapped.logs(tail=20).decode(errors="replace")
    assert wrapped.attrs["State"]["ExitCode"] == 0, logs
    assert labelled(docker_client, server.server_id) == [], logs
    assert not [p for p in (SOCKET_ROOT / server.server_id).glob("*") if p.is_dir()]
