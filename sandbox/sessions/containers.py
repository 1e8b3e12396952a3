"""Starting and removing agent containers: one way for sessions, pools and services.

A start makes the container's socket directory, starts the
container and waits for its agent; whatever fails on the way is cleaned up, so
the caller sees either a ready container or an error and nothing left behind.
"""

from __future__ import annotations

from ..backends import ResourceType
from ..config import ResourceLimits, Settings
from ..runtime.agent import AgentClient
from ..runtime.docker import ContainerRecord, DockerRuntime
from ..runtime.images import ImageService
from ..runtime.sockets import SocketDirs
from ..runtime.wait import wait_for_agent
from .specs import build_spec


class AgentContainers:
    """Starts containers whose agent answers, and removes them with their sockets.

    Args:
        settings: Server settings (limits, timeouts, the socket root).
        runtime: Starts and removes containers.
        agents: Waits for the agents and forgets their connections.
        images: Names the images.
        sockets: The containers' socket directories.
    """

    def __init__(
        self,
        settings: Settings,
        runtime: DockerRuntime,
        agents: AgentClient,
        images: ImageService,
        sockets: SocketDirs,
    ) -> None:
        self._settings = settings
        self._runtime = runtime
        self._agents = agents
        self._images = images
        self.sockets = sockets

    async def start(
        self,
        resource: ResourceType,
        *,
        name: str,
        token: str,
        limits: ResourceLimits,
        network: bool,
        labels: dict[str, str],
        environment: dict[str, str] | None = None,
        volumes: dict[str, dict[str, str]] | None = None,
    ) -> ContainerRecord:
        """Start a container of `resource` and wait until its agent answers.

        Raises:
            BackendError: Docker refused, the container died or its agent stayed
                silent; nothing of the attempt is left.
        """
        socket_dir = self.sockets.create()  # every agent is reached through its socket
        spec = build_spec(
            self._settings,
            resource,
            image=self._images.tag(resource.image),
            name=name,
            token=token,
            limits=limits,
            network=network,
            labels=labels,
            environment=environment,
            volumes=volumes,
            socket_dir=socket_dir,
        )
        try:
            record = await self._runtime.start(spec)
        except BaseException:
            await self.sockets.remove(socket_dir)
            raise
        try:
            await wait_for_agent(
                self._runtime, self._agents, record, self._settings.container_start_timeout_s
            )
        except BaseException:
            await self.remove(record.id, record.agent_url)
            raise
        return record

    async def remove(self, container_id: str, agent_url: str | None) -> None:
        """Remove a container, its agent's pooled connections and its socket directory."""
        await self._runtime.remove(container_id)
        if agent_url is not None:
            await self._agents.forget(agent_url)
            await self.sockets.remove_for(agent_url)
