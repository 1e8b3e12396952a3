"""The Docker Swarm runtime: every agent container a one-replica Swarm service.

`SwarmRuntime` implements the same `Runtime` protocol as `DockerRuntime`, on the
engine of a swarm manager: a `ContainerSpec` becomes a service with one replica
(restart policy none: a session whose container dies, or whose node goes down,
is lost, never silently replaced), the same labels on the service and on its
container, the same limits, and a reservation of part of them so the scheduler
places it on a node with room. What differs, and why:

- Agents are reached over TCP on overlay networks, not over Unix sockets (a
  socket file cannot cross nodes). Through the relay, every service gets an
  attachable overlay of its own, made before it and removed after it: internal
  (no egress) for a session without network, else with egress through the
  node's ``docker_gwbridge``. Only the session and the relay are on it, so no
  session reaches another's ports (as ``network_mode: none`` and a bridge
  without inter-container traffic keep them apart on one engine). A server on
  the overlays itself (a stack, no relay) cannot join a network per session: its
  sessions share the two overlays of the settings, and only the agents' tokens
  keep them apart.
- The token is a Swarm secret mounted at `AGENT_TOKEN_FILE` (root's, 0400), made
  per service and removed with it: nothing is written on a node's disk by the
  server. (The agent cannot delete it as it does on one engine; the directory
  above is root's 0700 in the images, so the session user cannot read it.)
- A server on the manager's host cannot reach an overlay network: it talks to the
  agents through the relay (`relay_server`), one small container on the manager
  joined to every session's overlay and published on 127.0.0.1 only. A server that runs on
  the overlays itself (a stack) connects directly (``relay=False``).
- A service runs the image by its id on the manager, so no node tries to pull
  it from a registry; a node that lacks it fails the task, and the start says
  which node (load the image there: see the README's "Many hosts"). With a
  registry (``registry``) it runs ``<registry>/<image>`` instead, pinned to the
  digest the manager pushed, and each node pulls it.
- A service waiting for a node with room is given `schedule_timeout_s`, then it
  is removed and the start fails with `ClusterFull` (1003), never left pending.
- On engines before 27, a service can neither set ``no-new-privileges`` nor
  mount an executable tmpfs: the session's quota tmpfs is ``noexec`` there.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import docker.errors
import docker.types

from ..errors import BackendError
from . import relay_server
from .agent_http import TcpConnect
from .base import (
    AGENT_TOKEN_FILE,
    LABEL_MANAGED,
    LABEL_RESOURCE,
    LABEL_SERVER,
    LABEL_SERVICE,
    AgentTransport,
    ClusterFull,
    ContainerRecord,
    ContainerSpec,
)
from .docker import DockerRuntime
from .relay import RelayAddress, RelayBackend

log = logging.getLogger(__name__)

AGENT_PORT = 8765
"""The port every agent listens on, on its overlay address."""
LABEL_RELAY = "sandbox.relay"
LABEL_OVERLAY = "sandbox.overlay"
"""On a service's own overlay network (the server and managed labels too)."""
_OVERLAY_GONE_S = 20.0
"""How long a removed service's overlay may stay in use (its task stopping, the
relay's attachment going) before its removal is left to the next start's prune."""
RELAY_PORT = 7400
"""The relay's port inside its container (published on 127.0.0.1, any host port)."""
_POLL_S = 0.02
_SCHEDULE_POLL_S = 0.05
"""Between looks at a new service's task: each look is two API calls, and a pool
refill must not keep the engine busy while other sessions' calls run."""
_STOP_GRACE_NS = 2_000_000_000
# Task states on a node, on the way to running. Until the task runs its overlay
# address is not up, and a connection to it waits for the kernel's SYN retransmit
# instead of being refused: the agent is asked only once the task runs.
_STARTING = {"assigned", "accepted", "preparing", "ready", "starting"}
_ON_A_NODE = {*_STARTING, "running"}
_FAILED = {"failed", "rejected", "orphaned", "remove", "shutdown", "complete"}
_AGENT_LISTENS = {"SANDBOX_AGENT_HOST": "0.0.0.0", "SANDBOX_AGENT_PORT": str(AGENT_PORT)}
_MAX_NAME = 57
_SIZE = re.compile(r"(?:^|,)size=(\d+)")


class SwarmRuntime(DockerRuntime):
    """The `Runtime` of a Docker Swarm, driven through a manager's engine.

    Images are built and pinged on the manager's engine as `DockerRuntime` does.

    Args:
        threads: Size of the pool that runs SDK calls.
        server_id: Stamped on the relay container (one relay per server).
        session_network: Overlay network of sessions with network.
        internal_network: Internal overlay network of sessions without network.
        session_subnet: CIDR to create `session_network` with (empty: Swarm's default).
        internal_subnet: CIDR to create `internal_network` with (empty: Swarm's default).
        encrypted: Create the overlays with IPsec between nodes.
        relay: Reach the agents through the relay (False: the server is on the
            overlay networks itself).
        relay_image: Image the relay runs in (any with ``python3``).
        reservation_fraction: Part of each limit reserved on the node.
        placement: Placement constraints per resource type.
        schedule_timeout_s: How long a service may wait for a node with room.
        registry: ``host:port`` the nodes pull images from (empty: by id, loaded).
        start_timeout_s: How long its node may then take to start it.
        client_factory: Builds the `docker.DockerClient`; tests may inject one.
    """

    def __init__(
        self,
        *,
        threads: int = 32,
        server_id: str,
        session_network: str = "sandbox-swarm-sessions",
        internal_network: str = "sandbox-swarm-agents",
        session_subnet: str = "",
        internal_subnet: str = "",
        encrypted: bool = False,
        relay: bool = True,
        relay_image: str = "sandbox/shell:latest",
        reservation_fraction: float = 0.1,
        placement: dict[str, list[str]] | None = None,
        schedule_timeout_s: float = 15.0,
        registry: str = "",
        start_timeout_s: float = 60.0,
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(threads=threads, client_factory=client_factory)
        self._server_id = server_id
        self._networks = {True: session_network, False: internal_network}
        self._subnet_of = {True: session_subnet, False: internal_subnet}
        self._encrypted = encrypted
        self._use_relay = relay
        self._relay_image = relay_image
        self._reservation = reservation_fraction
        self._placement = placement or {}
        self._schedule_timeout_s = schedule_timeout_s
        self._registry = registry
        self._start_timeout_s = start_timeout_s
        self._network_ids: dict[bool, str] = {}
        self._prepared = False
        self._relay: RelayAddress | None = None
        self._relay_container: str | None = None
        self._setup_lock = asyncio.Lock()

    @property
    def agent_transport(self) -> AgentTransport:
        """TCP on the overlay networks."""
        return "tcp"

    def agent_network(self) -> TcpConnect | None:
        """Through the relay, unless the server is on the overlays itself."""
        return RelayBackend(self.relay_address, self._relay_lost) if self._use_relay else None

    def _relay_lost(self, relay: RelayAddress) -> None:
        """The relay at `relay` refused a connection: the next one starts a new relay."""
        if self._relay == relay:
            log.warning("the swarm relay on 127.0.0.1:%d does not answer; replacing it", relay.port)
            self._relay = None

    # -- networks and relay -------------------------------------------------------

    async def _ready(self) -> None:
        """The overlay networks exist, and the relay runs (once per runtime)."""
        if self._prepared and (self._relay is not None or not self._use_relay):
            return
        async with self._setup_lock:
            if not self._prepared:
                await self._run(self._prepare_blocking)
                self._prepared = True
            if self._use_relay and self._relay is None:
                self._relay = await self._run(self._start_relay_blocking)

    async def relay_address(self) -> RelayAddress:
        """Where the relay listens, starting it (and the networks) first if need be."""
        await self._ready()
        if self._relay is None:
            raise BackendError("the swarm runtime runs without a relay (swarm.relay is off)")
        return self._relay

    def _prepare_blocking(self) -> None:
        """Check the engine is a manager; make the shared overlays when there is no
        relay; remove what an earlier run of this server left unused."""
        info = self._docker().api.info().get("Swarm") or {}
        if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
            raise BackendError(
                "runtime swarm needs this host's Docker engine to be a swarm manager "
                "(`docker swarm init`); it is not (setting runtime)"
            )
        if not self._use_relay:
            self._network_ids = {
                with_egress: str(
                    self._ensure_overlay_blocking(
                        name, internal=not with_egress, subnet=self._subnet_of[with_egress]
                    )["Id"]
                )
                for with_egress, name in self._networks.items()
            }
        self._prune_secrets_blocking()
        self._prune_overlays_blocking()

    def _own_overlays_blocking(self) -> list[str]:
        """Ids of the per-service overlays this server made."""
        labels = [f"{LABEL_MANAGED}=1", f"{LABEL_SERVER}={self._server_id}", f"{LABEL_OVERLAY}=1"]
        return [str(n["Id"]) for n in self._docker().api.networks(filters={"label": labels})]

    def _prune_overlays_blocking(self) -> None:
        """Remove this server's per-service overlays that no service uses: an earlier
        run died between making one and making its service, or before removing it."""
        api = self._docker().api
        mine = [f"{LABEL_MANAGED}=1", f"{LABEL_SERVER}={self._server_id}"]
        used = {
            str(target)
            for service in api.services(filters={"label": mine})
            for target in _network_targets(service)
        }
        for network_id in self._own_overlays_blocking():
            if network_id not in used:
                with contextlib.suppress(docker.errors.APIError):  # still in use: next time
                    api.remove_network(network_id)

    def _create_overlay_blocking(self, name: str, *, internal: bool) -> str:
        """A service's own overlay, joined by the relay (when there is one)."""
        api = self._docker().api
        network = api.create_network(
            name,
            driver="overlay",
            attachable=True,
            internal=internal,
            options={"encrypted": ""} if self._encrypted else None,
            labels={LABEL_MANAGED: "1", LABEL_SERVER: self._server_id, LABEL_OVERLAY: "1"},
            check_duplicate=True,
        )
        network_id = str(network["Id"])
        try:
            relay = self._relay_container
            if relay is not None:
                try:
                    api.connect_container_to_network(relay, network_id)
                except docker.errors.APIError as exc:
                    # A relay removed meanwhile (gone), or its replacement, which names
                    # itself before it joins every overlay (joined already): fine.
                    if exc.status_code not in (403, 404, 409):
                        raise
        except BaseException:
            self._remove_overlay_blocking(network_id)
            raise
        return network_id

    def _remove_overlay_blocking(self, network_id: str) -> None:
        """Remove a service's own overlay (never a shared one): the relay leaves it
        (this run's, or one an earlier run left), then it is removed once the
        service's task has let go of it."""
        api = self._docker().api
        try:
            labels = api.inspect_network(network_id).get("Labels") or {}
        except docker.errors.NotFound:
            return
        if labels.get(LABEL_OVERLAY) != "1" or labels.get(LABEL_SERVER) != self._server_id:
            return
        relays = [f"{LABEL_MANAGED}=1", f"{LABEL_SERVER}={self._server_id}", f"{LABEL_RELAY}=1"]
        for relay in api.containers(all=True, filters={"label": relays}):
            with contextlib.suppress(docker.errors.APIError):
                api.disconnect_container_from_network(relay["Id"], network_id, force=True)
        deadline = time.monotonic() + _OVERLAY_GONE_S
        while True:
            try:
                api.remove_network(network_id)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if time.monotonic() >= deadline:
                    log.warning(
                        "overlay %s is still in use (%s); left to the next prune",
                        network_id[:12],
                        exc,
                    )
                    return
            time.sleep(_SCHEDULE_POLL_S * 4)

    def _prune_secrets_blocking(self) -> None:
        """Remove token secrets of this server that no service uses: an earlier run
        died between making one and making its service."""
        api = self._docker().api
        mine = [f"{LABEL_MANAGED}=1", f"{LABEL_SERVER}={self._server_id}"]
        used = {
            ref["SecretID"]
            for service in api.services(filters={"label": mine})
            for ref in (
                ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
            ).get("Secrets")
            or []
        }
        for secret in api.secrets(filters={"label": mine}):
            if secret["ID"] not in used:
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_secret(secret["ID"])

    def _ensure_overlay_blocking(
        self, name: str, *, internal: bool, subnet: str = ""
    ) -> dict[str, Any]:
        api = self._docker().api
        found = [n for n in api.networks(names=[name]) if n.get("Name") == name]
        if not found:
            options = {"encrypted": ""} if self._encrypted else None
            # Without a subnet Swarm hands out a /24: ~250 sessions on this network.
            ipam = (
                docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
                if subnet
                else None
            )
            with contextlib.suppress(docker.errors.APIError):  # made meanwhile: checked below
                api.create_network(
                    name,
                    driver="overlay",
                    attachable=True,
                    internal=internal,
                    options=options,
                    ipam=ipam,
                    labels={LABEL_MANAGED: "1"},
                )
            found = [n for n in api.networks(names=[name]) if n.get("Name") == name]
        if not found:
            raise BackendError(f"cannot create the overlay network {name!r}")
        attrs: dict[str, Any] = api.inspect_network(found[0]["Id"])
        wrong = (
            attrs.get("Driver") != "overlay"
            or not attrs.get("Attachable")
            or bool(attrs.get("Internal")) != internal
        )
        if wrong:
            kind = "internal " if internal else ""
            raise BackendError(
                f"the Docker network {name!r} exists but is not an attachable {kind}overlay "
                "network; remove it or name another (settings swarm.session_network, "
                "swarm.internal_network)"
            )
        return attrs

    def _start_relay_blocking(self) -> RelayAddress:
        """A fresh relay for this server; one left by an earlier run is replaced."""
        api = self._docker().api
        labels = {LABEL_MANAGED: "1", LABEL_SERVER: self._server_id, LABEL_RELAY: "1"}
        for old in api.containers(
            all=True, filters={"label": [f"{k}={v}" for k, v in labels.items()]}
        ):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(old["Id"], force=True)
        secret = secrets.token_urlsafe(24)
        source = _relay_source()
        host_config = api.create_host_config(
            port_bindings={RELAY_PORT: ("127.0.0.1", None)},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            read_only=True,
            init=True,
            mem_limit=128 << 20,
            pids_limit=64,
        )
        container = api.create_container(
            self._relay_image,
            command=["python3", "-I", "-c", source],
            name=f"sandbox-relay-{re.sub(r'[^A-Za-z0-9_.-]+', '-', self._server_id)}",
            user="65534:65534",
            labels=labels,
            environment={
                "SANDBOX_RELAY_SECRET": secret,
                "SANDBOX_RELAY_PORT": str(RELAY_PORT),
                "SANDBOX_RELAY_AGENT_PORT": str(AGENT_PORT),
            },
            ports=[RELAY_PORT],
            host_config=host_config,
        )
        container_id = str(container["Id"])
        try:
            api.start(container_id)
            port = _published_port(api.inspect_container(container_id))
            _wait_listening(api, container_id)
            # Only now: it listens on its bridge address, never on these. Named first,
            # so an overlay made from here on is joined by its creator.
            self._relay_container = container_id
            for network_id in self._own_overlays_blocking():
                # Removed meanwhile, or joined by its creator already: fine.
                with contextlib.suppress(docker.errors.APIError):
                    api.connect_container_to_network(container_id, network_id)
        except BaseException:
            self._relay_container = None
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(container_id, force=True)
            raise
        log.info("swarm relay %s listens on 127.0.0.1:%d", container_id[:12], port)
        return RelayAddress("127.0.0.1", port, secret)

    def close(self) -> None:
        """Remove the relay (a restarted server starts a new one), then close."""
        if self._relay_container is not None and self._client is not None:
            with contextlib.suppress(Exception):  # closing: nothing left to report to
                self._client.api.remove_container(self._relay_container, force=True)
            self._relay_container = None
        super().close()

    # -- services -------------------------------------------------------------------

    async def start(self, spec: ContainerSpec) -> ContainerRecord:
        """Create the service (and its token's secret) and wait until a node runs it.

        Raises:
            ClusterFull: No node had room within `schedule_timeout_s` (1003).
            BackendError: The engine refused, or the task failed (the node and its
                error named: a missing image, say).
        """
        await self._ready()
        service_id = await self._run(self._create_blocking, spec)
        try:
            return await self._scheduled(service_id, spec)
        except BaseException:
            await self.remove(service_id)
            raise

    async def _scheduled(self, service_id: str, spec: ContainerSpec) -> ContainerRecord:
        """Until the service's task runs: `schedule_timeout_s` to reach a node (else the
        cluster is full), then `start_timeout_s` for the node to start it."""
        deadline = time.monotonic() + self._schedule_timeout_s
        placed = False
        while True:
            # The node's state is not asked here: a node just given a task is up.
            record, task = await self._run(self._record_blocking, service_id, False)
            state = str(((task or {}).get("Status") or {}).get("State", "new"))
            if record is not None and record.running and record.agent_url is not None:
                return record
            if state in _FAILED:
                raise BackendError(await self._run(self._task_failure_blocking, spec, task))
            if not placed and state in _STARTING:
                placed = True
                deadline = time.monotonic() + self._start_timeout_s
            if time.monotonic() >= deadline:
                why = str(((task or {}).get("Status") or {}).get("Err") or state)
                if placed:
                    raise BackendError(
                        f"the node did not start {spec.name} within {self._start_timeout_s:g}s "
                        f"(task {why})"
                    )
                raise ClusterFull(
                    f"no node of the swarm could start {spec.name} within "
                    f"{self._schedule_timeout_s:g}s ({why}); the cluster is full for its "
                    "reservation: try later, ask for less, or add nodes "
                    "(settings swarm.schedule_timeout_s, swarm.reservation_fraction)"
                )
            await asyncio.sleep(_SCHEDULE_POLL_S)

    def _task_failure_blocking(self, spec: ContainerSpec, task: dict[str, Any] | None) -> str:
        status = (task or {}).get("Status") or {}
        error = str(status.get("Err") or status.get("Message") or status.get("State"))
        node = self._node_name_blocking(str((task or {}).get("NodeID") or ""))
        if "no such image" in error.lower():
            return (
                f"node {node} has no image {spec.image}: load it there "
                "(`docker save IMAGE | docker -H NODE load`) or push it to the swarm's "
                "registry (`sandbox images build --push`)"
            )
        return f"the service's task failed on node {node}: {error}"

    def _node_name_blocking(self, node_id: str) -> str:
        if not node_id:
            return "(none)"
        try:
            node = self._docker().api.inspect_node(node_id)
        except docker.errors.NotFound:
            return node_id[:12]
        return str(((node.get("Description") or {}).get("Hostname")) or node_id[:12])

    def _create_blocking(self, spec: ContainerSpec) -> str:
        api = self._docker().api
        image = self._image_reference_blocking(spec.image)
        name = _service_name(spec.name)
        own_overlay = self._use_relay
        if own_overlay:
            network_id = self._create_overlay_blocking(name, internal=not spec.network)
        else:
            network_id = self._network_ids[spec.network]
        secret_refs = []
        try:
            if spec.token is not None:
                secret = api.create_secret(
                    f"{name}.token",
                    spec.token.encode(),
                    labels={LABEL_MANAGED: "1", LABEL_SERVER: spec.labels.get(LABEL_SERVER, "")},
                )
                secret_refs.append(
                    docker.types.SecretReference(
                        secret["ID"],
                        f"{name}.token",
                        filename=AGENT_TOKEN_FILE,
                        uid="0",
                        gid="0",
                        mode=0o444,
                    )
                )
            kwargs = self._service_kwargs(spec, name, image, secret_refs, network_id)
            return str(api.create_service(**kwargs)["ID"])
        except BaseException:
            for ref in secret_refs:
                with contextlib.suppress(docker.errors.APIError):
                    api.remove_secret(ref["SecretID"])
            if own_overlay:
                self._remove_overlay_blocking(network_id)
            raise

    def _image_reference_blocking(self, image: str) -> str:
        """What a service runs: the image's id (no node pulls it), or with a registry
        ``<registry>/<image>``, by the digest the manager pushed when it has one."""
        api = self._docker().api
        if not self._registry:
            return str(api.inspect_image(image)["Id"])
        reference = f"{self._registry}/{image}"
        name, _, tag = reference.rpartition(":")
        repository = name if "/" not in tag else reference  # a tag, not the port
        try:
            digests = api.inspect_image(reference).get("RepoDigests") or []
        except docker.errors.ImageNotFound:
            return reference  # pushed from elsewhere: the tag
        pinned = [str(d) for d in digests if str(d).startswith(f"{repository}@")]
        return pinned[0] if pinned else reference

    def _service_kwargs(
        self,
        spec: ContainerSpec,
        name: str,
        image: str,
        secret_refs: list[Any],
        network_id: str,
    ) -> dict[str, Any]:
        container = docker.types.ContainerSpec(
            image=image,
            command=spec.command,
            labels=spec.labels,
            env={
                **spec.environment,
                "SANDBOX_AGENT_HOST": "0.0.0.0",
                "SANDBOX_AGENT_PORT": str(AGENT_PORT),
            },
            mounts=_mounts(spec),
            secrets=secret_refs,
            init=True,
            read_only=spec.read_only,
            cap_drop=["ALL"],
            cap_add=[f"CAP_{name}" for name in spec.capabilities] or None,
            stop_grace_period=_STOP_GRACE_NS,
        )
        resources = docker.types.Resources(
            cpu_limit=spec.nano_cpus,
            mem_limit=spec.memory_bytes,
            cpu_reservation=int(spec.nano_cpus * self._reservation) or None,
            mem_reservation=int(spec.memory_bytes * self._reservation) or None,
        )
        resources.setdefault("Limits", {})["Pids"] = spec.pids_limit
        resource = spec.labels.get(LABEL_RESOURCE, "")
        task = docker.types.TaskTemplate(
            container,
            resources=resources,
            restart_policy=docker.types.RestartPolicy(condition="none"),
            placement=docker.types.Placement(constraints=self._placement.get(resource) or None),
            networks=[docker.types.NetworkAttachmentConfig(network_id)],
        )
        return {
            "task_template": task,
            "name": name,
            "labels": spec.labels,
            "mode": docker.types.ServiceMode("replicated", replicas=1),
            "endpoint_spec": docker.types.EndpointSpec(mode="dnsrr"),
        }

    async def remove(self, container_id: str) -> None:
        """Remove the service, its token's secret and its own overlay; one already
        gone is fine."""
        await self._run(self._remove_service_blocking, container_id)

    def _remove_service_blocking(self, service_id: str) -> None:
        api = self._docker().api
        try:
            service = api.inspect_service(service_id)
        except docker.errors.NotFound:
            return
        refs = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_service(service_id)
        for ref in refs.get("Secrets") or []:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_secret(ref["SecretID"])
        for network_id in _network_targets(service):
            self._remove_overlay_blocking(network_id)

    async def inspect(self, container_id: str) -> ContainerRecord | None:
        """The service's record, from its task (and its node), or None when it is gone."""
        record, _ = await self._run(self._record_blocking, container_id)
        return record

    async def find(self, labels: dict[str, str]) -> list[ContainerRecord]:
        """Every service carrying all of `labels`."""

        def blocking() -> list[ContainerRecord]:
            wanted = [f"{key}={value}" for key, value in labels.items()]
            found = []
            for service in self._docker().api.services(filters={"label": wanted}):
                record, _ = self._record_blocking(str(service["ID"]))
                if record is not None:
                    found.append(record)
            return found

        return await self._run(blocking)

    def _record_blocking(
        self, service_id: str, check_node: bool = True
    ) -> tuple[ContainerRecord | None, dict[str, Any] | None]:
        api = self._docker().api
        try:
            service = api.inspect_service(service_id)
        except docker.errors.NotFound:
            return None, None
        tasks = api.tasks(filters={"service": service_id})
        task = max(tasks, key=lambda t: str(t.get("CreatedAt", "")), default=None)
        node_down = False
        if check_node and task is not None and task.get("NodeID"):
            try:
                node = api.inspect_node(task["NodeID"])
                node_down = ((node.get("Status") or {}).get("State")) != "ready"
            except docker.errors.NotFound:
                node_down = True
        return _record(service, task, node_down), task

    async def logs_tail(self, container_id: str, lines: int = 20) -> str:
        """The service's last log lines, or '' if unavailable."""

        def blocking() -> str:
            try:
                raw = self._docker().api.service_logs(
                    container_id, stdout=True, stderr=True, tail=lines
                )
            except docker.errors.NotFound:
                return ""
            return b"".join(raw).decode("utf-8", "replace").strip()

        try:
            return await self._run(blocking)
        except BackendError:
            return ""

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        """Nothing: a swarm's volumes are each node's, made (with the service's managed,
        server and service labels) by the mount where its task runs."""


def _service_name(name: str) -> str:
    """`name` as a service name: letters, digits and dashes, at most 57 characters
    (its secret's name adds ``.token`` within Swarm's 64), cut ones kept apart by a hash."""
    safe = re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-") or "sandbox"
    if len(safe) <= _MAX_NAME:
        return safe
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{safe[: _MAX_NAME - 11].rstrip('-')}-{digest}"


def _relay_source() -> str:
    """The relay program, as ``python3 -c`` runs it."""
    path = relay_server.__file__
    with open(path, encoding="utf-8") as file:
        return file.read()


def _published_port(attrs: dict[str, Any]) -> int:
    ports = ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{RELAY_PORT}/tcp")
    if not ports:
        raise BackendError("the swarm relay's port was not published")
    return int(ports[0]["HostPort"])


def _wait_listening(api: Any, container_id: str, timeout: float = 15.0) -> None:
    """Until the relay says it listens (its one log line), or fail with its logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = api.inspect_container(container_id).get("State") or {}
        logs = bytes(api.logs(container_id, tail=20)).decode("utf-8", "replace")
        if "listening" in logs:
            return
        if state.get("Status") not in ("running", "created"):
            raise BackendError(f"the swarm relay exited: {logs.strip()[-2000:]}")
        time.sleep(_POLL_S)
    raise BackendError(f"the swarm relay did not start within {timeout:g}s")


def _mounts(spec: ContainerSpec) -> list[Any]:
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


def _network_targets(service: dict[str, Any]) -> list[str]:
    """Ids of the networks a service's spec attaches it to."""
    task = (service.get("Spec") or {}).get("TaskTemplate") or {}
    return [str(n["Target"]) for n in task.get("Networks") or [] if n.get("Target")]


def _record(
    service: dict[str, Any],
    task: dict[str, Any] | None,
    node_down: bool,
) -> ContainerRecord:
    spec = service.get("Spec") or {}
    status = (task or {}).get("Status") or {}
    state = str(status.get("State") or "pending")
    if node_down and state in _ON_A_NODE:
        state = "lost (its node is down)"
    elif state in _STARTING:
        state = "starting"
    container_status = status.get("ContainerStatus") or {}
    exit_code = container_status.get("ExitCode") if state in _FAILED else None
    return ContainerRecord(
        id=str(service["ID"]),
        name=str(spec.get("Name", "")),
        labels=dict(spec.get("Labels") or {}),
        status=state,
        exit_code=None if exit_code is None else int(exit_code),
        oom_killed=False,  # a task says only its exit code (137 when killed)
        agent_url=_agent_url(task, set(_network_targets(service))),
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
