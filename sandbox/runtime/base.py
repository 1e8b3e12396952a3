"""What every runtime shares: the `Runtime` protocol, container specs and records, labels.

A runtime starts, lists, inspects and removes the agent containers of sessions,
pool members and shared services, and builds their images. Two implement this
protocol: `docker.DockerRuntime` (one engine; the default) and
`swarm.SwarmRuntime` (one-replica Swarm services across a cluster's nodes).
Nothing above the runtime knows which one runs: the session code sees a
`ContainerSpec` go in and a `ContainerRecord` come out, whose ``agent_url`` says
where its agent answers (``unix://`` on one engine, ``http://`` on an overlay
network on a swarm).

This module imports no Docker SDK: code that only needs the types imports them
from here.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from ..errors import BackendError, SessionError
from .agent_http import TcpConnect

AgentTransport = Literal["unix", "tcp"]
"""How the server reaches agents: a Unix socket in a host directory mounted into
the container (``unix``), or TCP on a network the server shares (``tcp``)."""

LABEL_MANAGED = "sandbox.managed"
LABEL_SERVER = "sandbox.server"
LABEL_WORKER = "sandbox.worker"
LABEL_RESOURCE = "sandbox.resource"
LABEL_SESSION = "sandbox.session"
LABEL_POOL = "sandbox.pool"
LABEL_CONFIG = "sandbox.config"
LABEL_CREATED = "sandbox.created"
LABEL_AUTO = "sandbox.auto_created"
LABEL_NAME = "sandbox.session_name"
LABEL_IMAGE = "sandbox.image"
LABEL_SERVICE = "sandbox.service"
LABEL_TOKEN = "sandbox.token"
"""The agent's token, for a restarted server: labels are visible to the Docker API
(root-equivalent) but not inside the container, unlike its environment."""
LABEL_UID = "sandbox.uid"
"""The session uid the server gave a session container (`sessions.uids`)."""
LABEL_RELAY = "sandbox.relay"
"""On the swarm runtime's relay container."""
LABEL_OVERLAY = "sandbox.overlay"
"""On a swarm service's own overlay network (the server and managed labels too)."""

AGENT_SOCKET_DIR = "/run/sandbox/agent"
"""Where every container finds the host directory holding its agent's Unix socket
(``agent.sock``) and token: the server reaches each agent there, never over a
network. The images make its parent, ``/run/sandbox``, root's alone (0700), so
the session user can neither reach the socket nor read the token."""
AGENT_SOCKET_ENV = "SANDBOX_AGENT_SOCKET"
AGENT_TOKEN_FILE = f"{AGENT_SOCKET_DIR}/token"
"""Where the agent finds its token at start (and removes it once read): written
into the socket directory before the container starts, so no process of the
sandbox ever sees it."""
AGENT_TOKEN_FILE_ENV = "SANDBOX_AGENT_TOKEN_FILE"
AGENT_CAPABILITIES = ("SETUID", "SETGID", "KILL")
"""What a root agent keeps of root's capabilities: SETUID and SETGID to run the
session's work as the session user (and take its file rights), KILL to stop the
session's processes. Everything else is dropped."""
SESSION_NETWORK_OPTIONS = {"com.docker.network.bridge.enable_icc": "false"}
"""The sessions' bridge network: egress only, sessions cannot reach each other."""


class DockerUnavailable(BackendError):
    """The Docker engine does not answer."""


class ClusterFull(SessionError):
    """No node of the cluster can take the container now (its reservations do not fit)."""


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to start one session container."""

    image: str
    name: str
    labels: dict[str, str]
    environment: dict[str, str]
    memory_bytes: int
    nano_cpus: int
    pids_limit: int
    network: bool
    """True: the sessions' own network (egress only). False: no network at all
    (``network_mode: none`` on one engine; on a swarm an internal network that
    reaches nothing but the server). How the server reaches the agent is the
    runtime's `agent_transport`."""
    command: list[str] | None = None
    shm_size: str | None = None
    token: str | None = None
    """The agent's token: at `AGENT_TOKEN_FILE` before the container starts (a file
    in the socket directory on one engine, a Swarm secret on a swarm)."""
    capabilities: tuple[str, ...] = ()
    """Capabilities kept besides dropping all (`AGENT_CAPABILITIES` for a root agent)."""
    read_only: bool = False
    """Mount the image's filesystem read-only; `tmpfs` then holds what is writable."""
    tmpfs: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    """Named volume or host path -> ``{"bind": path, "mode": "rw"|"ro"}``."""


@dataclass(frozen=True)
class ContainerRecord:
    """What the server needs to know of a running or stopped container."""

    id: str
    name: str
    labels: dict[str, str]
    status: str
    exit_code: int | None
    oom_killed: bool
    agent_url: str | None
    lost: bool = False
    """The container's node is gone (a swarm node that is down): its session is lost."""

    @property
    def token(self) -> str | None:
        """The agent's token, as the server labelled it at creation."""
        return self.labels.get(LABEL_TOKEN)

    @property
    def running(self) -> bool:
        """Whether the container is up (created-but-not-started counts as down)."""
        return self.status == "running"

    def describe_exit(self) -> str:
        """One phrase on why a container is not running, for error messages."""
        if self.running:
            return "the container is running"
        parts = [f"the container is {self.status}"]
        if self.exit_code is not None:
            parts.append(f"exit code {self.exit_code}")
        if self.oom_killed:
            parts.append("killed for exceeding its memory limit (OOM)")
        return ", ".join(parts)


@dataclass(frozen=True)
class BuildContext:
    """A Docker build context assembled from files of this repository."""

    dockerfile: str
    """Path of the Dockerfile inside the context."""
    files: dict[str, Path]
    """Context path -> file on disk."""
    buildargs: dict[str, str] = field(default_factory=dict)
    """The Dockerfile's ``ARG`` values."""

    def tar(self) -> io.BytesIO:
        """The context as an uncompressed tar stream, files in a stable order."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for arcname in sorted(self.files):
                info = archive.gettarinfo(str(self.files[arcname]), arcname=arcname)
                info.mtime = 0  # identical content gives identical layers
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with self.files[arcname].open("rb") as handle:
                    archive.addfile(info, handle)
        buffer.seek(0)
        return buffer


class Runtime(Protocol):
    """Where agent containers live: start, list, inspect, remove; images.

    Every method may raise `BackendError` (`DockerUnavailable` when the engine
    does not answer); `start` also `ClusterFull` (1003) when no node has room.
    """

    @property
    def agent_transport(self) -> AgentTransport:
        """``unix``: every spec must mount a socket directory at `AGENT_SOCKET_DIR`;
        ``tcp``: agents listen on TCP and their record's ``agent_url`` is ``http://``."""
        ...

    def agent_network(self) -> TcpConnect | None:
        """How the agent client makes TCP connections to agents; None: directly."""
        ...

    async def ping(self, timeout: float = 5.0) -> bool:
        """Whether the engine (or the swarm's manager) answers within `timeout` seconds."""
        ...

    async def engine_version(self) -> str:
        """The engine's version string."""
        ...

    async def start(self, spec: ContainerSpec) -> ContainerRecord:
        """Start a container as `spec` says; on any failure nothing is left behind."""
        ...

    async def remove(self, container_id: str) -> None:
        """Remove a container; one that is already gone is fine."""
        ...

    async def inspect(self, container_id: str) -> ContainerRecord | None:
        """The container's current record, or None when it no longer exists."""
        ...

    async def find(self, labels: dict[str, str]) -> list[ContainerRecord]:
        """Every container (running or not) carrying all of `labels`."""
        ...

    async def logs_tail(self, container_id: str, lines: int = 20) -> str:
        """The container's last log lines, or '' if unavailable."""
        ...

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        """Create the named volume `name` with `labels` unless it exists."""
        ...

    async def image_exists(self, image: str) -> bool:
        """Whether `image` is present where containers are made from it."""
        ...

    async def build_image(
        self,
        tag: str,
        context: BuildContext,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        """Build `tag` from `context`, reporting each output line to `on_progress`."""
        ...

    def close(self) -> None:
        """Release the engine client and threads."""
        ...
