"""Starting and removing agent containers: one way for sessions, pools and services.

A start makes the container's socket directory (where the runtime reaches agents
through Unix sockets), starts the
container and waits for its agent; whatever fails on the way is cleaned up, so
the caller sees either a ready container or an error and nothing left behind.
"""

from __future__ import annotations

from dataclasses import replace

from ..agent.identity import SESSION_UID_ENV
from ..backends import ResourceType
from ..config import Settings
from ..errors import BackendError
from ..runtime.agent import AgentClient
from ..runtime.base import LABEL_UID, ContainerRecord, Runtime
from ..runtime.images import ImageService
from ..runtime.sockets import SocketDirs
from ..runtime.wait import wait_for_agent
from .specs import ContainerRequest, build_spec
from .uids import SessionUids


class AgentContainers:
    """Starts containers whose agent answers, and removes them with their sockets.

    Args:
        settings: Server settings (limits, timeouts, the socket root).
        runtime: Starts and removes containers.
        agents: Waits for the agents and forgets their connections.
        images: Names the images.
        sockets: The containers' socket directories.
        uids: The session uids (one per session container; shared services keep
            their image's user).
    """

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        agents: AgentClient,
        images: ImageService,
        sockets: SocketDirs,
        uids: SessionUids | None = None,
    ) -> None:
        self._settings = settings
        self._runtime = runtime
        self._agents = agents
        self._images = images
        self.sockets = sockets
        self.uids = uids or SessionUids()

    async def start(self, resource: ResourceType, request: ContainerRequest) -> ContainerRecord:
        """Start a container of `resource` as `request` asks; wait until its agent answers.

        Raises:
            SessionError: Every session uid is taken.
            BackendError: Docker refused, the container died or its agent stayed
                silent; nothing of the attempt is left.
        """
        await self._check_optional_image(resource, request.image)
        uid = None if resource.shared else self.uids.take()
        if uid is not None:
            request = replace(
                request,
                labels={**request.labels, LABEL_UID: str(uid)},
                environment={**request.environment, SESSION_UID_ENV: str(uid)},
            )
        # On one engine every agent is reached through its socket; on a swarm over TCP.
        socket_dir = self.sockets.create() if self._runtime.agent_transport == "unix" else None
        image = self._images.tag(request.image or resource.image)
        spec = build_spec(self._settings, resource, request, image=image, socket_dir=socket_dir)
        try:
            record = await self._runtime.start(spec)
        except BaseException:
            if uid is not None:
                self.uids.release(uid)
            if socket_dir is not None:
                await self.sockets.remove(socket_dir)
            raise
        if uid is not None:
            self.uids.bind(record.id, uid)
        try:
            await wait_for_agent(
                self._runtime, self._agents, record, self._settings.container_start_timeout_s
            )
        except BaseException:
            await self.remove(record.id, record.agent_url)
            raise
        return record

    async def _check_optional_image(self, resource: ResourceType, image: str | None) -> None:
        """An optional image (vm-full) is never built by default: say how to build it."""
        names = [name for name, optional in resource.optional_images.items() if optional == image]
        if names and image is not None and not await self._images.is_present(image):
            raise BackendError(
                f"image {self._images.tag(image)} is not built: it is built only on "
                f"request, with `sandbox images build {names[0]}`"
            )

    async def remove(self, container_id: str, agent_url: str | None) -> None:
        """Remove a container, its agent's pooled connections, socket directory and uid."""
        await self._runtime.remove(container_id)
        self.uids.release_container(container_id)
        if agent_url is not None:
            await self._agents.forget(agent_url)
            await self.sockets.remove_for(agent_url)
