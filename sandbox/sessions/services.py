"""Shared service containers: one per shared resource type (``rag``) and server.

A shared resource type's sessions do not own containers; they all talk to one
service container, started on first use (or at warmup), adopted after a server
restart, replaced when it dies, and removed at shutdown. Its data lives on named
volumes, so a replacement picks up where the old one stopped.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from ..backends import ResourceType
from ..config import Settings
from ..runtime.agent import AgentClient
from ..runtime.base import LABEL_MANAGED, LABEL_SERVER, LABEL_SERVICE, Runtime
from .containers import AgentContainers
from .specs import ContainerRequest, container_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceContainer:
    """A running service container and how to reach its agent."""

    resource: str
    container_id: str
    url: str
    token: str


class SharedServices:
    """Starts, adopts and removes the service containers of shared resource types.

    Args:
        settings: Server settings (server id, rag corpus, volume and limits).
        runtime: Finds containers and makes volumes.
        agents: Checks adopted agents.
        containers: Starts and removes the service containers.
    """

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        agents: AgentClient,
        containers: AgentContainers,
    ) -> None:
        self._settings = settings
        self._runtime = runtime
        self._agents = agents
        self._containers = containers
        self._current: dict[str, ServiceContainer] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def all(self) -> list[ServiceContainer]:
        """Every known service."""
        return list(self._current.values())

    def current(self, resource: str) -> ServiceContainer | None:
        """The service of `resource` as last known, without checking it."""
        return self._current.get(resource)

    async def ensure(self, resource: ResourceType) -> tuple[ServiceContainer, bool]:
        """The running service of `resource`, started (or adopted) if needed.

        Returns:
            The service, and whether this call started or adopted it (so the caller
            can pick up the sessions the service already holds).

        Raises:
            BackendError: The container failed to start or its agent to answer.
        """
        current = self._current.get(resource.name)
        if current is not None:
            return current, False
        async with self._locks.setdefault(resource.name, asyncio.Lock()):
            current = self._current.get(resource.name)
            if current is not None:
                return current, False
            service = await self._adopt(resource) or await self._start(resource)
            self._current[resource.name] = service
            return service, True

    def forget(self, resource: str, container_id: str) -> None:
        """Drop a service found dead, so the next `ensure` replaces it."""
        current = self._current.get(resource)
        if current is not None and current.container_id == container_id:
            del self._current[resource]

    async def adopt(self, resource: ResourceType) -> ServiceContainer | None:
        """Adopt a running service of `resource` left by an earlier run; remove dead ones."""
        async with self._locks.setdefault(resource.name, asyncio.Lock()):
            service = await self._adopt(resource)
            if service is not None:
                self._current[resource.name] = service
            return service

    async def remove_all(self) -> None:
        """Remove every service container (their volumes stay)."""
        services, self._current = list(self._current.values()), {}
        await asyncio.gather(*(self._containers.remove(s.container_id, s.url) for s in services))

    def _labels(self, resource: ResourceType) -> dict[str, str]:
        return {
            LABEL_MANAGED: "1",
            LABEL_SERVER: self._settings.server_id,
            LABEL_SERVICE: resource.name,
        }

    async def _adopt(self, resource: ResourceType) -> ServiceContainer | None:
        found = None
        for record in await self._runtime.find(self._labels(resource)):
            token = record.token
            usable = record.running and record.agent_url and token and found is None
            if usable and record.agent_url and await self._agents.is_ready(record.agent_url):
                found = ServiceContainer(resource.name, record.id, record.agent_url, str(token))
                continue
            await self._containers.remove(record.id, record.agent_url)
        if found is not None:
            log.info("adopted the %s service container %s", resource.name, found.container_id)
        return found

    async def _start(self, resource: ResourceType) -> ServiceContainer:
        environment, volumes = resource.service_setup(self._settings)
        for source in volumes:
            if not source.startswith("/"):  # a named volume, not a host path
                await self._runtime.ensure_volume(source, self._labels(resource))
        token = secrets.token_urlsafe(24)
        request = ContainerRequest(
            name=container_name(self._settings.server_id, resource.name, secrets.token_hex(3)),
            token=token,
            limits=resource.service_limits(self._settings),
            network=resource.default_network,
            labels={LABEL_SERVICE: resource.name},
            environment=environment,
            volumes=volumes,
        )
        record = await self._containers.start(resource, request)
        assert record.agent_url is not None  # the start waited for the agent there
        log.info("started the %s service container %s", resource.name, record.id)
        return ServiceContainer(resource.name, record.id, record.agent_url, token)
