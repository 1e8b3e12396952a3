"""Container specs of session and service containers: labels, agent environment, limits."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..backends import ResourceType
from ..config import ResourceLimits, Settings, parse_memory
from ..errors import InvalidParams
from ..runtime.docker import (
    AGENT_CAPABILITIES,
    AGENT_TOKEN_FILE,
    AGENT_TOKEN_FILE_ENV,
    LABEL_MANAGED,
    LABEL_RESOURCE,
    LABEL_SERVER,
    LABEL_TOKEN,
    ContainerSpec,
)
from ..runtime.sockets import SocketDirs

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

SESSION_HOME = "/home/sandbox"
DISK_MOUNT = "/home"
"""The one tmpfs of a session's disk quota. The images make ``/tmp`` and
``/var/tmp`` symlinks to ``/home/.tmp`` and ``/home/.var-tmp``, and the agent
creates those two (root's, 1777) and the home (the session user's) at start, so
every writable directory shares one quota: filling them all ends in ENOSPC."""
WRITABLE_DIRS = (SESSION_HOME, "/tmp", "/var/tmp")
"""Every directory the session user can write in the shell and desktop images
(measured: ``find / -xdev -perm -0002 -type d`` plus the home); with the root
filesystem read-only, all of them live in `DISK_MOUNT`. (``/run/lock`` stays
read-only; ``/dev/shm`` is Docker's own 64 MB tmpfs.)"""


def container_name(*parts: str) -> str:
    """A Docker-safe container name ``sandbox-<part>-<part>...``."""
    return "-".join(["sandbox", *(_UNSAFE.sub("-", part) for part in parts)])


@dataclass(frozen=True)
class ContainerRequest:
    """What a caller asks of an agent container.

    `AgentContainers.start` adds the image, the socket directory and (for a
    session container) its uid, and `build_spec` what every container gets.

    Attributes:
        name: The container's name (see `container_name`).
        token: The agent's token.
        limits: Memory, cpus, pids and (for a session) the disk quota.
        network: Whether the container has a network.
        labels: Labels besides the managed, server, resource and token ones.
        environment: The agent's environment besides its own settings.
        volumes: Mounts besides the socket directory.
        image: The image short name; None: the resource type's own.
    """

    name: str
    token: str
    limits: ResourceLimits
    network: bool
    labels: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    image: str | None = None


def cgroup_memory(resource: ResourceType, limits: ResourceLimits) -> int:
    """Bytes of a container's memory cgroup limit, as `build_spec` sets it.

    A session's tmpfs disk quota is RAM charged to its cgroup, so a session
    container's limit is memory plus disk; a shared service has no quota.
    """
    memory = parse_memory(limits.memory)
    return memory if resource.shared else memory + parse_memory(limits.disk)


def build_spec(
    settings: Settings,
    resource: ResourceType,
    request: ContainerRequest,
    *,
    image: str,
    socket_dir: Path | None,
) -> ContainerSpec:
    """The spec of a container running `resource`'s agent, as `request` asks.

    Every container gets the managed/server/resource labels, its own agent token
    (in a file only the agent reads, and in a label for a restarted server), the
    agent's settings and `socket_dir` mounted for its agent's socket (None: the
    runtime reaches agents over TCP, where they listen by default); the
    request's labels, environment and volumes add to them.

    A session container (not a shared service) also gets its disk quota: a
    read-only root filesystem and one tmpfs of ``limits.disk`` at `DISK_MOUNT`,
    which holds every one of `WRITABLE_DIRS`. tmpfs pages count against the
    container's memory cgroup, so its memory limit is ``limits.memory +
    limits.disk`` (`cgroup_memory`): files up to the quota never take memory the
    processes were promised, and a write past the quota fails with ENOSPC
    instead of meeting the OOM killer.
    """
    limits = request.limits
    socket_env, socket_volume = SocketDirs.mount(socket_dir) if socket_dir else ({}, {})
    tmpfs, quota_env = _disk_quota(resource, limits)
    return ContainerSpec(
        image=image,
        name=request.name,
        labels={
            LABEL_MANAGED: "1",
            LABEL_SERVER: settings.server_id,
            LABEL_RESOURCE: resource.name,
            LABEL_TOKEN: request.token,
            **request.labels,
        },
        environment={
            **request.environment,
            **socket_env,
            **quota_env,
            AGENT_TOKEN_FILE_ENV: AGENT_TOKEN_FILE,
            "SANDBOX_OUTPUT_LIMIT": str(settings.output_limit_bytes),
            "SANDBOX_AGENT_TOOLSETS": ",".join(resource.toolsets),
        },
        memory_bytes=cgroup_memory(resource, limits),
        nano_cpus=_nano_cpus(limits.cpus),
        pids_limit=limits.pids,
        network=request.network,
        volumes={**request.volumes, **socket_volume},
        token=request.token,
        capabilities=AGENT_CAPABILITIES,
        read_only=not resource.shared,
        tmpfs=tmpfs,
    )


def _disk_quota(
    resource: ResourceType, limits: ResourceLimits
) -> tuple[dict[str, str], dict[str, str]]:
    """A session container's quota tmpfs and the agent environment that names its size
    (in OOM messages); a shared service has neither."""
    if resource.shared:
        return {}, {}
    disk = parse_memory(limits.disk)
    return {DISK_MOUNT: _tmpfs_options(disk)}, {"SANDBOX_AGENT_DISK_BYTES": str(disk)}


def _tmpfs_options(size: int) -> str:
    """Mount options of the quota's tmpfs: executable (programs built or installed
    there must run), no devices or setuid files; root's and sticky (1777), so the
    agent can make the home with the session user's rights and the temporary
    directories with its own, and the user can rename neither."""
    return f"size={size},exec,nosuid,nodev,mode=1777"


def _nano_cpus(cpus: float) -> int:
    """Docker's NanoCpus for `cpus`; never below 0.01 core, since 0 means no limit at all."""
    nano = int(cpus * 1e9)
    if nano < 10_000_000:  # the settings and SessionConfig refuse it first (1002)
        raise InvalidParams(f"config.cpus: {cpus!r} is below 0.01", field="config.cpus")
    return nano
