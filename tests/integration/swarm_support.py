"""A swarm for the swarm runtime's tests: this machine's engine as its manager.

`manager_swarm` makes this engine a single-node swarm manager when it is not in a
swarm yet, and leaves that swarm again afterwards; a swarm that was already there
is used and left alone. `remove_swarm_state_of` removes what a server of the
tests made on it (services, their secrets, the relay), and waits until the
services' containers are gone too, since Swarm stops them after the service.
"""

from __future__ import annotations

import ipaddress
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import docker
import docker.errors

SWARM_NETWORKS = ("sandbox-swarm-sessions", "sandbox-swarm-agents")


@contextmanager
def manager_swarm(client: docker.DockerClient) -> Iterator[bool]:
    """This engine as a swarm manager; yields whether this call made the swarm."""
    swarm = client.info().get("Swarm") or {}
    made = False
    if swarm.get("LocalNodeState") == "inactive":
        gateway = _bridge_gateway(client)
        client.swarm.init(advertise_addr=gateway, listen_addr=f"{gateway}:2377")
        made = True
    elif not swarm.get("ControlAvailable"):
        raise RuntimeError("this engine is in a swarm but not a manager: cannot test the runtime")
    try:
        yield made
    finally:
        if made:
            for name in SWARM_NETWORKS:
                with suppress(docker.errors.APIError):
                    client.networks.get(name).remove()
            client.swarm.leave(force=True)


def _bridge_gateway(client: docker.DockerClient) -> str:
    """The host's address on the default bridge: nodes in containers reach it there."""
    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    if config.get("Gateway"):
        return str(config["Gateway"])
    return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))  # Docker takes the first


def services_of(client: docker.DockerClient, server_id: str) -> list[str]:
    """Names of the server's services."""
    found = client.services.list(filters={"label": f"sandbox.server={server_id}"})
    return sorted(str(service.name) for service in found)


def _containers(client: docker.DockerClient, label: str) -> list[dict[str, object]]:
    """The low-level list: no inspect per container, which races Swarm's own removals."""
    return list(client.api.containers(all=True, filters={"label": label}))


def remove_swarm_state_of(client: docker.DockerClient, server_id: str, wait: float = 30) -> None:
    """Remove the server's services, their secrets, its relay, volumes and overlays;
    wait for the services' containers to go first (a volume or network in use cannot
    be removed)."""
    label = f"sandbox.server={server_id}"
    for service in client.services.list(filters={"label": label}):
        with suppress(docker.errors.NotFound):
            service.remove()
    for secret in client.secrets.list(filters={"label": label}):
        with suppress(docker.errors.NotFound):
            secret.remove()
    deadline = time.monotonic() + wait
    while _containers(client, label):
        for container in _containers(client, label):
            labels = container.get("Labels") or {}
            if (isinstance(labels, dict) and labels.get("sandbox.relay")) or (
                time.monotonic() > deadline
            ):
                # Ours, or Swarm's that outstayed the wait: removing it may race
                # Swarm's own removal, which is fine.
                with suppress(docker.errors.APIError):
                    client.api.remove_container(container["Id"], force=True)
        if time.monotonic() > deadline + 10:
            break
        time.sleep(0.2)
    for volume in client.volumes.list(filters={"label": label}):  # a rag service's index
        with suppress(docker.errors.APIError):
            volume.remove(force=True)
    for network in client.networks.list(filters={"label": label}):  # sessions' own overlays
        with suppress(docker.errors.APIError):
            network.remove()
    # The server's own state on this host: its (empty) socket directory, claim key and
    # claim records.
    for path in Path("/tmp/sandbox-agents").glob(f"{server_id}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def networks_of(client: docker.DockerClient, server_id: str) -> list[str]:
    """Names of the networks the server made (each session's own overlay, and the
    spares it keeps ready)."""
    found = client.networks.list(filters={"label": f"sandbox.server={server_id}"})
    return sorted(str(network.name) for network in found)


def session_overlays_of(client: docker.DockerClient, server_id: str) -> list[str]:
    """Names of the server's networks that a service of the server is on (not spares)."""
    services = client.api.services(filters={"label": f"sandbox.server={server_id}"})
    used = {
        str(network["Target"])
        for service in services
        for network in service["Spec"]["TaskTemplate"].get("Networks") or []
    }
    found = client.networks.list(filters={"label": f"sandbox.server={server_id}"})
    return sorted(str(network.name) for network in found if network.id in used)


def wait_containers_gone(
    client: docker.DockerClient, server_id: str, wait: float = 30
) -> list[str]:
    """The server's containers still there after up to `wait` s (Swarm stops a removed
    service's container a moment after the service goes)."""
    label = f"sandbox.server={server_id}"
    deadline = time.monotonic() + wait
    while True:
        left = [str(c.get("Names")) for c in _containers(client, label)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def wait_networks_gone(
    client: docker.DockerClient, server_id: str, names: set[str] | None = None, wait: float = 15
) -> list[str]:
    """The server's networks (of `names`, if given) still there after up to `wait` s: a
    network removed from the swarm goes from this engine a moment later."""
    deadline = time.monotonic() + wait
    while True:
        left = [name for name in networks_of(client, server_id) if names is None or name in names]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)
