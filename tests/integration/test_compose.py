"""docker-compose.yml itself, through testcontainers' compose support.

The cluster runs under its own project name, server id, network and host port
(the compose file's SANDBOX_COMPOSE_* variables, given in an env file), so it
never meets a developer's `docker compose up` on 18890.

testcontainers' `DockerCompose` runs `docker compose` (Compose v2). Where only
v1 is installed (`docker-compose` 1.29, Debian's package), `Compose` below runs
that instead; the test then sticks to what both implement: `up --detach` (v1 has
no `up --wait`: the healthcheck is awaited here), `down --volumes`, `logs`, and
containers found through the engine by compose's labels (v1's `ps` has no JSON).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from testcontainers.compose import DockerCompose

from sandbox import HTTPClientConfig, HTTPServiceClient, Sandbox

from .deploy_support import (
    labelled,
    remove_everything_of,
    server_image_or_fail,
    server_process_status,
    wait_healthy,
)
from .support import STARTED_SERVER_IDS, free_port

REPO = Path(__file__).resolve().parents[2]
API_KEY = f"compose-{secrets.token_hex(16)}"
VARIABLES = (
    "COMPOSE_PROJECT_NAME",
    "SANDBOX_COMPOSE_SERVER_ID",
    "SANDBOX_COMPOSE_PORT",
    "SANDBOX_COMPOSE_NETWORK",
    "SANDBOX_COMPOSE_SESSION_NETWORK",
    "SANDBOX_COMPOSE_API_KEY",
    "SANDBOX_COMPOSE_SOCKET_DIR",
    "SANDBOX_COMPOSE_PROFILE",
    "SANDBOX_COMPOSE_NAMESPACE",
)


def compose_cli() -> list[str]:
    """`docker compose` when the v2 plugin is there, else `docker-compose` (v1)."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise AssertionError(
        "neither `docker compose` nor `docker-compose` is installed: install Docker "
        "Compose (scripts/setup.sh installs Debian's docker-compose)"
    )


@dataclass
class Compose(DockerCompose):
    """`DockerCompose` that runs the compose CLI given in `cli`."""

    cli: list[str] = field(default_factory=compose_cli)

    @cached_property
    def compose_command_property(self) -> list[str]:
        command = list(self.cli)
        for file in self.compose_file_name or []:
            command += ["-f", file]
        for env_file in self.env_file or []:
            command += ["--env-file", env_file]
        return command


@dataclass
class Cluster:
    compose: Compose
    project: str
    server_id: str
    network: str
    """The server's own network."""
    session_network: str
    """The network sessions with network join (never the server's)."""
    url: str
    down: bool = False

    def server_container(self, client: docker.DockerClient) -> docker.models.containers.Container:
        labels = [f"com.docker.compose.project={self.project}", "com.docker.compose.service=server"]
        (container,) = client.containers.list(all=True, filters={"label": labels})
        return container

    def project_containers(self, client: docker.DockerClient) -> list[str]:
        label = f"com.docker.compose.project={self.project}"
        return sorted(c.name for c in client.containers.list(all=True, filters={"label": label}))


@pytest.fixture(scope="module")
def cluster(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    server_image_or_fail(docker_client)  # else `up` builds it here, slowly
    token = secrets.token_hex(4)
    server_id, project, network = f"cmp-{token}", f"sandboxtest{token}", f"sandbox-test-{token}"
    session_network = f"sandbox-test-sessions-{token}"
    STARTED_SERVER_IDS.add(server_id)
    port = free_port()
    directory = tmp_path_factory.mktemp("compose")
    # The shipped profile, letting callers ask for network (off by default).
    profile = directory / "sandbox.yaml"
    profile.write_text(
        (REPO / "deploy" / "sandbox.yaml").read_text() + "\nceilings: {allow_network: true}\n"
    )
    profile.chmod(0o644)
    directory.chmod(0o755)  # the server reads the profile as uid 10001
    env_file = directory / "compose.env"
    env_file.write_text(
        f"COMPOSE_PROJECT_NAME={project}\n"
        f"SANDBOX_COMPOSE_SERVER_ID={server_id}\n"
        f"SANDBOX_COMPOSE_PORT={port}\n"
        f"SANDBOX_COMPOSE_NETWORK={network}\n"
        f"SANDBOX_COMPOSE_SESSION_NETWORK={session_network}\n"
        f"SANDBOX_COMPOSE_PROFILE={profile}\n"
        f"SANDBOX_COMPOSE_API_KEY={API_KEY}\n"
    )
    compose = Compose(
        context=str(REPO),
        compose_file_name="docker-compose.yml",
        env_file=str(env_file),
        wait=False,
    )
    state = Cluster(
        compose, project, server_id, network, session_network, f"http://127.0.0.1:{port}"
    )
    with pytest.MonkeyPatch.context() as env:
        for name in VARIABLES:  # the shell's values would win over the env file's
            env.delenv(name, raising=False)
        try:
            compose.start()
            wait_healthy(docker_client, state.server_container(docker_client).id)
            yield state
        finally:
            if not state.down:
                compose.stop()
            remove_everything_of(docker_client, server_id)
            for name in (network, session_network):
                with contextlib.suppress(docker.errors.NotFound):
                    docker_client.networks.get(name).remove()


def test_up_serves_the_api_on_loopback_from_an_unprivileged_server(
    docker_client: docker.DockerClient, cluster: Cluster
) -> None:
    server = cluster.server_container(docker_client)
    (binding,) = server.attrs["NetworkSettings"]["Ports"]["18890/tcp"]
    assert binding["HostIp"] == "127.0.0.1"
    assert list(server.attrs["NetworkSettings"]["Networks"]) == [cluster.network]
    assert server_process_status(docker_client, server.id)["Uid"].split()[0] == "10001"
    health = httpx.get(f"{cluster.url}/health", timeout=10).json()["data"]
    assert (health["status"], health["server_id"]) == ("ok", cluster.server_id)


def test_the_retrieval_service_comes_up_with_the_cluster(
    docker_client: docker.DockerClient, cluster: Cluster
) -> None:
    with Sandbox(server_url=cluster.url, api_key=API_KEY, worker_id="cmp-rag") as sb:
        assert sb.warmup_sync(["rag"], wait=True)["code"] == 0
        result = sb.execute_sync("rag:search", {"query": "JSON processor", "top_k": 2})
        assert result["code"] == 0, result
        assert result["data"]["results"]
    (service,) = docker_client.containers.list(
        filters={"label": ["sandbox.service=rag", f"sandbox.server={cluster.server_id}"]}
    )
    volumes = [m["Name"] for m in service.attrs["Mounts"] if m["Type"] == "volume"]
    assert volumes == [f"sandbox-rag-{cluster.server_id}"]  # the compose file's volume


def test_bash_through_the_cluster_with_and_without_network(
    docker_client: docker.DockerClient, cluster: Cluster
) -> None:
    with Sandbox(server_url=cluster.url, api_key=API_KEY, worker_id="cmp-bash") as sb:
        result = sb.execute_sync("bash:run", {"command": "echo hello from $(whoami)"})
        assert result["code"] == 0, result
        assert result["data"]["stdout"] == "hello from sandbox\n"
    with Sandbox(server_url=cluster.url, api_key=API_KEY, worker_id="cmp-net") as sb:
        assert sb.create_session_sync("bash", {"network": True})["status"] == "success"
        # The session cannot reach the API: not by the server's name, nor its address.
        server = cluster.server_container(docker_client)
        address = server.attrs["NetworkSettings"]["Networks"][cluster.network]["IPAddress"]
        probe = (
            "for h in server " + address + "; do "
            'timeout 3 bash -c "exec 3<>/dev/tcp/$h/18890" 2>/dev/null '
            "&& echo reached || echo blocked; done"
        )
        result = sb.execute_sync("bash:run", {"command": probe, "timeout": 20})
        assert result["code"] == 0, result
        assert result["data"]["stdout"] == "blocked\nblocked\n"
    (session,) = docker_client.containers.list(
        filters={"label": ["sandbox.worker=cmp-net", f"sandbox.server={cluster.server_id}"]}
    )
    assert list(session.attrs["NetworkSettings"]["Networks"]) == [cluster.session_network]
    assert not session.attrs["NetworkSettings"]["Ports"], "no agent port is published"


def test_a_crashed_server_comes_back_and_adopts_its_sessions(
    docker_client: docker.DockerClient, cluster: Cluster
) -> None:
    with Sandbox(server_url=cluster.url, api_key=API_KEY, worker_id="cmp-crash") as sb:
        assert sb.execute_sync("bash:run", {"command": "cd /tmp && export MARK=kept"})["code"] == 0
    server = cluster.server_container(docker_client)
    started = server.attrs["State"]["StartedAt"]
    # SIGKILL to the server process (the init's child): it cleans nothing up, the
    # container exits, and its restart policy starts a new server with the same id.
    kill = "import os; os.kill(int(open('/proc/1/task/1/children').read().split()[0]), 9)"
    server.exec_run(["python3", "-c", kill])
    deadline = time.monotonic() + 60
    while server.attrs["State"]["StartedAt"] == started and time.monotonic() < deadline:
        time.sleep(0.25)
        server.reload()
    assert server.attrs["State"]["StartedAt"] != started, "the server was not restarted"
    wait_healthy(docker_client, server.id)
    with Sandbox(server_url=cluster.url, api_key=API_KEY, worker_id="cmp-crash") as sb:
        result = sb.execute_sync("bash:run", {"command": "echo $PWD $MARK"})
        assert result["code"] == 0, result
        assert result["data"]["stdout"] == "/tmp kept\n"


def test_recordings_outlive_the_server_container(
    docker_client: docker.DockerClient, cluster: Cluster
) -> None:
    with Sandbox(server_url=cluster.url, api_key=API_KEY, worker_id="cmp-rec") as sb:
        assert sb.create_session_sync("bash", {"record": True})["status"] == "success"
        assert sb.execute_sync("bash:run", {"command": "echo kept"})["code"] == 0
        sb.destroy_session_sync("bash")
    old = cluster.server_container(docker_client)
    old.stop(timeout=90)  # SIGTERM: the recorder stores what it queued, then exits
    old.remove()
    cluster.compose.start()  # `up`: a new server container on the same volumes
    new = cluster.server_container(docker_client)
    assert new.id != old.id
    wait_healthy(docker_client, new.id)
    (mount,) = [m for m in new.attrs["Mounts"] if m["Destination"] == "/var/lib/sandbox"]
    assert mount["Name"] == f"sandbox-recordings-{cluster.server_id}"
    client = HTTPServiceClient(cluster.url, config=HTTPClientConfig(api_key=API_KEY))
    try:
        listed = client.list_trajectories_sync(worker_id="cmp-rec").raise_for_code().data
        (trajectory,) = listed["trajectories"]
        steps = client.get_trajectory_sync(trajectory["session_id"]).raise_for_code().data
        assert [s["data"]["stdout"] for s in steps["steps"]] == ["kept\n"]
    finally:
        client.close_sync()


def test_down_leaves_nothing_behind(docker_client: docker.DockerClient, cluster: Cluster) -> None:
    assert labelled(docker_client, cluster.server_id)  # sessions and the rag service
    cluster.compose.stop()  # `down --volumes`: SIGTERM to the server, which cleans up
    cluster.down = True
    assert labelled(docker_client, cluster.server_id) == []
    assert cluster.project_containers(docker_client) == []
    volumes = docker_client.volumes.list(filters={"label": f"sandbox.server={cluster.server_id}"})
    assert volumes == []
    with pytest.raises(docker.errors.NotFound):
        docker_client.networks.get(cluster.network)
