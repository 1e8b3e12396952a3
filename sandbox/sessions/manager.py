"""Session lifecycle: create, call, refresh, expire, destroy, adopt after a restart.

Creation is serialised per (worker, resource) key only: the Docker calls of one
worker's slow start never hold up another worker. A session's container comes
from a warm pool when one holds a container for its config, else it is started
cold; sessions of a shared resource type (rag) live in its service container.

Docker is the source of truth: a cold-started container carries its session's
labels, a claimed pool container holds them in its agent (``agent.meta``) signed
by the server (`claims`), and a shared service lists its sessions, so a restarted
server rebuilds its table, in the background: see `SessionManager.start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..backends import ResourceType, SessionConfig, ToolSpec
from ..config import DEFAULT_TENANT, Settings
from ..errors import BackendError, InvalidParams, SandboxError, SandboxTimeout, SessionError
from ..runtime.agent import AgentClient, AgentNotReady, AgentUnreachable
from ..runtime.docker import (
    LABEL_AUTO,
    LABEL_CONFIG,
    LABEL_CREATED,
    LABEL_MANAGED,
    LABEL_NAME,
    LABEL_POOL,
    LABEL_RESOURCE,
    LABEL_SERVER,
    LABEL_SERVICE,
    LABEL_SESSION,
    LABEL_WORKER,
    ContainerRecord,
    DockerRuntime,
    DockerUnavailable,
)
from ..runtime.images import ImageService
from ..runtime.sockets import SocketDirs
from .claims import ClaimedContainers, ClaimSigner, ForgedClaim
from .containers import AgentContainers
from .pools import WarmPools
from .registry import ToolRegistry
from .services import ServiceContainer, SharedServices
from .specs import container_name
from .table import (
    LABEL_TENANT,
    Session,
    SessionKey,
    SessionState,
    SessionTable,
    new_session_id,
)

log = logging.getLogger(__name__)

_DESTROY_CONCURRENCY = 16
# Opening and closing a session in a shared service is bookkeeping: quick.
_SERVICE_CALL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class CallResult:
    """A tool call's data and where it ran."""

    data: dict[str, Any]
    tool: ToolSpec
    session: Session


class SessionManager:
    """Owns the session table and everything that changes it.

    Args:
        settings: Server settings (TTLs, limits, timeouts).
        runtime: Starts and removes containers.
        agents: Calls the agents inside them.
        registry: Resource types and tools.
        images: Tells whether a resource type's image exists.
    """

    def __init__(
        self,
        settings: Settings,
        runtime: DockerRuntime,
        agents: AgentClient,
        registry: ToolRegistry,
        images: ImageService,
    ) -> None:
        self._settings = settings
        self._runtime = runtime
        self._agents = agents
        self._registry = registry
        self._images = images
        self._table = SessionTable()
        self._sockets = SocketDirs(settings.socket_dir, settings.server_id)
        self._containers = AgentContainers(settings, runtime, agents, images, self._sockets)
        self._services = SharedServices(settings, runtime, agents, self._containers)
        self._pools = WarmPools(
            settings, self._containers, agents, self.applied_config, self._pool_may_start
        )
        self._warming: dict[str, str | None] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._recovered = False
        self._recovery: asyncio.Task[None] | None = None
        self._recovery_lock = asyncio.Lock()
        self._claim_key = self._sockets.base.with_name(f"{self._sockets.base.name}.claim-key")
        self._claims = ClaimSigner.load(self._claim_key, settings.server_id)
        self._claimed = ClaimedContainers(self._claim_key.with_suffix(".claimed"))
        self.calls: Counter[str] = Counter()
        """Finished tool calls by ``tool:code``."""
        self.starts: Counter[str] = Counter()
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
        for pool_settings in self._settings.pools:
            self.set_pool_size(pool_settings.resource, pool_settings.size, pool_settings.config)
        self._recovery = asyncio.create_task(self._try_recover(), name="session-recovery")
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="session-sweeper")

    @property
    def recovering(self) -> bool:
        """Whether containers of an earlier run are still being adopted."""
        return not self._recovered and self._recovery is not None and not self._recovery.done()

    async def _try_recover(self) -> None:
        async with self._recovery_lock:  # the start-up task and the sweeper's retries
            if self._recovered:
                return
            try:
                await self.recover()
            except BackendError as exc:
                log.warning("cannot adopt session containers yet: %s", exc.message)
                return
            except Exception:  # a background task: log it, the sweeper retries
                log.exception("adopting the containers of an earlier run failed")
                return
            self._recovered = True
            self._pools.refill_all()

    async def wait_for_recovery(self) -> None:
        """Wait for the start-up adoption, for at most the time it can take.

        Past that bound (a Docker engine that hangs) go ahead as without it: the
        adoption then keeps whichever session is in the table and removes the other.
        """
        task = self._recovery
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=2 * self._settings.recovery_timeout_s + 5)

    async def stop(self) -> None:
        """Stop sweeping and destroy every session (unless settings keep them)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._recovery is not None and not self._recovery.done():
            self._recovery.cancel()  # the rest is adopted by the next start
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        await self._pools.remove_all()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._settings.keep_sessions_on_shutdown:
            log.info("keeping %d session(s) for the next start", len(self._table))
            return
        await self.destroy_all()
        await self._services.remove_all()
        self._sockets.close()
        self._claim_key.unlink(missing_ok=True)  # no claimed container is left to verify
        self._claimed.remove_all()

    # -- queries ----------------------------------------------------------------

    def sessions(self, worker_id: str | None = None, *, tenant: str | None = None) -> list[Session]:
        """One worker's sessions, or all of them; of one tenant, or of every tenant.

        A worker id means nothing without its tenant: with `worker_id`, `tenant`
        None is the default tenant.
        """
        if worker_id is None:
            return self._table.all(tenant)
        return self._table.of_worker(worker_id, tenant or DEFAULT_TENANT)

    def stats(self) -> dict[str, Any]:
        """Counts for the status endpoints."""
        sessions = self._table.all()
        return {
            "sessions": len(sessions),
            "workers": len({s.worker_id for s in sessions}),
            "by_resource": dict(Counter(s.resource_type for s in sessions)),
            "by_state": dict(Counter(s.state.value for s in sessions)),
            "calls": dict(self.calls),
            "starts": dict(self.starts),
            "containers": self._container_count(),
            "pools": [pool.status() for pool in self._pools.all()],
        }

    def _container_count(self) -> int:
        """Containers of this server: dedicated sessions (starting too), pools, services."""
        dedicated = sum(
            1 for s in self._table.all() if not self._registry.resource(s.resource_type).shared
        )
        return dedicated + self._pools.container_count() + len(self._services.all())

    def _pids_in_use(self) -> int:
        """The pids limits of this server's containers, added up (see `pid_budget`)."""
        total = 0
        for session in self._table.all():
            if not self._registry.resource(session.resource_type).shared:
                total += int(session.config.get("pids") or self._settings.limits.pids)
        for pool in self._pools.all():
            total += (len(pool.ready) + pool.starting) * int(pool.applied["pids"])
        for service in self._services.all():
            resource = self._registry.resource(service.resource)
            total += resource.service_limits(self._settings).pids
        return total

    def _pool_may_start(self) -> bool:
        largest = max((int(pool.applied["pids"]) for pool in self._pools.all()), default=0)
        return (
            self._container_count() < self._settings.max_containers
            and self._pids_in_use() + largest <= self._settings.pid_budget
        )

    # -- pools ------------------------------------------------------------------

    def set_pool_size(
        self, resource_type: str, size: int, config: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Keep `size` ready containers for sessions of `resource_type` with `config`.

        Raises:
            InvalidParams: Unknown or shared resource type, or a bad config field.
        """
        resource = self._registry.resource(resource_type)
        if resource.shared:
            raise InvalidParams(
                f"{resource.name} sessions share one service container; they have no pool",
                field="pool_size",
            )
        validated = self._registry.validate_config(resource, config or {})
        validated.enforce_ceilings(
            self._settings.ceilings, self._settings.limits, resource.default_network
        )
        pool = self._pools.pool(resource, validated)
        if self._recovered:
            self._pools.set_target(pool, size)
        else:
            pool.target = size  # filled once the containers of an earlier run are adopted
        return pool.status()

    def pool_status(self, resource_type: str) -> list[dict[str, Any]]:
        """The pools of one resource type."""
        return [pool.status() for pool in self._pools.of(resource_type)]

    async def wait_for_pools(self, resource_types: list[str], timeout: float) -> None:
        """Until the pools of these resource types are full (or failing), or `timeout`."""
        pools = [pool for name in resource_types for pool in self._pools.of(name)]
        await self._pools.wait_filled(pools, timeout)

    # -- create -----------------------------------------------------------------

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
        resource = self._registry.resource(resource_type)
        session_config = self._registry.validate_config(resource, config or {})
        session_config.enforce_ceilings(
            self._settings.ceilings, self._settings.limits, resource.default_network
        )
        await self.wait_for_recovery()
        key = (tenant, worker_id, resource.name)
        existing = self._table.get(key)
        if existing is not None and existing.state is SessionState.READY:
            existing.touch(self._settings.session_ttl_s)
            return existing, False
        async with self._table.lock(key):
            existing = self._table.get(key)
            if existing is not None and existing.state is SessionState.READY:
                existing.touch(self._settings.session_ttl_s)
                return existing, False
            held = len(self._table.of_worker(worker_id, tenant))
            if held >= self._settings.max_sessions_per_worker:
                raise SessionError(
                    f"worker {worker_id!r} holds {held} sessions, the most one worker may "
                    "(max_sessions_per_worker); destroy one first"
                )
            session = await self._start(resource, session_config, key, custom_name, auto_created)
            return session, True

    async def _start(
        self,
        resource: ResourceType,
        config: SessionConfig,
        key: SessionKey,
        custom_name: str | None,
        auto_created: bool,
    ) -> Session:
        tenant, worker_id = key[0], key[1]
        now = time.time()
        seq = self._table.next_seq(worker_id, tenant)
        session_id = new_session_id(resource.name, worker_id, seq)
        applied = self.applied_config(resource, config)
        session = Session(
            session_id=session_id,
            session_name=custom_name or session_id,
            worker_id=worker_id,
            resource_type=resource.name,
            config=applied,
            token=secrets.token_urlsafe(24),
            created_at=now,
            expires_at=now + self._settings.session_ttl_s,
            last_used_at=now,
            auto_created=auto_created,
            tenant=tenant,
        )
        self._table.put(session)
        try:
            if resource.shared:
                await self._follow_service(session, resource)
            elif not await self._claim(session, resource, config):
                self._check_capacity(session)
                await self._start_container(session, resource, config)
        except BaseException as exc:
            self._table.pop(key, session)
            if not resource.shared:
                self._spawn(self._release(session))
            self.starts[f"{resource.name}:failed"] += 1
            if isinstance(exc, DockerUnavailable):
                exc.session_id = session_id
                raise  # 2001: the engine, not the session, is what failed
            if isinstance(exc, SandboxError):
                raise SessionError(
                    f"could not start the {resource.name} session: {exc.message}",
                    session_id=session_id,
                    data=exc.data,
                ) from exc
            raise
        session.state = SessionState.READY
        self.starts[f"{resource.name}:ok"] += 1
        log.info(
            "session %s started for worker %s in %.0f ms",
            session_id,
            worker_id,
            (time.time() - now) * 1000,
        )
        return session

    def _check_capacity(self, session: Session) -> None:
        """Refuse a cold start past `max_containers` or the pid budget.

        The session is already in the table (so counted) while this runs.
        """
        if self._container_count() > self._settings.max_containers:
            raise SessionError(
                f"the server runs {self._settings.max_containers} containers, its "
                "limit (max_containers); try again when sessions end"
            )
        in_use, budget = self._pids_in_use(), self._settings.pid_budget
        if in_use > budget:
            asked = int(session.config["pids"])
            raise SessionError(
                f"the server's containers may hold {in_use - asked} pids and this session "
                f"asks for {asked} more, over the server's pid budget of {budget} (setting "
                "pid_budget); ask for fewer pids or try again when sessions end"
            )

    def applied_config(self, resource: ResourceType, config: SessionConfig) -> dict[str, Any]:
        """The session's config with the server's defaults filled in."""
        limits = config.limits(self._settings.limits)
        applied = config.model_dump(exclude_none=True)
        applied.update(
            memory=limits.memory,
            cpus=limits.cpus,
            pids=limits.pids,
            network=resource.default_network if config.network is None else config.network,
        )
        return applied

    async def _claim(self, session: Session, resource: ResourceType, config: SessionConfig) -> bool:
        """Make a warm pool's container the session's; False when the pool has none."""
        member = await self._pools.claim(resource, config)
        if member is None:
            return False
        # Labels cannot change on a running container: the agent keeps them instead,
        # signed, so a restarted server can tell whose session this pool container
        # became and the container cannot make itself another worker's (nor, with
        # the server's own record of the claim, an unclaimed pool member again).
        self._claimed.add(member.container_id)
        meta = self._claims.sign(
            member.container_id,
            {LABEL_RESOURCE: resource.name, **self._session_labels(session, config)},
        )
        try:
            await self._agents.call(
                member.agent_url, member.token, "agent.meta", {"set": meta}, 10.0
            )
        except SandboxError:
            self._spawn(self._containers.remove(member.container_id, member.agent_url))
            return False
        session.container_id, session.agent_url = member.container_id, member.agent_url
        session.token = member.token
        return True

    def _session_labels(self, session: Session, config: SessionConfig) -> dict[str, str]:
        return {
            LABEL_TENANT: session.tenant,
            LABEL_WORKER: session.worker_id,
            LABEL_SESSION: session.session_id,
            LABEL_NAME: session.session_name,
            LABEL_CONFIG: json.dumps(config.model_dump(exclude_none=True), sort_keys=True),
            LABEL_CREATED: f"{session.created_at:.3f}",
            LABEL_AUTO: "1" if session.auto_created else "0",
        }

    async def _start_container(
        self, session: Session, resource: ResourceType, config: SessionConfig
    ) -> None:
        record = await self._containers.start(
            resource,
            name=container_name(session.session_id),
            token=session.token,
            limits=config.limits(self._settings.limits),
            network=bool(session.config["network"]),
            labels=self._session_labels(session, config),
            environment=resource.environment(config),
        )
        session.container_id, session.agent_url = record.id, record.agent_url

    async def _release(self, session: Session) -> None:
        """Remove a dedicated session's container and its socket directory."""
        if session.container_id is not None:
            await self._containers.remove(session.container_id, session.agent_url)
            self._claimed.discard(session.container_id)

    # -- shared services ------------------------------------------------------------

    async def _follow_service(self, session: Session, resource: ResourceType) -> None:
        """Point a shared-resource session at the running service, opening it there."""
        service, fresh = await self._services.ensure(resource)
        if fresh:
            await self._adopt_service_sessions(resource, service)
        if session.container_id == service.container_id:
            return
        await self._agents.call(
            service.url,
            service.token,
            f"{resource.name}.open_session",
            {"session": session.session_id, "worker": _service_owner(session)},
            _SERVICE_CALL_TIMEOUT_S,
        )
        session.container_id, session.agent_url = service.container_id, service.url
        session.token = service.token

    async def _adopt_service_sessions(
        self, resource: ResourceType, service: ServiceContainer
    ) -> None:
        """Put the sessions a service already holds (from before a restart) in the table."""
        data = await self._agents.call(
            service.url, service.token, f"{resource.name}.sessions", {}, _SERVICE_CALL_TIMEOUT_S
        )
        now = time.time()
        applied = self.applied_config(resource, resource.config_model())
        for entry in data.get("sessions", []):
            session_id = str(entry.get("session"))
            tenant, worker_id = _owner_from_service(str(entry.get("worker")))
            key = (tenant, worker_id, resource.name)
            known = self._table.get(key)
            if known is not None and known.session_id == session_id:
                continue
            if known is not None:  # the worker has a newer session: the old one is stale
                await self._close_in_service(resource, service, session_id)
                continue
            self._note_seq(worker_id, session_id, tenant)
            self._table.put(
                Session(
                    session_id=session_id,
                    session_name=session_id,
                    worker_id=worker_id,
                    resource_type=resource.name,
                    config=applied,
                    token=service.token,
                    created_at=float(entry.get("created_at") or now),
                    expires_at=now + self._settings.session_ttl_s,
                    last_used_at=now,
                    state=SessionState.READY,
                    container_id=service.container_id,
                    agent_url=service.url,
                    tenant=tenant,
                )
            )

    async def _close_in_service(
        self, resource: ResourceType, service: ServiceContainer, session_id: str
    ) -> None:
        await self._agents.call(
            service.url,
            service.token,
            f"{resource.name}.close_session",
            {"session": session_id},
            _SERVICE_CALL_TIMEOUT_S,
        )

    async def _wait_until_service_ready(
        self, session: Session, resource: ResourceType, timeout: float
    ) -> None:
        """Poll the service's status until it is no longer starting or indexing.

        Raises:
            SandboxTimeout: It was still busy after `timeout` seconds; the message
                says how far it got.
        """
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = await self._agents.call(
                str(session.agent_url), session.token, f"{resource.name}.status", {}, 5.0
            )
            if status.get("state") not in ("starting", "indexing"):
                return
            await asyncio.sleep(0.1)
        progress = status.get("progress") or {}
        raise SandboxTimeout(
            f"the {resource.name} service was still {status.get('state')} after "
            f"{timeout:g}s ({progress.get('done', '?')} of {progress.get('total', '?')} "
            "documents); wait with warmup(['rag'], wait=True) or pass a longer timeout",
            data={"status": status},
        )

    def warm_service(self, resource_type: str) -> None:
        """Start the service of a shared resource type in the background (warmup)."""
        resource = self._registry.resource(resource_type)
        if not resource.shared or resource.name in self._warming:
            return
        self._warming[resource.name] = None

        async def warm() -> None:
            try:
                await self._images.ensure(resource.image)
                service, fresh = await self._services.ensure(resource)
                if fresh:
                    await self._adopt_service_sessions(resource, service)
            except SandboxError as exc:
                self._warming[resource.name] = exc.message
            except Exception as exc:  # reported too, or the service stays "starting"
                log.exception("warming the %s service failed", resource.name)
                self._warming[resource.name] = f"unexpected error: {exc!r}"
            else:
                del self._warming[resource.name]

        self._spawn(warm())

    async def service_status(self, resource_type: str) -> dict[str, Any] | None:
        """What a shared resource type's service reports (``<type>.status``), if any."""
        resource = self._registry.resource(resource_type)
        if not resource.shared:
            return None
        if error := self._warming.get(resource.name):
            return {"state": "failed", "error": error}
        service = self._services.current(resource.name)
        if service is None:
            return {"state": "starting" if resource.name in self._warming else "stopped"}
        try:
            return await self._agents.call(
                service.url, service.token, f"{resource.name}.status", {}, 5.0
            )
        except SandboxError as exc:
            return {"state": "unreachable", "error": exc.message}

    # -- calls --------------------------------------------------------------------

    async def execute(
        self,
        worker_id: str,
        action: str,
        params: dict[str, Any],
        timeout: float | None = None,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> CallResult:
        """Run one tool in the tenant's worker's session of the tool's resource type.

        The session is created on first use (`auto_created`). Raises this package's
        errors, each carrying the tool and the session id.
        """
        tool = self._registry.resolve(action)
        args = self._registry.validate_params(tool, params)
        effective = self._effective_timeout(args.get("timeout"), timeout)
        if tool.timeout_param:
            args["timeout"] = effective
        session = self._table.get((tenant, worker_id, tool.resource_type))
        if session is None or session.state is not SessionState.READY:
            try:
                session, _ = await self.create(
                    worker_id, tool.resource_type, auto_created=True, tenant=tenant
                )
            except SandboxError as exc:
                exc.tool = tool.full_name
                raise
        session.active_calls += 1
        session.touch(self._settings.session_ttl_s)
        try:
            resource = self._registry.resource(tool.resource_type)
            if resource.shared:
                await self._follow_service(session, resource)
                args["session"] = session.session_id
            assert session.agent_url is not None
            started = time.monotonic()
            try:
                data = await self._agents.call(
                    session.agent_url, session.token, tool.agent_tool, args, effective
                )
            except AgentNotReady:
                if not resource.shared:
                    raise
                # A service just started (its index still building): wait for it
                # within the call's own timeout rather than failing the first calls.
                remaining = effective - (time.monotonic() - started)
                await self._wait_until_service_ready(session, resource, remaining)
                data = await self._agents.call(
                    session.agent_url, session.token, tool.agent_tool, args, remaining
                )
        except SandboxError as exc:
            error = await self._diagnose(session, exc) if isinstance(exc, AgentUnreachable) else exc
            error.tool, error.session_id = tool.full_name, session.session_id
            self.calls[f"{tool.full_name}:{int(error.code)}"] += 1
            if error is exc:
                raise
            raise error from exc
        finally:
            session.active_calls -= 1
            session.call_count += 1
            session.touch(self._settings.session_ttl_s)
        self.calls[f"{tool.full_name}:0"] += 1
        return CallResult(data=data, tool=tool, session=session)

    def _effective_timeout(self, param: float | None, request: float | None) -> float:
        given = [value for value in (param, request) if value is not None]
        return min(given) if given else self._settings.default_timeout_s

    async def _diagnose(self, session: Session, cause: AgentUnreachable) -> SandboxError:
        """Why the agent did not answer; a dead container's session is dropped."""
        if session.state is SessionState.DESTROYING:
            return SessionError("the session was destroyed while the call was running")
        record = None
        if session.container_id is not None:
            record = await self._runtime.inspect(session.container_id)
        if record is not None and record.running:
            return BackendError(cause.message)
        what = "it was removed" if record is None else record.describe_exit()
        if self._registry.resource(session.resource_type).shared:
            assert session.container_id is not None
            self._services.forget(session.resource_type, session.container_id)
            return BackendError(
                f"the {session.resource_type} service container is gone ({what}); the next "
                "call starts a new one, with this session's data",
            )
        await self._destroy(session)
        return BackendError(
            f"the {session.resource_type} session's container is gone ({what}); "
            "the next call starts a new session",
            data={
                "exit_code": None if record is None else record.exit_code,
                "oom_killed": False if record is None else record.oom_killed,
            },
        )

    # -- refresh and destroy ------------------------------------------------------

    def refresh(
        self, worker_id: str, resource_type: str | None = None, *, tenant: str = DEFAULT_TENANT
    ) -> list[Session]:
        """Push the expiry of one or all of the tenant's worker's sessions.

        Raises:
            SessionError: The worker has no such session.
        """
        sessions = self._select(tenant, worker_id, resource_type)
        for session in sessions:
            session.touch(self._settings.session_ttl_s)
        return sessions

    async def destroy(
        self, worker_id: str, resource_type: str | None = None, *, tenant: str = DEFAULT_TENANT
    ) -> list[Session]:
        """Destroy one or all of the tenant's worker's sessions.

        Raises:
            SessionError: The worker has no such session.
        """
        sessions = self._select(tenant, worker_id, resource_type)
        await asyncio.gather(*(self._destroy(session) for session in sessions))
        return sessions

    async def destroy_all(self) -> int:
        """Destroy every session; returns how many there were."""
        sessions = self._table.all()
        limit = asyncio.Semaphore(_DESTROY_CONCURRENCY)

        async def one(session: Session) -> None:
            async with limit:
                await self._destroy(session)

        await asyncio.gather(*(one(s) for s in sessions), return_exceptions=True)
        return len(sessions)

    def _select(self, tenant: str, worker_id: str, resource_type: str | None) -> list[Session]:
        # Another tenant's session of the same worker id is as absent as none at all.
        if resource_type is None:
            sessions = self._table.of_worker(worker_id, tenant)
            if not sessions:
                raise SessionError(f"worker {worker_id!r} has no sessions")
            return sessions
        resource = self._registry.resource(resource_type)
        session = self._table.get((tenant, worker_id, resource.name))
        if session is None:
            raise SessionError(f"worker {worker_id!r} has no {resource.name} session")
        return [session]

    async def _destroy(self, session: Session) -> None:
        async with self._table.lock(session.key):
            if self._table.pop(session.key, session) is None:
                return  # destroyed meanwhile
            session.state = SessionState.DESTROYING
        resource = self._registry.resource(session.resource_type)
        service = self._services.current(resource.name) if resource.shared else None
        try:
            if service is not None:
                await self._close_in_service(resource, service, session.session_id)
            elif not resource.shared:
                await self._release(session)
        except SandboxError:
            log.warning("could not clean up after %s", session.session_id, exc_info=True)
        log.info("session %s destroyed", session.session_id)

    # -- expiry ---------------------------------------------------------------------

    async def sweep(self) -> int:
        """Destroy expired sessions once; returns how many."""
        expired = self._table.expired(time.time())
        for session in expired:
            log.info("session %s expired", session.session_id)
        await asyncio.gather(*(self._destroy(s) for s in expired))
        return len(expired)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.sweep_interval_s)
            try:
                if not self._recovered:
                    await self._try_recover()
                await self.sweep()
            except Exception:  # a failed sweep must not end sweeping
                log.exception("session sweep failed")

    # -- recovery -------------------------------------------------------------------

    async def recover(self) -> tuple[int, int]:
        """Adopt this server's live containers (sessions, pools, services); remove the rest.

        Returns:
            How many sessions were adopted and how many containers removed.
        """
        records = await self._runtime.find(
            {LABEL_MANAGED: "1", LABEL_SERVER: self._settings.server_id}
        )
        records.sort(key=lambda r: float(r.labels.get(LABEL_CREATED, "0") or 0), reverse=True)
        found = await asyncio.gather(*(self._classify_within(record) for record in records))
        removed = 0
        for record, (kind, session) in zip(records, found, strict=True):
            if kind == "service":
                continue  # adopted below, with the sessions it holds
            if session is not None and self._table.get(session.key) is None:
                self._table.put(session)
                continue
            if kind == "pool" and self._adopt_pool_member(record):
                continue
            await self._containers.remove(record.id, record.agent_url)
            removed += 1
        for resource in self._registry.resource_types():
            if resource.shared:
                await self._adopt_service_within(resource)
        adopted = len(self._table)
        self._claimed.prune(s.container_id for s in self._table.all())
        in_use = [s.agent_url for s in self._table.all()]
        in_use += [s.url for s in self._services.all()] + self._pools.urls()
        self._sockets.prune(in_use)
        if records:
            log.info("adopted %d session(s), removed %d orphan container(s)", adopted, removed)
        return adopted, removed

    async def _classify_within(self, record: ContainerRecord) -> tuple[str, Session | None]:
        """`_classify`, or "hung" (so removed) when it takes over `recovery_timeout_s`."""
        timeout = self._settings.recovery_timeout_s
        try:
            return await asyncio.wait_for(self._classify(record), timeout)
        except asyncio.TimeoutError:
            log.warning(
                "container %s of an earlier run did not answer within %gs: removing it",
                record.id[:12],
                timeout,
            )
            return "hung", None

    async def _adopt_service_within(self, resource: ResourceType) -> None:
        """Adopt a shared service and its sessions, or remove it if that hangs."""

        async def adopt() -> None:
            service = await self._services.adopt(resource)
            if service is not None:
                await self._adopt_service_sessions(resource, service)

        try:
            await asyncio.wait_for(adopt(), self._settings.recovery_timeout_s)
        except asyncio.TimeoutError:
            service = self._services.current(resource.name)
            log.warning("the %s service did not answer in time: removing it", resource.name)
            if service is not None:
                self._services.forget(resource.name, service.container_id)
                await self._containers.remove(service.container_id, service.url)

    async def _classify(self, record: ContainerRecord) -> tuple[str, Session | None]:
        """What a container of an earlier run is: a service, a session, a pool member."""
        if LABEL_SERVICE in record.labels:
            return "service", None
        if LABEL_POOL not in record.labels:
            return "session", await self._adoptable(record, record.labels)
        token = record.token
        if not (record.running and record.agent_url and token):
            return "orphan", None
        try:
            data = await self._agents.call(record.agent_url, token, "agent.meta", {}, 5.0)
        except SandboxError:
            return "orphan", None
        stored = data.get("meta")
        if not stored and record.id not in self._claimed:
            return "pool", None
        try:
            claim = self._claims.verify(record.id, stored)
        except ForgedClaim as exc:
            log.warning(
                "container %s holds a forged claim (%s): removing it, not adopting it",
                record.id[:12],
                exc,
            )
            return "forged", None
        return "session", await self._adoptable(record, {**record.labels, **claim})

    def _adopt_pool_member(self, record: ContainerRecord) -> bool:
        try:
            resource = self._registry.resource(record.labels.get(LABEL_RESOURCE, ""))
            config = json.loads(record.labels.get(LABEL_CONFIG) or "{}")
            validated = self._registry.validate_config(resource, config)
        except (ValueError, SandboxError):
            return False
        return self._pools.adopt(resource, validated, record)

    async def _adoptable(self, record: ContainerRecord, labels: dict[str, str]) -> Session | None:
        resource_type = labels.get(LABEL_RESOURCE, "")
        session_id, worker_id = labels.get(LABEL_SESSION), labels.get(LABEL_WORKER)
        token = record.token
        if not (record.running and record.agent_url and session_id and worker_id and token):
            return None
        if resource_type not in self._registry.resource_names:
            return None
        if not await self._agents.is_ready(record.agent_url):
            return None
        try:
            config = json.loads(labels.get(LABEL_CONFIG) or "{}")
            resource = self._registry.resource(resource_type)
            applied = self.applied_config(
                resource, self._registry.validate_config(resource, config)
            )
        except (ValueError, SandboxError):
            return None
        now = time.time()
        tenant = labels.get(LABEL_TENANT) or DEFAULT_TENANT
        self._note_seq(worker_id, session_id, tenant)
        return Session(
            session_id=session_id,
            session_name=labels.get(LABEL_NAME) or session_id,
            worker_id=worker_id,
            resource_type=resource_type,
            config=applied,
            token=token,
            created_at=float(labels.get(LABEL_CREATED, now) or now),
            expires_at=now + self._settings.session_ttl_s,
            last_used_at=now,
            auto_created=labels.get(LABEL_AUTO) == "1",
            state=SessionState.READY,
            container_id=record.id,
            agent_url=record.agent_url,
            tenant=tenant,
        )

    def _note_seq(self, worker_id: str, session_id: str, tenant: str) -> None:
        seq = session_id.split("_")[-2] if session_id.count("_") >= 3 else ""
        if seq.isdigit():
            self._table.note_seq(worker_id, int(seq), tenant)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _service_owner(session: Session) -> str:
    """The owner a shared service records for a session: ``tenant/worker``.

    Worker ids cannot hold ``/``, so the pair splits back unambiguously; the
    default tenant's sessions keep the bare worker id, as before tenants.
    """
    if session.tenant == DEFAULT_TENANT:
        return session.worker_id
    return f"{session.tenant}/{session.worker_id}"


def _owner_from_service(owner: str) -> tuple[str, str]:
    """(tenant, worker) back from `_service_owner`'s form."""
    tenant, _, worker = owner.rpartition("/")
    return tenant or DEFAULT_TENANT, worker
