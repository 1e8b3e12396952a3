"""The swarm relay's container: started on the manager, joined to the sessions' overlays.

A server on the manager's host cannot reach an overlay network: it talks to the
agents through the relay (`relay_server`), one small container on the manager
joined to every session's overlay and published on 127.0.0.1 only, opened by a
secret made at each start. Its program is handed to ``python3 -c`` in any image
that has Python, so it needs no image of its own.

Every method makes blocking Docker calls: the runtime runs them in its threads.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import docker.errors

from ..errors import BackendError
from . import relay_server
from .base import LABEL_MANAGED, LABEL_RELAY, LABEL_SERVER
from .relay import RelayAddress
from .swarm_overlays import SwarmOverlays
from .swarm_services import AGENT_PORT

log = logging.getLogger(__name__)

RELAY_PORT = 7400
"""The relay's port inside its container (published on 127.0.0.1, any host port)."""
LISTEN_TIMEOUT_S = 15.0
_POLL_S = 0.02


class RelayContainer:
    """The relay of the server `server_id`: at most one container, this run's.

    Args:
        api: The manager engine's low-level API client (called for each use).
        server_id: Stamped on the container, and in its name.
        image: Image the relay runs in (any with ``python3``).
        overlays: The server's overlays, which the relay joins.
    """

    def __init__(
        self, api: Callable[[], Any], *, server_id: str, image: str, overlays: SwarmOverlays
    ) -> None:
        self._api = api
        self._server_id = server_id
        self._image = image
        self._overlays = overlays
        self.container_id: str | None = None
        """The running relay's container, once it listens; overlays made from then
        on are joined by whoever makes them."""

    def start(self) -> RelayAddress:
        """A fresh relay for this server (one left by an earlier run is replaced),
        joined to every overlay of the server's services.

        Raises:
            BackendError: It exited, or did not listen within `LISTEN_TIMEOUT_S`.
        """
        api = self._api()
        self.remove_all()
        labels = {LABEL_MANAGED: "1", LABEL_SERVER: self._server_id, LABEL_RELAY: "1"}
        secret = secrets.token_urlsafe(24)
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
            self._image,
            command=["python3", "-I", "-c", _relay_source()],
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
            self.container_id = container_id
            for network_id in self._overlays.own_ids():
                # Removed meanwhile, or joined by its creator already: fine.
                with contextlib.suppress(docker.errors.APIError):
                    api.connect_container_to_network(container_id, network_id)
        except BaseException:
            self.container_id = None
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(container_id, force=True)
            raise
        log.info("swarm relay %s listens on 127.0.0.1:%d", container_id[:12], port)
        return RelayAddress("127.0.0.1", port, secret)

    def remove_all(self) -> None:
        """Remove every relay of this server: one an earlier run left (so that the
        overlays it was on can be pruned), or this run's lost one."""
        api = self._api()
        labels = [f"{LABEL_MANAGED}=1", f"{LABEL_SERVER}={self._server_id}", f"{LABEL_RELAY}=1"]
        for old in api.containers(all=True, filters={"label": labels}):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(old["Id"], force=True)
        self.container_id = None

    def remove(self) -> None:
        """Remove this run's relay, if it started (a restarted server starts a new one)."""
        if self.container_id is not None:
            with contextlib.suppress(docker.errors.APIError):
                self._api().remove_container(self.container_id, force=True)
            self.container_id = None


def _relay_source() -> str:
    """The relay program, as ``python3 -c`` runs it."""
    with open(relay_server.__file__, encoding="utf-8") as file:
        return file.read()


def _published_port(attrs: dict[str, Any]) -> int:
    ports = ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{RELAY_PORT}/tcp")
    if not ports:
        raise BackendError("the swarm relay's port was not published")
    return int(ports[0]["HostPort"])


def _wait_listening(api: Any, container_id: str, timeout: float = LISTEN_TIMEOUT_S) -> None:
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
