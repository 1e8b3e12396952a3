"""Swarm services as the swarm runtime's containers, both ways.

A `ContainerSpec` becomes the keyword arguments of one ``create_service`` call
(`service_kwargs`); a service and its newest task read back as a
`ContainerRecord` (`service_record`). The one Docker call made here is the
image's (`image_reference`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import docker.errors
import docker.types

from .base import (
    AGENT_TOKEN_FILE,
    LABEL_MANAGED,
    LABEL_RESOURCE,
    LABEL_SERVER,
    LABEL_SERVICE,
    ContainerRecord,
    ContainerSpec,
)

AGENT_PORT = 8765
"""The port every agent listens on, on its overlay address."""
STOP_GRACE_NS = 2_000_000_000
# Task states on a node, on the way to running. Until the task runs its overlay
# address is not up, and a connection to it waits for the kernel's SYN retransmit
# instead of being refused: the agent is asked only once the task runs.
STARTING = frozenset({"assigned", "accepted", "preparing", "ready", "starting"})
ON_A_NODE = STARTING | {"running"}
FAILED = frozenset({"failed", "rejected", "orphaned", "remove", "shutdown", "complete"})
_MAX_NAME = 57
_SIZE = re.compile(r"(?:^|,)size=(\d+)")


def service_name(name: str) -> str:
    """`name` as a service name: letters, digits and dashes, at most 57 characters
    (its secret's name adds ``.token`` within Swarm's 64), cut ones kept apart by a hash."""
    safe = re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-") or "sandbox"
    if len(safe) <= _MAX_NAME:
        return safe
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{safe[: _MAX_NAME - 11].rstrip('-')}-{digest}"


def image_reference(api: Any, image: str, registry: str) -> str:
    """What a service runs: the image's id on the manager (no node pulls it), or with
    a `registry` ``<registry>/<image>``, by the digest the manager pushed when it has
    one. Blocking: one call on the manager's low-level API client `api`."""
    if not registry:
        return str(api.inspect_image(image)["Id"])
    reference = f"{registry}/{image}"
    name, _, tag = reference.rpartition(":")
    repository = name if "/" not in tag else reference  # a tag, not the port
    try:
        digests = api.inspect_image(reference).get("RepoDigests") or []
    except docker.errors.ImageNotFound:
        return reference  # pushed from elsewhere: the tag
    pinned = [str(d) for d in digests if str(d).startswith(f"{repository}@")]
    return pinned[0] if pinned else reference


def token_secret_reference(secret_id: str, secret_name: str) -> Any:
    """The token's secret as the agent reads it: root's file at `AGENT_TOKEN_FILE`."""
    return docker.types.SecretReference(
        secret_id, secret_name, filename=AGENT_TOKEN_FILE, uid="0", gid="0", mode=0o444
    )


def service_kwargs(
    spec: ContainerSpec,
    *,
    name: str,
    image: str,
    secret_refs: list[Any],
    network_id: str,
    reservation_fraction: float,
    placement: dict[str, list[str]],
) -> dict[str, Any]:
    """The ``create_service`` arguments of `spec`: one replica never restarted, its
    limits with `reservation_fraction` of them reserved, on the network `network_id`."""
    container = docker.types.ContainerSpec(
        image=image,
        command=spec.command,
        labels=spec.labels,
        env={
            **spec.environment,
            "SANDBOX_AGENT_HOST": "0.0.0.0",
            "SANDBOX_AGENT_PORT": str(AGENT_PORT),
        },
        mounts=service_mounts(spec),
        secrets=secret_refs,
        init=True,
        read_only=spec.read_only,
        cap_drop=["ALL"],
        cap_add=[f"CAP_{capability}" for capability in spec.capabilities] or None,
        stop_grace_period=STOP_GRACE_NS,
    )
    resources = docker.types.Resources(
        cpu_limit=spec.nano_cpus,
        mem_limit=spec.memory_bytes,
        cpu_reservation=int(spec.nano_cpus * reservation_fraction) or None,
        mem_reservation=int(spec.memory_bytes * reservation_fraction) or None,
    )
    resources.setdefault("Limits", {})["Pids"] = spec.pids_limit
    resource = spec.labels.get(LABEL_RESOURCE, "")
    task = docker.types.TaskTemplate(
        container,
        resources=resources,
        restart_policy=docker.types.RestartPolicy(condition="none"),
        placement=docker.types.Placement(constraints=placement.get(resource) or None),
        networks=[docker.types.NetworkAttachmentConfig(network_id)],
    )
    return {
        "task_template": task,
        "name": name,
        "labels": spec.labels,
        "mode": docker.types.ServiceMode("replicated", replicas=1),
        "endpoint_spec": docker.types.EndpointSpec(mode="dnsrr"),
    }


def service_mounts(spec: ContainerSpec) -> list[Any]:
    """The spec's volumes and tmpfs as service mounts (a bind source must exist on the node)."""
    mounts = []
    # A named volume is made by the node where the task runs; it gets the labels the
    # docker runtime's `ensure_volume` would give it, so it is found (and removed) alike.
    volume_labels = {
        key: value
        for key, value in spec.labels.items()
        if key in (LABEL_MANAGED, LABEL_SERVER, LABEL_SERVICE)
    }
    for source, mount in spec.volumes.items():
        kind = "bind" if source.startswith("/") else "volume"
        mounts.append(
            docker.types.Mount(
                mount["bind"],
                source,
                type=kind,
                read_only=mount.get("mode") == "ro",
                labels=volume_labels if kind == "volume" else None,
            )
        )
    for target, options in spec.tmpfs.items():
        size = _SIZE.search(options)
        mounts.append(
            docker.types.Mount(
                target,
                None,
                type="tmpfs",
                tmpfs_size=int(size.group(1)) if size else None,
                tmpfs_mode=0o1777,
            )
        )
    if spec.shm_size:
        mounts.append(docker.types.Mount("/dev/shm", None, type="tmpfs", tmpfs_size=spec.shm_size))
    return mounts


def secret_ids(service: dict[str, Any]) -> list[str]:
    """Ids of the secrets a service's spec mounts."""
    container = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
    return [str(ref["SecretID"]) for ref in container.get("Secrets") or []]


def network_targets(service: dict[str, Any]) -> list[str]:
    """Ids of the networks a service's spec attaches it to."""
    task = (service.get("Spec") or {}).get("TaskTemplate") or {}
    return [str(n["Target"]) for n in task.get("Networks") or [] if n.get("Target")]


def task_state(task: dict[str, Any] | None) -> str:
    """A task's state; ``new`` before Swarm has made one."""
    return str(((task or {}).get("Status") or {}).get("State", "new"))


def service_record(
    service: dict[str, Any],
    task: dict[str, Any] | None,
    node_down: bool,
) -> ContainerRecord:
    """What a service and its newest `task` (on a node that is down or not) say."""
    spec = service.get("Spec") or {}
    status = (task or {}).get("Status") or {}
    state = str(status.get("State") or "pending")
    if node_down and state in ON_A_NODE:
        state = "lost (its node is down)"
    elif state in STARTING:
        state = "starting"
    container_status = status.get("ContainerStatus") or {}
    exit_code = container_status.get("ExitCode") if state in FAILED else None
    return ContainerRecord(
        id=str(service["ID"]),
        name=str(spec.get("Name", "")),
        labels=dict(spec.get("Labels") or {}),
        status=state,
        exit_code=None if exit_code is None else int(exit_code),
        oom_killed=False,  # a task says only its exit code (137 when killed)
        agent_url=_agent_url(task, set(network_targets(service))),
        lost=node_down,
    )


def _agent_url(task: dict[str, Any] | None, networks: set[str]) -> str | None:
    """``http://<overlay address>:<agent port>`` of the task, once it has an address."""
    for attachment in (task or {}).get("NetworksAttachments") or []:
        network_id = ((attachment.get("Network") or {}).get("ID")) or ""
        if networks and network_id not in networks:
            continue
        for address in attachment.get("Addresses") or []:
            return f"http://{str(address).split('/')[0]}:{AGENT_PORT}"
    return None
