"""Container specs of session and service containers: labels, agent environment, limits."""

from __future__ import annotations

import re
from pathlib import Path

from ..backends import ResourceType
from ..config import ResourceLimits, Settings, parse_memory
from ..runtime.docker import (
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
    (in a file only the agent reads, and in a label for a restarted server) and
    the agent's settings; `labels`, `environment` and `volumes` add to them. A
    container without network gets `socket_dir` mounted for its agent's socket.
    """
    environment = dict(environment or {})
    volumes = dict(volumes or {})
    if not network:
        if socket_dir is None:
            raise ValueError("a container without network needs a socket directory")
        socket_env, socket_volume = SocketDirs.mount(socket_dir)
        environment.update(socket_env)
        volumes.update(socket_volume)
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
        memory_bytes=parse_memory(limits.memory),
        nano_cpus=int(limits.cpus * 1e9),
        pids_limit=limits.pids,
        network=network,
        volumes=volumes,
        token=token,
    )
