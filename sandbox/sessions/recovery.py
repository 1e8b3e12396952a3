"""Crash recovery: adopt the containers an earlier run of this server left behind.

At start the server lists its containers (by its server id label) and, in the
background, decides what each is: a shared service (adopted with the sessions it
holds), a session container (its labels, or for a claimed pool container its
signed claim, decode to a session: `labels`), an idle pool member (back into its
pool), or anything else (removed). Each container has `recovery_timeout_s` to
answer; a hung agent's container is removed, never adopted. A claim that does not
verify is forged: the container is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging

from ..backends import ResourceType
from ..errors import BackendError, SandboxError
from ..runtime.docker import (
    LABEL_MANAGED,
    LABEL_POOL,
    LABEL_SERVER,
    LABEL_SERVICE,
    ContainerRecord,
)
from .claims import ForgedClaim
from .context import SessionContext
from .labels import created_at, decode_config, session_from_labels, session_seq
from .screen_recordings import START as RECORDING_START
from .service_sessions import ServiceSessions
from .table import Session

log = logging.getLogger(__name__)

_META_TIMEOUT_S = 5.0


class Kind(str, enum.Enum):
    """What a container of an earlier run turned out to be."""

    SERVICE = "service"
    SESSION = "session"
    POOL = "pool"
    ORPHAN = "orphan"
    FORGED = "forged"
    HUNG = "hung"


class Recovery:
    """Adopts an earlier run's containers, once, in the background.

    Adopted sessions go in the table, idle pool members back into their pools,
    and the socket directories of no adopted container are pruned.

    Args:
        ctx: The shared collaborators.
        service_sessions: Adopts the sessions a shared service holds.
    """

    def __init__(self, ctx: SessionContext, service_sessions: ServiceSessions) -> None:
        self._ctx = ctx
        self._service_sessions = service_sessions
        self.recovered = False
        """Whether the adoption finished (pools then fill to their targets)."""
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # -- the background task ------------------------------------------------------

    def start(self) -> None:
        """Start the adoption as a task: the server answers while it runs."""
        self._task = asyncio.create_task(self.try_recover(), name="session-recovery")

    @property
    def running(self) -> bool:
        """Whether containers of an earlier run are still being adopted."""
        return not self.recovered and self._task is not None and not self._task.done()

    async def try_recover(self) -> None:
        """Adopt, unless done already; a failure is logged (the sweeper retries)."""
        async with self._lock:  # the start-up task and the sweeper's retries
            if self.recovered:
                return
            try:
                await self.recover()
            except BackendError as exc:
                log.warning("cannot adopt session containers yet: %s", exc.message)
                return
            except Exception:  # a background task: log it, the sweeper retries
                log.exception("adopting the containers of an earlier run failed")
                return
            self.recovered = True
            self._ctx.pools.refill_all()

    async def wait(self) -> None:
        """Wait for the start-up adoption, for at most the time it can take.

        Past that bound (a Docker engine that hangs) go ahead as without it: the
        adoption then keeps whichever session is in the table and removes the other.
        """
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=2 * self._ctx.settings.recovery_timeout_s + 5)

    async def cancel(self) -> None:
        """Stop an adoption still running (the next start adopts the rest)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- adoption ------------------------------------------------------------------

    async def recover(self) -> tuple[int, int]:
        """Adopt this server's live containers (sessions, pools, services); remove the rest.

        Returns:
            How many sessions were adopted and how many containers removed.
        """
        records = await self._ctx.runtime.find(
            {LABEL_MANAGED: "1", LABEL_SERVER: self._ctx.settings.server_id}
        )
        self._ctx.containers.uids.adopt(records)  # before any new container takes one
        records.sort(key=lambda r: created_at(r.labels) or 0.0, reverse=True)
        found = await asyncio.gather(*(self._classify_within(record) for record in records))
        removed = 0
        for record, (kind, session) in zip(records, found, strict=True):
            if kind is Kind.SERVICE:
                continue  # adopted below, with the sessions it holds
            if session is not None and self._ctx.table.get(session.key) is None:
                self._ctx.table.put(session)
                if self._ctx.registry.has_tool(f"{session.resource_type}:{RECORDING_START}"):
                    self._ctx.recordings.started(session)  # perhaps, by the earlier run
                continue
            if kind is Kind.POOL and self._adopt_pool_member(record):
                continue
            await self._ctx.containers.remove(record.id, record.agent_url)
            removed += 1
        for resource in self._ctx.registry.resource_types():
            if resource.shared:
                await self._adopt_service_within(resource)
        adopted = len(self._ctx.table)
        self._ctx.claimed.prune(s.container_id for s in self._ctx.table.all())
        in_use = [s.agent_url for s in self._ctx.table.all()]
        in_use += [s.url for s in self._ctx.services.all()] + self._ctx.pools.urls()
        await self._ctx.sockets.prune(in_use)
        if records:
            log.info("adopted %d session(s), removed %d orphan container(s)", adopted, removed)
        return adopted, removed

    async def _classify_within(self, record: ContainerRecord) -> tuple[Kind, Session | None]:
        """`classify`, or hung (so removed) when it takes over `recovery_timeout_s`."""
        timeout = self._ctx.settings.recovery_timeout_s
        try:
            return await asyncio.wait_for(self.classify(record), timeout)
        except asyncio.TimeoutError:
            log.warning(
                "container %s of an earlier run did not answer within %gs: removing it",
                record.id[:12],
                timeout,
            )
            return Kind.HUNG, None

    async def _adopt_service_within(self, resource: ResourceType) -> None:
        """Adopt a shared service and its sessions, or remove it if that hangs."""

        async def adopt() -> None:
            service = await self._ctx.services.adopt(resource)
            if service is not None:
                await self._service_sessions.adopt_sessions(resource, service)

        try:
            await asyncio.wait_for(adopt(), self._ctx.settings.recovery_timeout_s)
        except asyncio.TimeoutError:
            service = self._ctx.services.current(resource.name)
            log.warning("the %s service did not answer in time: removing it", resource.name)
            if service is not None:
                self._ctx.services.forget(resource.name, service.container_id)
                await self._ctx.containers.remove(service.container_id, service.url)

    async def classify(self, record: ContainerRecord) -> tuple[Kind, Session | None]:
        """What a container of an earlier run is, and its session if it is one."""
        if LABEL_SERVICE in record.labels:
            return Kind.SERVICE, None
        if LABEL_POOL not in record.labels:
            return Kind.SESSION, await self._adoptable(record, record.labels)
        token = record.token
        if not (record.running and record.agent_url and token):
            return Kind.ORPHAN, None
        try:
            data = await self._ctx.agents.call(
                record.agent_url, token, "agent.meta", {}, _META_TIMEOUT_S
            )
        except SandboxError:
            return Kind.ORPHAN, None
        stored = data.get("meta")
        if not stored and record.id not in self._ctx.claimed:
            return Kind.POOL, None
        try:
            claim = self._ctx.claims.verify(record.id, stored)
        except ForgedClaim as exc:
            log.warning(
                "container %s holds a forged claim (%s): removing it, not adopting it",
                record.id[:12],
                exc,
            )
            return Kind.FORGED, None
        return Kind.SESSION, await self._adoptable(record, {**record.labels, **claim})

    def _adopt_pool_member(self, record: ContainerRecord) -> bool:
        decoded = decode_config(record.labels, self._ctx.registry)
        if decoded is None:
            return False
        return self._ctx.pools.adopt(*decoded, record)

    async def _adoptable(self, record: ContainerRecord, labels: dict[str, str]) -> Session | None:
        """The session `labels` describe, if they decode and its agent answers."""
        session = session_from_labels(
            labels,
            record,
            self._ctx.registry,
            self._ctx.settings.limits,
            ttl_s=self._ctx.settings.session_ttl_s,
            now=self._ctx.table.clock(),
        )
        if session is None or not await self._ctx.agents.is_ready(str(record.agent_url)):
            return None
        seq = session_seq(session.session_id)
        if seq is not None:
            self._ctx.table.note_seq(session.worker_id, seq, session.tenant)
        return session
