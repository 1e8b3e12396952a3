"""The overlay networks of one server's swarm sessions.

Through the relay, every service gets an attachable overlay of its own, made
before it and removed after it: internal (no egress) for a session without
network, else with egress through the node's ``docker_gwbridge``. Only the
session and the relay are on it, so no session reaches another's ports (as
``network_mode: none`` and a bridge without inter-container traffic keep them
apart on one engine). A server on the overlays itself (a stack, no relay)
cannot join a network per session: its sessions share two overlays, and only
the agents' tokens keep them apart.

A new overlay is cheap to make (~4 ms) but slow to join: the first endpoint on a
node builds the network there (namespace, bridge, VXLAN device), ~0.7 s for the
relay on this project's 2-core test machine, which a cold start would wait for.
So a few spare overlays of each kind are made and joined by the relay ahead of
time (`add_spare`), and a start takes one (`take_own`). A spare is never
reused: each is one session's, removed with its service.

Every method makes blocking Docker calls: the runtime runs them in its threads.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import docker.errors
import docker.types

from ..errors import BackendError
from .base import LABEL_MANAGED, LABEL_OVERLAY, LABEL_RELAY, LABEL_SERVER
from .swarm_services import network_targets

log = logging.getLogger(__name__)

OVERLAY_GONE_S = 20.0
"""How long a removed service's overlay may stay in use (its task stopping, the
relay's attachment going) before its removal is left to the next start's prune."""
SPARES_PER_KIND = 2
"""Spare overlays kept ready per kind (internal, with egress): enough for creates
one after another; a burst beyond it makes its own, as without spares."""
_RETRY_REMOVE_S = 0.2


class SwarmOverlays:
    """Makes, finds and removes the overlay networks of the server `server_id`.

    Args:
        api: The manager engine's low-level API client (called for each use).
        server_id: Stamped on every overlay of a service of this server.
        encrypted: Create the overlays with IPsec between nodes.
        relay: The relay's container, if one runs: it joins each new overlay.
    """

    def __init__(
        self,
        api: Callable[[], Any],
        *,
        server_id: str,
        encrypted: bool,
        relay: Callable[[], str | None],
    ) -> None:
        self._api = api
        self._relay = relay
        self._server_id = server_id
        self._options = {"encrypted": ""} if encrypted else None
        self._name_prefix = "sandbox-ovl-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", server_id)[:40]
        self._lock = threading.Lock()
        self._spares: dict[bool, list[str]] = {True: [], False: []}
        """Spare overlay ids by `internal`, oldest first."""
        self._making: dict[bool, int] = {True: 0, False: 0}
        self._closed = False
        self._orphans: set[str] = set()

    def _mine(self) -> list[str]:
        return [f"{LABEL_MANAGED}=1", f"{LABEL_SERVER}={self._server_id}"]

    def own_ids(self) -> list[str]:
        """Ids of the per-service overlays this server made (but an earlier run's that
        `find_orphans` found), which the relay joins."""
        labels = [*self._mine(), f"{LABEL_OVERLAY}=1"]
        found = [str(n["Id"]) for n in self._api().networks(filters={"label": labels})]
        with self._lock:
            return [network_id for network_id in found if network_id not in self._orphans]

    def find_orphans(self) -> list[str]:
        """This server's per-service overlays that no service uses, made by an earlier
        run that died before its service was made or before removing them (spares,
        too); from now on the relay does not join them. Called before this run makes
        any: remove them with `remove_own`, which may wait for the earlier relay's
        attachments to go."""
        api = self._api()
        used = {
            target
            for service in api.services(filters={"label": self._mine()})
            for target in network_targets(service)
        }
        labels = [*self._mine(), f"{LABEL_OVERLAY}=1"]
        found = [str(n["Id"]) for n in api.networks(filters={"label": labels})]
        orphans = [network_id for network_id in found if network_id not in used]
        with self._lock:
            self._orphans.update(orphans)
        return orphans

    def take_own(self, *, internal: bool) -> str:
        """A spare overlay of the kind asked for (joined by the relay already), else a
        new one (see `create_own`)."""
        with self._lock:
            if self._spares[internal]:
                return self._spares[internal].pop(0)
        return self.create_own(self._new_name(), internal=internal)

    def add_spare(self, *, internal: bool) -> bool:
        """Make one more spare of the kind unless `SPARES_PER_KIND` are there or being
        made; returns whether it made one."""
        with self._lock:
            if self._closed or len(self._spares[internal]) + self._making[internal] >= (
                SPARES_PER_KIND
            ):
                return False
            self._making[internal] += 1
        try:
            network_id = self.create_own(self._new_name(), internal=internal)
        finally:
            with self._lock:
                self._making[internal] -= 1
        with self._lock:
            if not self._closed:
                self._spares[internal].append(network_id)
                return True
        self.remove_own(network_id)  # closed meanwhile: nobody will take it
        return False

    def remove_spares(self) -> None:
        """Remove every spare, and any made from now on (the server is closing)."""
        with self._lock:
            self._closed = True
            spares = [*self._spares[True], *self._spares[False]]
            self._spares = {True: [], False: []}
        for network_id in spares:
            with contextlib.suppress(docker.errors.APIError):
                self.remove_own(network_id)

    def _new_name(self) -> str:
        return f"{self._name_prefix}-{secrets.token_hex(5)}"

    def create_own(self, name: str, *, internal: bool) -> str:
        """A service's own overlay, joined by the relay when there is one. Asked only
        once the network exists: a relay that replaces another meanwhile names
        itself before it joins every overlay, so one of the two joins it."""
        api = self._api()
        network = api.create_network(
            name,
            driver="overlay",
            attachable=True,
            internal=internal,
            options=self._options,
            labels={LABEL_MANAGED: "1", LABEL_SERVER: self._server_id, LABEL_OVERLAY: "1"},
            check_duplicate=True,
        )
        network_id = str(network["Id"])
        try:
            relay = self._relay()
            if relay is not None:
                try:
                    api.connect_container_to_network(relay, network_id)
                except docker.errors.APIError as exc:
                    # A relay removed meanwhile (gone), or its replacement, which names
                    # itself before it joins every overlay (joined already): fine.
                    if exc.status_code not in (403, 404, 409):
                        raise
        except BaseException:
            self.remove_own(network_id)
            raise
        return network_id

    def remove_own(self, network_id: str) -> None:
        """Remove a service's own overlay (never a shared one): the relay leaves it
        (this run's, or one an earlier run left), then it is removed once the
        service's task has let go of it."""
        api = self._api()
        try:
            labels = api.inspect_network(network_id).get("Labels") or {}
        except docker.errors.NotFound:
            return
        if labels.get(LABEL_OVERLAY) != "1" or labels.get(LABEL_SERVER) != self._server_id:
            return
        relays = [*self._mine(), f"{LABEL_RELAY}=1"]
        for relay in api.containers(all=True, filters={"label": relays}):
            with contextlib.suppress(docker.errors.APIError):
                api.disconnect_container_from_network(relay["Id"], network_id, force=True)
        deadline = time.monotonic() + OVERLAY_GONE_S
        while True:
            try:
                api.remove_network(network_id)
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError as exc:
                if time.monotonic() >= deadline:
                    log.warning(
                        "overlay %s is still in use (%s); left to the next prune",
                        network_id[:12],
                        exc,
                    )
                    return
            time.sleep(_RETRY_REMOVE_S)
        with self._lock:
            self._orphans.discard(network_id)

    def ensure_shared(self, name: str, *, internal: bool, subnet: str = "") -> str:
        """The id of the shared overlay `name`, made if missing (with `subnet`, else
        Swarm's default); one that exists but is of another kind is refused."""
        api = self._api()
        found = [n for n in api.networks(names=[name]) if n.get("Name") == name]
        if not found:
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
                    options=self._options,
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
        return str(attrs["Id"])
