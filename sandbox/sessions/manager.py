"""The session manager: the one object the server talks to about sessions.

It wires the session modules together and keeps the server's view of them in one
place; each job lives in its own module:

- `lifecycle`: create (claim from a warm pool or start cold), refresh, destroy, sweep;
- `calls`: run a tool in the worker's session, diagnose a silent agent;
- `service_sessions`: the shared-service protocol (rag): open, adopt, close, warm, status;
- `recovery`: adopt the containers of an earlier run, in the background, with deadlines;
- `labels`: the one codec between Docker labels (or a signed claim) and a `Session`;
- `capacity`: `max_containers` and the pid budget; `pools`: warm pools;
- `context`: what every job shares (settings, table, containers, pools, ...), built
  once here and handed to each job, so a job's constructor names only the other
  jobs it calls.

Docker is the source of truth: a cold-started container carries its session's
labels, a claimed pool container holds them in its agent (``agent.meta``) signed
by the server (`claims`), and a shared service lists its sessions, so a restarted
server rebuilds its table, in the background: see `SessionManager.start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import Any

from ..config import DEFAULT_TENANT, Settings
from ..errors import InvalidParams
from ..protocol import PoolStatus, ServerStats
from ..recording.videos import VideoStore
from ..runtime.agent import AgentClient
from ..runtime.base import Runtime
from ..runtime.images import ImageService
from ..runtime.sockets import SocketDirs
from .calls import CallResult, ToolCalls
from .capacity import Capacity
from .claims import ClaimedContainers, ClaimSigner
from .containers import AgentContainers
from .context import SessionContext
from .lifecycle import SessionLifecycle
from .pools import WarmPools
from .recovery import Recovery
from .registry import ToolRegistry
from .screen_recordings import ScreenRecordings, abandoned_after_s
from .service_sessions import ServiceSessions
from .services import SharedServices
from .table import Clock, Session, SessionTable
from .tasks import Background

log = logging.getLogger(__name__)

__all__ = ["CallResult", "SessionManager"]


class SessionManager:
    """Owns the session table and everything that changes it.

    The server calls `create`, `refresh`, `destroy`, `destroy_all`, `sweep` (of
    `SessionLifecycle`), `execute` (`ToolCalls`), `warm_service`, `service_status`
    (`ServiceSessions`), `recover` and `wait_for_recovery` (`Recovery`): each is
    that job's own method. Pools, stats and the manager's start and stop are here.

    Args:
        settings: Server settings (TTLs, limits, timeouts).
        runtime: Starts and removes containers.
        agents: Calls the agents inside them.
        registry: Resource types and tools.
        images: Tells whether a resource type's image exists.
        clock: The time sessions are created, used and expire by (`time.time`;
            tests pass a fake to expire sessions without sleeping).
    """

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        agents: AgentClient,
        registry: ToolRegistry,
        images: ImageService,
        clock: Clock = time.time,
    ) -> None:
        self.clock = clock
        """The time sessions are created, used and expire by."""
        sockets = SocketDirs(settings.socket_dir, settings.server_id)
        self._claim_key = sockets.base.with_name(f"{sockets.base.name}.claim-key")
        sockets.prepare()  # refuses a directory another user planted
        containers = AgentContainers(settings, runtime, agents, images, sockets)
        # The pools ask the capacity (which counts their containers) before each start;
        # the capacity is made from the context, which holds the pools: hence the lambda.
        capacity: Capacity
        pools = WarmPools(settings, containers, agents, lambda: capacity.pool_may_start())
        self._ctx = ctx = SessionContext(
            settings=settings,
            runtime=runtime,
            agents=agents,
            registry=registry,
            images=images,
            table=SessionTable(clock),
            sockets=sockets,
            background=Background(),
            containers=containers,
            services=SharedServices(settings, runtime, agents, containers),
            pools=pools,
            claims=ClaimSigner.load(self._claim_key, settings.server_id),
            claimed=ClaimedContainers(self._claim_key.with_suffix(".claimed")),
            recordings=ScreenRecordings(
                settings.screen_recording,
                agents,
                VideoStore(
                    settings.screen_recording.dir,
                    settings.screen_recording.total_max_bytes,
                    settings.screen_recording.max_age_s,
                    abandoned_after_s(settings.screen_recording),
                ),
            ),
        )
        self._capacity = capacity = Capacity(ctx)
        shared = ServiceSessions(ctx)
        self._recovery = recovery = Recovery(ctx, shared)
        self._lifecycle = lifecycle = SessionLifecycle(ctx, shared, capacity, recovery)
        calls = ToolCalls(ctx, lifecycle, shared)
        self._sweeper: asyncio.Task[None] | None = None
        # What the server asks of sessions is each job's own method, under one roof.
        self.create = lifecycle.create
        self.refresh = lifecycle.refresh
        self.destroy = lifecycle.destroy
        self.destroy_all = lifecycle.destroy_all
        self.sweep = lifecycle.sweep
        self.execute = calls.execute
        self.look = calls.look
        self.open_stream = calls.open_stream
        self.warm_service = shared.warm
        self.service_status = shared.status
        self.recover = recovery.recover
        self.wait_for_recovery = recovery.wait
        self.videos: VideoStore = ctx.recordings.store
        """The kept screen recordings of vm sessions."""
        self.calls: Counter[str] = calls.calls
        """Finished tool calls by ``tool:code``."""
        self.starts: Counter[str] = lifecycle.starts
        """Session starts by ``resource:outcome`` (``ok`` or ``failed``)."""

    # -- lifecycle of the manager ----------------------------------------------

    async def start(self) -> None:
        """Start adopting this server's live containers (in the background) and sweeping.

        The adoption is a task, so the server answers at once (``/health`` first)
        even when every agent of the earlier run hangs: each container has
        `recovery_timeout_s` to say what it is, else it is removed. A request that
        needs a new session waits for the adoption first (`wait_for_recovery`), so
        it never starts a second session beside the worker's old one; every other
        request answers from the table as it stands. With the Docker engine down
        the server still starts (``/health`` says so); the sweeper retries.
        """
        for pool_settings in self._ctx.settings.pools:
            self.set_pool_size(pool_settings.resource, pool_settings.size, pool_settings.config)
        self._recovery.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="session-sweeper")

    @property
    def recovering(self) -> bool:
        """Whether containers of an earlier run are still being adopted."""
        return self._recovery.running

    async def stop(self) -> None:
        """Stop sweeping and destroy every session (unless settings keep them)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self._recovery.cancel()  # the rest is adopted by the next start
        await self._ctx.pools.remove_all()
        await self._ctx.background.drain()
        if self._ctx.settings.keep_sessions_on_shutdown:
            log.info("keeping %d session(s) for the next start", len(self._ctx.table))
            return
        await self.destroy_all()
        await self._ctx.services.remove_all()
        self._ctx.sockets.close()
        self._claim_key.unlink(missing_ok=True)  # no claimed container is left to verify
        self._ctx.claimed.remove_all()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._ctx.settings.sweep_interval_s)
            try:
                if not self._recovery.recovered:
                    await self._recovery.try_recover()
                await self.sweep()
            except Exception:  # a failed sweep must not end sweeping
                log.exception("session sweep failed")

    # -- queries ----------------------------------------------------------------

    def sessions(self, worker_id: str | None = None, *, tenant: str | None = None) -> list[Session]:
        """One worker's sessions, or all of them; of one tenant, or of every tenant.

        A worker id means nothing without its tenant: with `worker_id`, `tenant`
        None is the default tenant.
        """
        if worker_id is None:
            return self._ctx.table.all(tenant)
        return self._ctx.table.of_worker(worker_id, tenant or DEFAULT_TENANT)

    def origin(self, session: Session) -> str:
        """Where the session's container came from: ``pool`` (claimed from a warm
        pool), ``cold`` (started for it) or ``service`` (a shared service's)."""
        if self._ctx.registry.resource(session.resource_type).shared:
            return "service"
        if session.container_id is not None and session.container_id in self._ctx.claimed:
            return "pool"
        return "cold"

    def stats(self) -> ServerStats:
        """Counts for the status endpoints and the metrics."""
        sessions = self._ctx.table.all()
        return ServerStats(
            sessions=len(sessions),
            workers=len({s.worker_id for s in sessions}),
            by_resource=dict(Counter(s.resource_type for s in sessions)),
            by_state=dict(Counter(s.state.value for s in sessions)),
            calls=dict(self.calls),
            starts=dict(self.starts),
            containers=self._capacity.container_count(),
            pools=[pool.status() for pool in self._ctx.pools.all()],
        )

    # -- pools ------------------------------------------------------------------

    def set_pool_size(
        self, resource_type: str, size: int, config: dict[str, Any] | None = None
    ) -> PoolStatus:
        """Keep `size` ready containers for sessions of `resource_type` with `config`.

        Raises:
            InvalidParams: Unknown or shared resource type, or a bad config field.
        """
        resource = self._ctx.registry.resource(resource_type)
        if resource.shared:
            raise InvalidParams(
                f"{resource.name} sessions share one service container; they have no pool",
                field="pool_size",
            )
        pool = self._ctx.pools.pool(
            resource, self._lifecycle.validated_config(resource, config or {})
        )
        if self._recovery.recovered:
            self._ctx.pools.set_target(pool, size)
        else:
            pool.target = size  # filled once the containers of an earlier run are adopted
        return pool.status()

    def pool_status(self, resource_type: str) -> list[PoolStatus]:
        """The pools of one resource type."""
        return [pool.status() for pool in self._ctx.pools.of(resource_type)]

    async def wait_for_pools(self, resource_types: list[str], timeout: float) -> None:
        """Until the pools of these resource types are full (or failing), or `timeout`."""
        pools = [pool for name in resource_types for pool in self._ctx.pools.of(name)]
        await self._ctx.pools.wait_filled(pools, timeout)
