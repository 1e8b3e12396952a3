"""Container specs of session and service containers: labels, agent environment, limits."""

from __future__ import annotations

import re
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
WRITABLE_DIRS = (SESSION_HOME, "/tmp", "/var/tmp")
"""Every directory the session user can write in the shell and desktop images
(measured: ``find / -xdev -perm -0002 -type d`` plus the home); with the root
filesystem read-only, each is a tmpfs of the session's disk quota. (``/run/lock``
stays read-only; ``/dev/shm`` is Docker's own 64 MB tmpfs.)"""


def container_name(*parts: str) -> str:
    """A Docker-safe container name ``sandbox-<part>-<part>...``."""
    return "-".join(["sandbox", *(_UNSAFE.sub("-", part) for part in parts)])


def build_spec(
    settings: Settings,
    resource: ResourceType,
    *,
    image: str,
    name: str,
    token: str,
    limits: ResourceLimits,
    network: bool,
    labels: dict[str, str],
    environment: dict[str, str] | None = None,
    volumes: dict[str, dict[str, str]] | None = None,
    socket_dir: Path | None = None,
) -> ContainerSpec:
    """The spec of a container running `resource`'s agent.

    Every container gets the managed/server/resource labels, its own agent token
    (in a file only the agent reads, and in a label for a restarted server), the
    agent's settings and `socket_dir` mounted for its agent's socket; `labels`,
    `environment` and `volumes` add to them.

    A session container (not a shared service) also gets its disk quota: a
    read-only root filesystem and a tmpfs of ``limits.disk`` on each of
    `WRITABLE_DIRS`. tmpfs pages count against the container's memory cgroup, so
    its memory limit is ``limits.memory + limits.disk``: files up to the quota
    never take memory the processes were promised, and a write past the quota
    fails with ENOSPC instead of meeting the OOM killer.
    """
    if socket_dir is None:
        raise ValueError("every container needs a socket directory for its agent")
    environment = dict(environment or {})
    volumes = dict(volumes or {})
    socket_env, socket_volume = SocketDirs.mount(socket_dir)
    environment.update(socket_env)
    volumes.update(socket_volume)
    memory = parse_memory(limits.memory)
    tmpfs: dict[str, str] = {}
    if not resource.shared:
        disk = parse_memory(limits.disk)
        memory += disk
        tmpfs = {path: _tmpfs_options(path, disk) for path in WRITABLE_DIRS}
        environment["SANDBOX_AGENT_DISK_BYTES"] = str(disk)  # named in OOM messages
    return ContainerSpec(
        image=image,
        name=name,
        labels={
            LABEL_MANAGED: "1",
            LABEL_SERVER: settings.server_id,
            LABEL_RESOURCE: resource.name,
            LABEL_TOKEN: token,
            **labels,
        },
        environment={
            **environment,
            AGENT_TOKEN_FILE_ENV: AGENT_TOKEN_FILE,
            "SANDBOX_OUTPUT_LIMIT": str(settings.output_limit_bytes),
            "SANDBOX_AGENT_TOOLSETS": ",".join(resource.toolsets),
        },
        memory_bytes=memory,
        nano_cpus=_nano_cpus(limits.cpus),
        pids_limit=limits.pids,
        network=network,
        volumes=volumes,
        token=token,
        capabilities=AGENT_CAPABILITIES,
        read_only=not resource.shared,
        tmpfs=tmpfs,
    )


def _tmpfs_options(path: str, size: int) -> str:
    """Mount options of one writable tmpfs: executable (programs built or installed
    there must run), no devices or setuid files, owned like the image's directory."""
    owner = "uid=1000,gid=1000,mode=0755" if path == SESSION_HOME else "mode=1777"
    return f"size={size},exec,nosuid,nodev,{owner}"


def _nano_cpus(cpus: float) -> int:
    """Docker's NanoCpus for `cpus`; never below 0.01 core, since 0 means no limit at all."""
    nano = int(cpus * 1e9)
    if nano < 10_000_000:  # the settings and SessionConfig refuse it first (1002)
        raise InvalidParams(f"config.cpus: {cpus!r} is below 0.01", field="config.cpus")
    return nano
