"""Warm pools: started, healthy containers waiting to become sessions.

A pool holds containers of one resource type made for one session config (after
defaults are filled in), so a 1280x800 desktop never serves a session asking for
1024x768. A claim takes the oldest ready member, checks its agent with one cheap
health call (a dead one is discarded and the next tried) and starts refilling at
once. Containers are never reused: a destroyed session's container is removed.

Refills run at most `pool_refill_concurrency` container starts at a time across
all pools, so they never starve running sessions; a pool whose starts fail waits
before trying again instead of looping.

Docker labels cannot change after a container is created, so a claimed member
keeps its pool labels; it learns its session through the agent's ``agent.meta``
and a restarted server reads that back to adopt it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..backends import ResourceType, SessionConfig
from ..backends.base import SERVER_SIDE_OPTIONS
from ..config import Settings
from ..errors import SandboxError
from ..protocol import PoolStatus
from ..runtime.agent import AgentClient
from ..runtime.docker import ContainerRecord
from .applied import applied_config
from .containers import AgentContainers
from .labels import pool_labels
from .specs import ContainerRequest, container_name

log = logging.getLogger(__name__)

_RETRY_AFTER_FAILURE_S = 5.0


@dataclass(frozen=True)
class PoolMember:
    """A ready container in a pool."""

    container_id: str
    agent_url: str
    token: str


@dataclass
class Pool:
    """The ready containers of one resource type and applied config."""

    key: str
    resource: ResourceType
    config: SessionConfig
    applied: dict[str, Any]
    target: int = 0
    ready: deque[PoolMember] = field(default_factory=deque)
    starting: int = 0
    hits: int = 0
    misses: int = 0
    failures: int = 0
    last_error: str | None = None
    retry_at: float = 0.0

    def status(self) -> PoolStatus:
        """The pool as `/warmup/status` reports it."""
        return PoolStatus(
            key=self.key,
            resource=self.resource.name,
            config=self.applied,
            target=self.target,
            ready=len(self.ready),
            starting=self.starting,
            hits=self.hits,
            misses=self.misses,
            failures=self.failures,
            last_error=self.last_error,
        )


def pool_key(resource: str, applied: dict[str, Any]) -> str:
    """A short, stable name for the pool of `resource` made for `applied`.

    Options the server acts on itself (`SERVER_SIDE_OPTIONS`: recording,
    observations) are not the container's business: a session that differs only
    in them claims from the same pool as any other.
    """
    container = {name: value for name, value in applied.items() if name not in SERVER_SIDE_OPTIONS}
    digest = hashlib.sha1(json.dumps(container, sort_keys=True).encode()).hexdigest()
    return f"{resource}-{digest[:10]}"


class WarmPools:
    """Every pool of the server.

    Args:
        settings: Refill concurrency, server id, default limits.
        containers: Starts and removes the pool containers.
        agents: Checks members before they are handed out.
        may_start: Whether one more container fits under the server's limits.
    """

    def __init__(
        self,
        settings: Settings,
        containers: AgentContainers,
        agents: AgentClient,
        may_start: Callable[[], bool],
    ) -> None:
        self._settings = settings
        self._containers = containers
        self._agents = agents
        self._may_start = may_start
        self._pools: dict[str, Pool] = {}
        self._limit = asyncio.Semaphore(settings.pool_refill_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- queries ----------------------------------------------------------------

    def all(self) -> list[Pool]:
        """Every pool, including those with target 0."""
        return list(self._pools.values())

    def of(self, resource: str) -> list[Pool]:
        """The pools of one resource type."""
        return [pool for pool in self._pools.values() if pool.resource.name == resource]

    def container_count(self) -> int:
        """Pool containers running or starting."""
        return sum(len(pool.ready) + pool.starting for pool in self._pools.values())

    def urls(self) -> list[str]:
        """Agent URLs of the ready members (their socket directories are in use)."""
        return [member.agent_url for pool in self._pools.values() for member in pool.ready]

    # -- targets ------------------------------------------------------------------

    def pool(self, resource: ResourceType, config: SessionConfig) -> Pool:
        """The pool for sessions of `resource` with `config` (made empty if new)."""
        applied = applied_config(resource, config, self._settings.limits)
        key = pool_key(resource.name, applied)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = Pool(key, resource, config, applied)
        return pool

    def set_target(self, pool: Pool, size: int) -> None:
        """Keep `size` ready containers in `pool`, starting or removing as needed."""
        pool.target = size
        pool.retry_at = 0.0
        self.refill(pool)

    # -- claims -------------------------------------------------------------------

    async def claim(self, resource: ResourceType, config: SessionConfig) -> PoolMember | None:
        """A ready, healthy container for a session of `resource` with `config`, if any."""
        applied = applied_config(resource, config, self._settings.limits)
        pool = self._pools.get(pool_key(resource.name, applied))
        if pool is None or (pool.target == 0 and not pool.ready):
            return None
        while pool.ready:
            member = pool.ready.popleft()
            self.refill(pool)
            if await self._agents.is_ready(member.agent_url):
                pool.hits += 1
                return member
            log.warning("discarding dead pool container %s", member.container_id)
            self._spawn(self._containers.remove(member.container_id, member.agent_url))
        pool.misses += 1
        return None

    # -- refills ------------------------------------------------------------------

    def refill(self, pool: Pool) -> None:
        """Start what `pool` lacks, or remove what it holds beyond its target."""
        if self._closing:
            return
        while len(pool.ready) > pool.target:
            extra = pool.ready.pop()
            self._spawn(self._containers.remove(extra.container_id, extra.agent_url))
        missing = pool.target - len(pool.ready) - pool.starting
        if missing <= 0:
            return
        wait = pool.retry_at - time.monotonic()
        if wait > 0:
            asyncio.get_running_loop().call_later(wait, self.refill, pool)
            return
        for _ in range(missing):
            if not self._may_start():
                pool.last_error = (
                    "the server is at its container limit (max_containers), pid budget "
                    "(pid_budget) or memory budget (memory_budget)"
                )
                break
            pool.starting += 1
            self._spawn(self._start_member(pool))

    async def _start_member(self, pool: Pool) -> None:
        record = None
        try:
            async with self._limit:
                if self._closing:
                    return
                token = secrets.token_urlsafe(24)
                record = await self._containers.start(pool.resource, self._request(pool, token))
        except SandboxError as exc:
            pool.failures += 1
            pool.last_error = exc.message
            pool.retry_at = time.monotonic() + _RETRY_AFTER_FAILURE_S
            log.warning("pool %s could not start a container: %s", pool.key, exc.message)
        finally:
            pool.starting -= 1
        if record is not None:
            assert record.agent_url is not None  # the start waited for the agent there
            pool.ready.append(PoolMember(record.id, record.agent_url, token))
            pool.last_error = None
        # Tops the pool up, removes what a lowered target no longer needs, or (after a
        # failure) schedules the next try.
        self.refill(pool)

    def _request(self, pool: Pool, token: str) -> ContainerRequest:
        """What a new member of `pool` is started with."""
        return ContainerRequest(
            name=container_name(
                self._settings.server_id, "pool", pool.resource.name, secrets.token_hex(4)
            ),
            token=token,
            limits=pool.config.limits(self._settings.limits),
            network=bool(pool.applied["network"]),
            labels=pool_labels(pool.key, pool.config, time.time()),
            environment=pool.resource.environment(pool.config),
            image=pool.resource.image_for(pool.config),
        )

    # -- adoption and shutdown --------------------------------------------------------

    def adopt(self, resource: ResourceType, config: SessionConfig, record: ContainerRecord) -> bool:
        """Take an idle pool container left by an earlier run back into its pool."""
        token = record.token
        if not (record.running and record.agent_url and token):
            return False
        self.pool(resource, config).ready.append(PoolMember(record.id, record.agent_url, token))
        return True

    def refill_all(self) -> None:
        """Bring every pool to its target (after adoption at start)."""
        for pool in self._pools.values():
            self.refill(pool)

    async def wait_filled(self, pools: list[Pool], timeout: float) -> None:
        """Until every pool in `pools` holds its target or has just failed, or `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(len(p.ready) >= p.target or p.retry_at > time.monotonic() for p in pools):
                return
            await asyncio.sleep(0.05)

    async def remove_all(self) -> None:
        """Stop refilling and remove every pool container (starts in flight finish first)."""
        self._closing = True
        pending = [task for task in self._tasks if task is not asyncio.current_task()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        members = [member for pool in self._pools.values() for member in pool.ready]
        for pool in self._pools.values():
            pool.ready.clear()
        await asyncio.gather(
            *(self._containers.remove(m.container_id, m.agent_url) for m in members),
            return_exceptions=True,
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
