"""Images through a private registry on the manager, the registry way.

`scripts/swarm-registry.sh` runs Debian's docker-registry in a container published
on this host's 127.0.0.1 (any free port); `sandbox images build bash --push` tags
and pushes the shell image there. One worker node (a Docker engine in a
container, `swarm_nodes_support`) joins with *no* image loaded, and reaches the
registry as the same 127.0.0.1:PORT through a forwarder in its container
(127.0.0.1 is an insecure registry to every engine without configuration). A
swarm server with ``swarm.registry`` and bash pinned to that node starts a
session there: the node pulled the image from the registry, by the digest the
manager pushed. Everything is removed afterwards: registry container, volume and
tag, node, services.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import docker
import docker.errors
import pytest

from sandbox import Sandbox

from .support import start_server
from .swarm_nodes_support import NAMESPACE, worker_nodes
from .swarm_support import manager_swarm, remove_swarm_state_of

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "swarm-registry.sh"
SHELL_IMAGE = f"{NAMESPACE}/shell:latest"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[docker.DockerClient, str, str]]:
    """The registry's address as this host and its nodes reach it, and its bridge address."""
    client = docker.from_env(timeout=120)
    name = f"sandbox-test-registry-{tmp_path.name[-24:]}".replace("_", "-")
    env = {**os.environ, "SANDBOX_REGISTRY_NAME": name, "SANDBOX_IMAGE_NAMESPACE": NAMESPACE}
    try:
        started = subprocess.run(
            [str(SCRIPT), "start", "127.0.0.1:"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert started.returncode == 0, started.stderr
        address = started.stdout.strip().splitlines()[-1]
        assert address.startswith("127.0.0.1:"), started.stdout
        container = client.containers.get(name)
        bridge = str(container.attrs["NetworkSettings"]["IPAddress"])
        with manager_swarm(client):
            yield client, address, bridge
    finally:
        subprocess.run([str(SCRIPT), "purge"], env=env, capture_output=True, check=False)
        for image in client.images.list(name=f"127.0.0.1:*/{NAMESPACE}/*"):
            for tag in image.tags:
                if tag.startswith("127.0.0.1:"):
                    with suppress(docker.errors.APIError):
                        client.images.remove(tag, noprune=True)
        client.close()


def test_a_node_without_the_image_pulls_it_from_the_managers_registry(
    registry: tuple[docker.DockerClient, str, str], tmp_path: Path
) -> None:
    client, address, bridge = registry
    port = address.rsplit(":", 1)[1]
    pushed = subprocess.run(
        [sys.executable, "-m", "sandbox", "images", "build", "bash", "--push", address],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    reference = f"{address}/{SHELL_IMAGE}"
    assert f"pushed {reference}" in pushed.stdout
    digests = client.images.get(reference).attrs["RepoDigests"]
    assert digests, "the push gave the image no digest"

    with worker_nodes(client, 1, images=[]) as (node,):
        # The node reaches the registry as the same 127.0.0.1:PORT as this host.
        node.container.exec_run(
            ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr", f"TCP:{bridge}:5000"],
            detach=True,
        )
        swarm_node = client.nodes.get(node.node_id)
        spec = swarm_node.attrs["Spec"]
        swarm_node.update(
            {**spec, "Labels": {**spec.get("Labels", {}), "sandbox.test": "registry"}}
        )
        listed = node.container.exec_run(["docker", "images", "-q"]).output.decode()
        assert listed.strip() == "", listed  # nothing loaded: it must pull
        server = start_server(
            tmp_path,
            env={
                "SANDBOX_RUNTIME": "swarm",
                "SANDBOX_SWARM__REGISTRY": address,
                "SANDBOX_SWARM__PLACEMENT": '{"bash": ["node.labels.sandbox.test == registry"]}',
            },
        )
        try:
            with Sandbox(server_url=server.url, worker_id="pulled") as sb:
                result = sb.execute_sync("bash:run", {"command": "echo from-the-registry"})
                assert result["code"] == 0, result
                assert "from-the-registry" in result["data"]["stdout"]
            (service,) = client.services.list(
                filters={"label": f"sandbox.server={server.server_id}"}
            )
            image = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
            assert image in digests, (image, digests)  # pinned to what was pushed
            (task,) = service.tasks()
            assert task["NodeID"] == node.node_id
            pulled = node.container.exec_run(
                ["docker", "images", "--digests", "--format", "{{.Repository}}@{{.Digest}}"]
            ).output.decode()
            assert image in pulled.split(), pulled
        finally:
            server.stop()
            remove_swarm_state_of(client, server.server_id)
