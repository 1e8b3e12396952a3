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

from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from sandbox import Sandbox

from .support import start_server
from .swarm_nodes_support import NAMESPACE, Node, wait_for, worker_nodes
from .swarm_support import manager_swarm, remove_swarm_state_of, wait_containers_gone

SHELL_IMAGE = f"{NAMESPACE}/shell:latest"
WORKERS = 2


@pytest.fixture(scope="module")
def nodes() -> Iterator[tuple[docker.DockerClient, list[Node]]]:
    client = docker.from_env(timeout=120)
    try:
        with manager_swarm(client), worker_nodes(client, WORKERS, [SHELL_IMAGE]) as started:
            yield client, started
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

        wait_for("the killed node marked down", down, 90)
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
