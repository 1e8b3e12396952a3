"""More swarm nodes on this one machine: Docker engines in containers, joined as workers.

Each node is Debian's docker.io in a container (image `swarm_node/Dockerfile`,
``<namespace>/swarm-node:latest``), privileged where the host's engine can grant
every capability, else given every capability it has and the host's cgroup v1
hierarchy. `worker_nodes` starts them, joins them to this engine's swarm as
workers, loads the given images into them (``docker save | docker load``, so the
ids stay the same) and, on the way out, removes their containers and volumes and
the nodes from the swarm. The multi-node tests (`test_swarm_nodes.py`) and
``scripts/bench_swarm.py --nodes N`` both use it.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import docker.models.containers

NAMESPACE = os.environ.get("SANDBOX_IMAGE_NAMESPACE", "sandbox")
NODE_IMAGE = f"{NAMESPACE}/swarm-node:latest"
NODE_LABEL = "sandbox.test-swarm-node"
NODE_CONTEXT = Path(__file__).parent / "swarm_node"
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


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll `check` every 0.5 s until it holds; fail naming `what` past `timeout`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g}s")
        time.sleep(0.5)


def _start_node(
    client: docker.DockerClient, name: str, token: str, manager: str, images: Sequence[str]
) -> Node:
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

    wait_for(f"the engine of {container.name}", engine_up, 60)
    container.reload()
    address = container.attrs["NetworkSettings"]["IPAddress"]
    joined = container.exec_run(
        ["docker", "swarm", "join", "--token", token, "--advertise-addr", address, manager]
    )
    assert joined.exit_code == 0, joined.output
    if images:
        # docker save | docker exec -i node docker load: the images keep their ids.
        with subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE) as save:
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


def node_image(client: docker.DockerClient) -> str:
    """The node image as `swarm_node/` says now (a second or two from the layer cache;
    an image built from an older Dockerfile lacks what the tests use, e.g. socat)."""
    client.images.build(path=str(NODE_CONTEXT), tag=NODE_IMAGE, rm=True)
    return NODE_IMAGE


@contextmanager
def worker_nodes(
    client: docker.DockerClient, count: int, images: Sequence[str]
) -> Iterator[list[Node]]:
    """`count` worker nodes joined to this engine's swarm (a manager), with `images`
    loaded; removed again (containers, volumes, swarm nodes) on the way out."""
    node_image(client)
    token = client.swarm.attrs["JoinTokens"]["Worker"]
    manager = f"{client.info()['Swarm']['NodeAddr']}:2377"
    names = [f"sandbox-swarm-node-{i}-{os.getpid()}" for i in range(count)]
    started: list[Node] = []
    try:
        with ThreadPoolExecutor(max(1, count)) as pool:
            futures = [
                pool.submit(_start_node, client, name, token, manager, images) for name in names
            ]
            for future in futures:
                with suppress(Exception):
                    started.append(future.result())
            for future in futures:
                future.result()  # the first failure, once every start is done
        yield started
    finally:
        _remove_nodes(client, names, started)


def _remove_nodes(client: docker.DockerClient, names: list[str], started: list[Node]) -> None:
    hostnames: set[str] = set()
    for name in names:
        with suppress(docker.errors.NotFound):
            container = client.containers.get(name)
            hostnames.add(str(container.id)[:12])
            container.remove(force=True, v=True)
    ids = {node.node_id for node in started}
    for node in client.nodes.list():
        if node.attrs["Spec"].get("Role") == "worker" and (
            node.id in ids
            or (
                node.attrs["Status"]["State"] == "down"
                and node.attrs["Description"]["Hostname"] in hostnames
            )
        ):
            with suppress(docker.errors.APIError):
                node.remove(force=True)
