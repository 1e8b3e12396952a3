"""The swarm runtime across nodes, on this one machine.

Two more Docker engines (Debian's docker.io in containers, privileged where the
host's engine can grant every capability, image
`swarm_node/Dockerfile`) join this engine's swarm as workers and get the shell
image loaded (same id, no registry). A real swarm server spreads sessions over
the three nodes and reaches every agent over the overlay through its relay;
then one worker node is killed: its session is reported lost (1003) and comes
back fresh on a live node, while the others keep working. Nothing is left: the
server's services, the node containers and their volumes, the nodes in the swarm.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest

from sandbox import Sandbox

from .support import start_server
from .swarm_support import manager_swarm, remove_swarm_state_of, wait_containers_gone

NAMESPACE = os.environ.get("SANDBOX_IMAGE_NAMESPACE", "sandbox")
SHELL_IMAGE = f"{NAMESPACE}/shell:latest"
NODE_IMAGE = f"{NAMESPACE}/swarm-node:latest"
NODE_LABEL = "sandbox.test-swarm-node"
NODE_CONTEXT = Path(__file__).parent / "swarm_node"
WORKERS = 2
_CAPABILITY_NAMES = {24: "SYS_RESOURCE", 21: "SYS_ADMIN", 12: "NET_ADMIN", 16: "SYS_MODULE"}


def _missing_capabilities() -> list[str]:
    """Capabilities this process (as root beside the engine) lacks and a node cannot get."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            bounding = int(line.split()[1], 16)
            return [name for bit, name in _CAPABILITY_NAMES.items() if not bounding >> bit & 1]
    return []


_MISSING_CAPABILITIES = _missing_capabilities()


@dataclass
class Node:
    """A worker engine in a container, joined to the swarm."""

    container: docker.models.containers.Container
    node_id: str


def _wait(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g}s")
        time.sleep(0.5)


def _start_node(client: docker.DockerClient, index: int, token: str, manager: str) -> Node:
    name = f"sandbox-swarm-node-{index}-{os.getpid()}"
    # The host engine's storage driver is the one this kernel and filesystem allow.
    command = ["--storage-driver", str(client.info()["Driver"])]
    if not _MISSING_CAPABILITIES or Path("/sys/fs/cgroup/cgroup.controllers").exists():
        host_config = client.api.create_host_config(privileged=True)  # the usual way
    else:
        # `--privileged` asks for every capability and fails where the host's engine
        # lacks one: ask for all it has instead, and give the node the host's cgroup
        # v1 hierarchy, its containers' groups under a parent of their own.
        command.append(f"--cgroup-parent=/{name}")
        host_config = client.api.create_host_config(
            cap_add=["ALL"],
            cap_drop=_MISSING_CAPABILITIES,
            security_opt=["seccomp=unconfined", "apparmor=unconfined"],
            devices=["/dev/fuse"],
            binds={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
        )
        host_config.update(
            MaskedPaths=[], ReadonlyPaths=[]
        )  # --security-opt systempaths=unconfined
    created = client.api.create_container(
        NODE_IMAGE, command, name=name, labels={NODE_LABEL: "1"}, host_config=host_config
    )
    client.api.start(created["Id"])
    container = client.containers.get(created["Id"])

    def engine_up() -> bool:
        return int(container.exec_run(["docker", "info"]).exit_code) == 0

    _wait(f"the engine of {container.name}", engine_up, 60)
    container.reload()
    address = container.attrs["NetworkSettings"]["IPAddress"]
    joined = container.exec_run(
        ["docker", "swarm", "join", "--token", token, "--advertise-addr", address, manager]
    )
    assert joined.exit_code == 0, joined.output
    # docker save | docker exec -i node docker load: the image keeps its id.
    with subprocess.Popen(["docker", "save", SHELL_IMAGE], stdout=subprocess.PIPE) as save:
        load = subprocess.run(
            ["docker", "exec", "-i", str(container.name), "docker", "load"],
            stdin=save.stdout,
            capture_output=True,
            check=False,
            timeout=300,
        )
    assert save.returncode == 0
    assert load.returncode == 0, load.stderr
    info = container.exec_run(["docker", "info", "--format", "{{.Swarm.NodeID}}"])
    return Node(container, info.output.decode().strip())


@pytest.fixture(scope="module")
def nodes() -> Iterator[tuple[docker.DockerClient, list[Node]]]:
    client = docker.from_env(timeout=120)
    started: list[Node] = []
    try:
        with manager_swarm(client):
            try:
                client.images.get(NODE_IMAGE)
            except docker.errors.ImageNotFound:
                client.images.build(path=str(NODE_CONTEXT), tag=NODE_IMAGE, rm=True)
            swarm = client.swarm.attrs
            token = swarm["JoinTokens"]["Worker"]
            manager = f"{client.info()['Swarm']['NodeAddr']}:2377"
            try:
                with ThreadPoolExecutor(WORKERS) as pool:
                    futures = [
                        pool.submit(_start_node, client, i, token, manager) for i in range(WORKERS)
                    ]
                    started.extend(future.result() for future in futures)
                yield client, started
            finally:
                for container in client.containers.list(all=True, filters={"label": NODE_LABEL}):
                    container.remove(force=True, v=True)
                for node in client.nodes.list():
                    if node.attrs["Spec"].get("Role") == "worker" and (
                        node.id in {n.node_id for n in started}
                        or (
                            node.attrs["Status"]["State"] == "down"
                            and node.attrs["Description"]["Hostname"].startswith(
                                tuple(n.container.id[:12] for n in started)
                            )
                        )
                    ):
                        with suppress(docker.errors.APIError):
                            node.remove(force=True)
    finally:
        client.close()


def _node_of(client: docker.DockerClient, server_id: str, worker: str) -> str:
    (service,) = client.services.list(
        filters={"label": [f"sandbox.server={server_id}", f"sandbox.worker={worker}"]}
    )
    (task,) = service.tasks()
    return str(task["NodeID"])


def test_sessions_spread_over_nodes_and_a_killed_node_loses_only_its_own(
    nodes: tuple[docker.DockerClient, list[Node]], tmp_path: Path
) -> None:
    client, workers = nodes
    server = start_server(tmp_path, env={"SANDBOX_RUNTIME": "swarm"})
    names = [f"spread-{i}" for i in range(6)]
    try:
        placed: dict[str, str] = {}
        for name in names:
            with Sandbox(server_url=server.url, worker_id=name) as sb:
                result = sb.execute_sync("bash:run", {"command": "hostname"})
                assert result["code"] == 0, result
            placed[name] = _node_of(client, server.server_id, name)
        assert len(set(placed.values())) >= 2, placed  # the scheduler spread them

        victim = next(n for n in workers if n.node_id in placed.values())
        lost = [name for name, node in placed.items() if node == victim.node_id]
        kept = [name for name in names if name not in lost]
        victim.container.kill()

        def down() -> bool:
            return str(client.nodes.get(victim.node_id).attrs["Status"]["State"]) == "down"

        _wait("the killed node marked down", down, 90)
        for name in lost:
            answer = httpx.post(
                f"{server.url}/execute",
                json={"worker_id": name, "action": "bash:run", "params": {"command": "true"}},
                timeout=60,
            ).json()
            assert answer["code"] == 1003, answer
            assert "lost with its node" in answer["message"]
        for name in kept:
            with Sandbox(server_url=server.url, worker_id=name) as sb:
                assert sb.execute_sync("bash:run", {"command": "true"})["code"] == 0
        for name in lost:  # a fresh session, on a node that is up
            with Sandbox(server_url=server.url, worker_id=name) as sb:
                fresh = sb.execute_sync("bash:run", {"command": "echo fresh"})
                assert fresh["code"] == 0, fresh
            assert _node_of(client, server.server_id, name) != victim.node_id
        assert server.stop_gracefully(), server.log()
        left = [c for c in wait_containers_gone(client, server.server_id)]
        assert left == []
    finally:
        server.stop()
        remove_swarm_state_of(client, server.server_id)


def test_a_type_pinned_to_a_node_without_its_image_names_that_node(
    nodes: tuple[docker.DockerClient, list[Node]], tmp_path: Path
) -> None:
    client, workers = nodes
    (worker,) = [
        n for n in workers if client.nodes.get(n.node_id).attrs["Status"]["State"] == "ready"
    ][:1]
    node = client.nodes.get(worker.node_id)
    spec = node.attrs["Spec"]
    node.update({**spec, "Labels": {**spec.get("Labels", {}), "sandbox.test": "no-image"}})
    # Its containers first: an image a container still uses only loses its tag.
    worker.container.exec_run(["sh", "-c", "docker rm -f $(docker ps -aq) 2>/dev/null"])
    image_id = str(client.images.get(SHELL_IMAGE).id)
    removed = worker.container.exec_run(["docker", "rmi", "-f", image_id])
    assert removed.exit_code == 0, removed.output
    server = start_server(
        tmp_path,
        env={
            "SANDBOX_RUNTIME": "swarm",
            "SANDBOX_SWARM__PLACEMENT": '{"bash": ["node.labels.sandbox.test == no-image"]}',
        },
    )
    try:
        answer = httpx.post(
            f"{server.url}/session/create",
            json={"worker_id": "pinned", "resource_type": "bash"},
            timeout=120,
        ).json()
        assert answer["code"] != 0, answer
        hostname = node.attrs["Description"]["Hostname"]
        assert f"node {hostname} has no image {SHELL_IMAGE}" in answer["message"], answer
    finally:
        server.stop()
        remove_swarm_state_of(client, server.server_id)
