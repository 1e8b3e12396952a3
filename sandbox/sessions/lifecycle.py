"""Session lifecycle: create (claim from a pool or start cold), refresh, destroy, sweep.

Creation is serialised per (tenant, worker, resource) key only: the Docker calls
of one worker's slow start never hold up another worker. A session's container
comes from a warm pool when one holds a container for its config, else it is
started cold; sessions of a shared resource type (rag) live in its service
container (`service_sessions`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from typing import Any

from ..backends import ResourceType, SessionConfig
from ..config import DEFAULT_TENANT
from ..errors import InvalidParams, SandboxError, SessionError
from ..runtime.docker import LABEL_RESOURCE, DockerUnavailable
from .applied import applied_config
from .capacity import Capacity
from .context import SessionContext
from .labels import session_labels
from .recovery import Recovery
from .service_sessions import ServiceSessions
from .setup_steps import run_config_setup
from .specs import ContainerRequest, container_name
from .table import Session, SessionKey, SessionState, new_session_id

log = logging.getLogger(__name__)

_DESTROY_CONCURRENCY = 16
_CLAIM_TIMEOUT_S = 10.0


class SessionLifecycle:
    """Creates and destroys sessions; owns the start counters.

    Args:
        ctx: The shared collaborators.
        service_sessions: Sessions inside shared services.
        capacity: Refuses a cold start past the server's limits.
        recovery: Creation waits for the start-up adoption.
    """

    def __init__(
        self,
        ctx: SessionContext,
        service_sessions: ServiceSessions,
        capacity: Capacity,
        recovery: Recovery,
    ) -> None:
        self._ctx = ctx
        self._service_sessions = service_sessions
        self._capacity = capacity
        self._recovery = recovery
        self.starts: Counter[str] = Counter()
        """Session starts by ``resource:outcome`` (``ok`` or ``failed``)."""

    # -- create -----------------------------------------------------------------

    def validated_config(self, resource: ResourceType, config: dict[str, Any]) -> SessionConfig:
        """`config` validated for `resource` and held to the operator's ceilings.

        The operator's `session_defaults` for `resource` (a config file's
        ``screen_size``, say) fill in what `config` leaves out.

        Raises:
            InvalidParams: A bad field, or one over the ceilings (naming it).
        """
        defaults = self._ctx.settings.session_defaults.get(resource.name, {})
        validated = self._ctx.registry.validate_config(resource, {**defaults, **config})
        validated.enforce_ceilings(
            self._ctx.settings.ceilings, self._ctx.settings.limits, resource.default_network
        )
        return validated

    async def create(
        self,
        worker_id: str,
        resource_type: str,
        config: dict[str, Any] | None = None,
        *,
        custom_name: str | None = None,
        auto_created: bool = False,
        tenant: str = DEFAULT_TENANT,
    ) -> tuple[Session, bool]:
        """Return the tenant's worker's session of `resource_type`, starting one if needed.

        Returns:
            The session, and whether this call created it.

        Raises:
            InvalidParams: Unknown resource type, a bad config field, or one over
                the operator's ceilings.
            SessionError: The container or its agent failed to start, or the server
                is at its container limit or pid budget.
        """
        resource = self._ctx.registry.resource(resource_type)
        session_config = self.validated_config(resource, config or {})
        await self._recovery.wait()
        key = (tenant, worker_id, resource.name)
        existing = self._ready(key)
        if existing is not None:
            return existing, False
        async with self._ctx.table.lock(key):
            existing = self._ready(key)
            if existing is not None:
                return existing, False
            held = len(self._ctx.table.of_worker(worker_id, tenant))
            if held >= self._ctx.settings.max_sessions_per_worker:
                raise SessionError(
                    f"worker {worker_id!r} holds {held} sessions, the most one worker may "
                    "(max_sessions_per_worker); destroy one first"
                )
            session = self._new_session(resource, session_config, key, custom_name, auto_created)
            await self._start(session, resource, session_config)
            return session, True

    def _ready(self, key: SessionKey) -> Session | None:
        """The key's ready session, its lease pushed; None if there is none."""
        existing = self._ctx.table.get(key)
        if existing is None or existing.state is not SessionState.READY:
            return None
        existing.touch(self._ctx.settings.session_ttl_s, self._ctx.table.clock())
        return existing

    def _new_session(
        self,
        resource: ResourceType,
        config: SessionConfig,
        key: SessionKey,
        custom_name: str | None,
        auto_created: bool,
    ) -> Session:
        tenant, worker_id = key[0], key[1]
        now = self._ctx.table.clock()
        session_id = new_session_id(
            resource.name, worker_id, self._ctx.table.next_seq(worker_id, tenant)
        )
        return Session(
            session_id=session_id,
            session_name=custom_name or session_id,
            worker_id=worker_id,
            resource_type=resource.name,
            config=applied_config(resource, config, self._ctx.settings.limits),
            token=secrets.token_urlsafe(24),
            created_at=now,
            expires_at=now + self._ctx.settings.session_ttl_s,
            last_used_at=now,
            auto_created=auto_created,
            tenant=tenant,
        )

    async def _start(self, session: Session, resource: ResourceType, config: SessionConfig) -> None:
        """Give `session` a container (claimed or cold) or open it in its service.

        Raises:
            SessionError: It could not start (the cause in `data`); it left the table.
            DockerUnavailable: The engine did not answer.
        """
        self._ctx.table.put(session)
        try:
            if resource.shared:
                await self._service_sessions.follow(session, resource)
            elif not await self._claim(session, resource, config):
                self._capacity.check_cold_start(session)
                await self._start_container(session, resource, config)
            if not resource.shared:  # claimed or cold: the config's setup steps (vm)
                await run_config_setup(self._ctx.agents, session, config)
                await self._ctx.recordings.start(session)  # then its recording, if asked
        except BaseException as exc:
            self._ctx.table.pop(session.key, session)
            if not resource.shared:
                self._ctx.background.spawn(self.release(session))
            self.starts[f"{resource.name}:failed"] += 1
            if isinstance(exc, DockerUnavailable):
                exc.session_id = session.session_id
                raise  # 2001: the engine, not the session, is what failed
            if isinstance(exc, InvalidParams):
                raise  # 1002: a setup step the agent refused, named
            if isinstance(exc, SandboxError):
                raise SessionError(
                    f"could not start the {resource.name} session: {exc.message}",
                    session_id=session.session_id,
                    data=exc.data,
                ) from exc
            raise
        session.state = SessionState.READY
        self.starts[f"{resource.name}:ok"] += 1
        log.info(
            "session %s started for worker %s in %.0f ms",
            session.session_id,
            session.worker_id,
            (self._ctx.table.clock() - session.created_at) * 1000,
        )

    async def _claim(self, session: Session, resource: ResourceType, config: SessionConfig) -> bool:
        """Make a warm pool's container the session's; False when the pool has none."""
        member = await self._ctx.pools.claim(resource, config)
        if member is None:
            return False
        # Labels cannot change on a running container: the agent keeps them instead,
        # signed, so a restarted server can tell whose session this pool container
        # became and the container cannot make itself another worker's (nor, with
        # the server's own record of the claim, an unclaimed pool member again).
        self._ctx.claimed.add(member.container_id)
        meta = self._ctx.claims.sign(
            member.container_id,
            {LABEL_RESOURCE: resource.name, **session_labels(session, config)},
        )
        try:
            await self._ctx.agents.call(
                member.agent_url, member.token, "agent.meta", {"set": meta}, _CLAIM_TIMEOUT_S
            )
        except SandboxError:
            self._ctx.background.spawn(
                self._ctx.containers.remove(member.container_id, member.agent_url)
            )
            return False
        session.container_id, session.agent_url = member.container_id, member.agent_url
        session.token = member.token
        return True

    async def _start_container(
        self, session: Session, resource: ResourceType, config: SessionConfig
    ) -> None:
        request = ContainerRequest(
            name=container_name(session.session_id),
            token=session.token,
            limits=config.limits(self._ctx.settings.limits),
            network=bool(session.config["network"]),
            labels=session_labels(session, config),
            environment=resource.environment(config),
            image=resource.image_for(config),
        )
        record = await self._ctx.containers.start(resource, request)
        session.container_id, session.agent_url = record.id, record.agent_url

    async def release(self, session: Session) -> None:
        """Remove a dedicated session's container and its socket directory."""
        if session.container_id is not None:
            await self._ctx.containers.remove(session.container_id, session.agent_url)
            self._ctx.claimed.discard(session.container_id)

    # -- refresh and destroy ------------------------------------------------------

    def refresh(
        self, worker_id: str, resource_type: str | None = None, *, tenant: str = DEFAULT_TENANT
    ) -> list[Session]:
        """Push the expiry of one or all of the tenant's worker's sessions.

        Raises:
            SessionError: The worker has no such session.
        """
        sessions = self._select(tenant, worker_id, resource_type)
        now = self._ctx.table.clock()
        for session in sessions:
            session.touch(self._ctx.settings.session_ttl_s, now)
        return sessions

    async def destroy(
        self, worker_id: str, resource_type: str | None = None, *, tenant: str = DEFAULT_TENANT
    ) -> list[Session]:
        """Destroy one or all of the tenant's worker's sessions.

        Raises:
            SessionError: The worker has no such session.
        """
        sessions = self._select(tenant, worker_id, resource_type)
        await asyncio.gather(*(self.destroy_one(session) for session in sessions))
        return sessions

    async def destroy_all(self) -> int:
        """Destroy every session; returns how many there were."""
        sessions = self._ctx.table.all()
        limit = asyncio.Semaphore(_DESTROY_CONCURRENCY)

        async def one(session: Session) -> None:
            async with limit:
                await self.destroy_one(session)

        await asyncio.gather(*(one(s) for s in sessions), return_exceptions=True)
        return len(sessions)

    def _select(self, tenant: str, worker_id: str, resource_type: str | None) -> list[Session]:
        # Another tenant's session of the same worker id is as absent as none at all.
        if resource_type is None:
            sessions = self._ctx.table.of_worker(worker_id, tenant)
            if not sessions:
                raise SessionError(f"worker {worker_id!r} has no sessions")
            return sessions
        resource = self._ctx.registry.resource(resource_type)
        session = self._ctx.table.get((tenant, worker_id, resource.name))
        if session is None:
            raise SessionError(f"worker {worker_id!r} has no {resource.name} session")
        return [session]

    async def destroy_one(self, session: Session) -> None:
        """Take `session` out of the table and remove its container (or close it in its service)."""
        async with self._ctx.table.lock(session.key):
            if self._ctx.table.pop(session.key, session) is None:
                return  # destroyed meanwhile
            session.state = SessionState.DESTROYING
        resource = self._ctx.registry.resource(session.resource_type)
        service = self._ctx.services.current(resource.name) if resource.shared else None
        try:
            if service is not None:
                await self._service_sessions.close(resource, service, session.session_id)
            elif not resource.shared:
                # The video outlives the session: kept before the container goes.
                await self._ctx.recordings.collect(session)
                await self.release(session)
        except SandboxError:
            log.warning("could not clean up after %s", session.session_id, exc_info=True)
        log.info("session %s destroyed", session.session_id)

    async def sweep(self) -> int:
        """Destroy expired sessions once; returns how many."""
        expired = self._ctx.table.expired(self._ctx.table.clock())
        for session in expired:
            log.info("session %s expired", session.session_id)
        await asyncio.gather(*(self.destroy_one(s) for s in expired))
        return len(expired)
