"""The Docker Swarm runtime: every agent container a one-replica Swarm service.

`SwarmRuntime` implements the same `Runtime` protocol as `DockerRuntime`, on the
engine of a swarm manager: a `ContainerSpec` becomes a service with one replica
(restart policy none: a session whose container dies, or whose node goes down,
is lost, never silently replaced), the same labels on the service and on its
container, the same limits, and a reservation of part of them so the scheduler
places it on a node with room (`swarm_services`). What differs, and why:

- Agents are reached over TCP on overlay networks, not over Unix sockets (a
  socket file cannot cross nodes): through the relay, an overlay of its own per
  service (`swarm_overlays`).
- The token is a Swarm secret mounted at `AGENT_TOKEN_FILE` (root's, 0400), made
  per service and removed with it: nothing is written on a node's disk by the
  server. (The agent cannot delete it as it does on one engine; the directory
  above is root's 0700 in the images, so the session user cannot read it.)
- A server on the manager's host cannot reach an overlay network: it talks to the
  agents through the relay (`relay_container`), started once for every caller
  (`SharedStart`). A server that runs on the overlays itself (a stack) connects
  directly (``relay=False``).
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
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import docker.errors

from ..errors import BackendError
from .agent_http import TcpConnect
from .base import (
    LABEL_MANAGED,
    LABEL_SERVER,
    AgentTransport,
    ClusterFull,
    ContainerRecord,
    ContainerSpec,
)
from .docker import DockerRuntime
from .relay import RelayAddress, RelayBackend
from .relay_container import RelayContainer
from .shared_start import SharedStart
from .swarm_overlays import SwarmOverlays
from .swarm_services import (
    FAILED,
    STARTING,
    image_reference,
    network_targets,
    secret_ids,
    service_kwargs,
    service_name,
    service_record,
    task_state,
    token_secret_reference,
)
from .swarm_tasks import newest_task, node_is_down, task_failure

log = logging.getLogger(__name__)

_SCHEDULE_POLL_S = 0.05
"""Between looks at a new service's task while it waits for a node: each look is an
API call, and a pool refill must not keep the engine busy while other sessions'
calls run."""
_START_POLL_S = 0.02
"""Between looks once a node has the task: it runs within a few tenths of a second,
and every look saved there is a wait saved on the create."""


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
        self._use_relay = relay
        self._reservation = reservation_fraction
        self._placement = placement or {}
        self._schedule_timeout_s = schedule_timeout_s
        self._registry = registry
        self._start_timeout_s = start_timeout_s
        self._network_ids: dict[bool, str] = {}
        self._overlays = SwarmOverlays(
            self._api,
            server_id=server_id,
            encrypted=encrypted,
            relay=lambda: self._relay.container_id,
        )
        self._relay = RelayContainer(
            self._api, server_id=server_id, image=relay_image, overlays=self._overlays
        )
        self._setup: SharedStart[None] = SharedStart(self._set_up, "setting up the swarm")
        self._relay_start: SharedStart[RelayAddress] = SharedStart(
            self._start_relay, "starting the swarm relay"
        )
        self._background: set[asyncio.Task[None]] = set()
        """Spare overlays being made, and removed services' overlays being removed."""
        self._overlays_to_remove: set[str] = set()

    def _api(self) -> Any:
        return self._docker().api

    @property
    def agent_transport(self) -> AgentTransport:
        """TCP on the overlay networks."""
        return "tcp"

    def agent_network(self) -> TcpConnect | None:
        """Through the relay, unless the server is on the overlays itself."""
        return RelayBackend(self.relay_address, self._relay_lost) if self._use_relay else None

    def _relay_lost(self, relay: RelayAddress) -> None:
        """The relay at `relay` refused a connection: the next one starts a new relay."""
        if self._relay_start.kept() == relay:
            log.warning("the swarm relay on 127.0.0.1:%d does not answer; replacing it", relay.port)
            self._relay_start.forget(relay)

    # -- set-up and relay -----------------------------------------------------------

    async def _ready(self) -> None:
        """The swarm is set up, and the relay runs (each started once for all callers)."""
        await self._setup.result()
        if self._use_relay:
            await self._relay_start.result()

    async def relay_address(self) -> RelayAddress:
        """Where the relay listens, starting it (and setting up) first if need be.

        A caller that stops waiting leaves the start running for the next one.
        """
        if not self._use_relay:
            raise BackendError("the swarm runtime runs without a relay (swarm.relay is off)")
        return await self._relay_start.result()

    async def _start_relay(self) -> RelayAddress:
        await self._setup.result()
        return await self._run(self._relay.start)

    async def _set_up(self) -> None:
        for network_id in await self._run(self._set_up_blocking):
            self._remove_overlay_in_background(network_id)

    def _set_up_blocking(self) -> list[str]:
        """Check the engine is a manager; make the shared overlays when there is no
        relay; remove the secrets an earlier run of this server left unused. Returns
        the overlays it left unused, to be removed."""
        info = self._api().info().get("Swarm") or {}
        if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
            raise BackendError(
                "runtime swarm needs this host's Docker engine to be a swarm manager "
                "(`docker swarm init`); it is not (setting runtime)"
            )
        if not self._use_relay:
            self._network_ids = {
                with_egress: self._overlays.ensure_shared(
                    name, internal=not with_egress, subnet=self._subnet_of[with_egress]
                )
                for with_egress, name in self._networks.items()
            }
        else:
            # An earlier run's relay keeps its overlays in use: it goes first (the new
            # relay is started afterwards anyway).
            self._relay.remove_all()
        self._prune_secrets_blocking()
        return self._overlays.find_orphans()

    def _prune_secrets_blocking(self) -> None:
        """Remove token secrets of this server that no service uses: an earlier run
        died between making one and making its service."""
        api = self._api()
        mine = [f"{LABEL_MANAGED}=1", f"{LABEL_SERVER}={self._server_id}"]
        used = {
            secret_id
            for service in api.services(filters={"label": mine})
            for secret_id in secret_ids(service)
        }
        for secret in api.secrets(filters={"label": mine}):
            if secret["ID"] not in used:
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_secret(secret["ID"])

    def close(self) -> None:
        """Remove the relay (a restarted server starts a new one) and the spare
        overlays, then close."""
        for task in self._background:
            with contextlib.suppress(RuntimeError):  # its loop closed already: it is over
                task.cancel()
        self._relay_start.cancel()
        self._setup.cancel()
        if self._client is not None:
            for network_id in list(self._overlays_to_remove):  # their tasks were cancelled
                with contextlib.suppress(Exception):  # closing: nothing left to report to
                    self._overlays.remove_own(network_id)
            with contextlib.suppress(Exception):
                self._overlays.remove_spares()  # before the relay: it leaves each as usual
            with contextlib.suppress(Exception):
                self._relay.remove()
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
        try:
            service_id = await self._run(self._create_blocking, spec)
            try:
                return await self._scheduled(service_id, spec)
            except BaseException:
                await self.remove(service_id)
                raise
        finally:
            if self._use_relay:
                # Only now: the spare's join would slow this task's start on its node.
                self._fill_spares(internal=not spec.network)

    def _fill_spares(self, *, internal: bool) -> None:
        """Make spare overlays of the kind in the background, up to the count kept."""

        async def fill() -> None:
            while await self._run(self._overlays.add_spare, internal=internal):
                pass

        self._in_background(fill(), "could not make a spare overlay")

    def _in_background(self, work: Coroutine[Any, Any, None], failure: str) -> None:
        """Run `work` as a task of the runtime's (cancelled at `close`), its failure logged."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._background.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.warning("%s: %s", failure, task.exception())

        task.add_done_callback(done)

    async def _scheduled(self, service_id: str, spec: ContainerSpec) -> ContainerRecord:
        """Until the service's task runs: `schedule_timeout_s` to reach a node (else the
        cluster is full), then `start_timeout_s` for the node to start it."""
        deadline = time.monotonic() + self._schedule_timeout_s
        placed = False
        service = await self._run(self._api().inspect_service, service_id)
        while True:
            # One call a look: the service's spec does not change, and the node's state
            # is not asked here (a node just given a task is up).
            task = await self._run(newest_task, self._api(), service_id)
            state = task_state(task)
            record = service_record(service, task, False)
            if record.running and record.agent_url is not None:
                return record
            if state in FAILED:
                raise BackendError(await self._run(task_failure, self._api(), spec.image, task))
            if not placed and state in STARTING:
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
            await asyncio.sleep(_START_POLL_S if placed else _SCHEDULE_POLL_S)

    def _create_blocking(self, spec: ContainerSpec) -> str:
        api = self._api()
        image = image_reference(api, spec.image, self._registry)
        name = service_name(spec.name)
        own_overlay = self._use_relay
        if own_overlay:
            network_id = self._overlays.take_own(internal=not spec.network)
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
                secret_refs.append(token_secret_reference(secret["ID"], f"{name}.token"))
            kwargs = service_kwargs(
                spec,
                name=name,
                image=image,
                secret_refs=secret_refs,
                network_id=network_id,
                reservation_fraction=self._reservation,
                placement=self._placement,
            )
            return str(api.create_service(**kwargs)["ID"])
        except BaseException:
            for ref in secret_refs:
                with contextlib.suppress(docker.errors.APIError):
                    api.remove_secret(ref["SecretID"])
            if own_overlay:
                self._overlays.remove_own(network_id)
            raise

    async def remove(self, container_id: str) -> None:
        """Remove the service and its token's secret; one already gone is fine. Its
        own overlay is removed in the background: the relay's leaving would wait for
        the engine's other network work (a spare being joined), and the task lets go
        of the network only a moment after its service is gone anyway."""
        for network_id in await self._run(self._remove_service_blocking, container_id):
            self._remove_overlay_in_background(network_id)

    def _remove_overlay_in_background(self, network_id: str) -> None:
        self._overlays_to_remove.add(network_id)
        self._in_background(self._remove_overlay(network_id), "could not remove an overlay")

    async def _remove_overlay(self, network_id: str) -> None:
        await self._run(self._overlays.remove_own, network_id)
        self._overlays_to_remove.discard(network_id)

    def _remove_service_blocking(self, service_id: str) -> list[str]:
        """Remove the service and its secrets; returns the networks it was on."""
        api = self._api()
        try:
            service = api.inspect_service(service_id)
        except docker.errors.NotFound:
            return []
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_service(service_id)
        for secret_id in secret_ids(service):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_secret(secret_id)
        return network_targets(service)

    async def inspect(self, container_id: str) -> ContainerRecord | None:
        """The service's record, from its task (and its node), or None when it is gone."""
        record, _ = await self._run(self._record_blocking, container_id)
        return record

    async def find(self, labels: dict[str, str]) -> list[ContainerRecord]:
        """Every service carrying all of `labels`."""

        def blocking() -> list[ContainerRecord]:
            wanted = [f"{key}={value}" for key, value in labels.items()]
            found = []
            for service in self._api().services(filters={"label": wanted}):
                record, _ = self._record_blocking(str(service["ID"]))
                if record is not None:
                    found.append(record)
            return found

        return await self._run(blocking)

    def _record_blocking(
        self, service_id: str, check_node: bool = True
    ) -> tuple[ContainerRecord | None, dict[str, Any] | None]:
        api = self._api()
        try:
            service = api.inspect_service(service_id)
        except docker.errors.NotFound:
            return None, None
        task = newest_task(api, service_id)
        return service_record(service, task, check_node and node_is_down(api, task)), task

    async def logs_tail(self, container_id: str, lines: int = 20) -> str:
        """The service's last log lines, or '' if unavailable."""

        def blocking() -> str:
            try:
                raw = self._api().service_logs(container_id, stdout=True, stderr=True, tail=lines)
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
