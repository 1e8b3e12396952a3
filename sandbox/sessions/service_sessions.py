"""The shared-service protocol: sessions that live inside a service container (rag).

A shared resource type's session owns no container: the service holds it,
opened with ``<type>.open_session`` under its owner (``tenant/worker``), listed
with ``<type>.sessions`` (how a restarted server, or a replacement service, gets
them back) and closed with ``<type>.close_session``. A new service may still be
indexing (``<type>.status``); the first calls wait for it within their timeout.
Everything a service replies is bounded by the agent client; every wait on it
here has a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pydantic import ValidationError

from ..backends import ResourceType
from ..config import DEFAULT_TENANT
from ..errors import SandboxError, SandboxTimeout
from ..protocol import ServiceState, ServiceStatus
from .applied import applied_config
from .context import SessionContext
from .labels import is_session_id, is_worker_id, session_seq
from .services import ServiceContainer
from .table import Session, SessionState

log = logging.getLogger(__name__)

# Opening and closing a session in a shared service is bookkeeping: quick.
_SERVICE_CALL_TIMEOUT_S = 30.0
_STATUS_TIMEOUT_S = 5.0
_STATUS_POLL_S = 0.1


def service_owner(session: Session) -> str:
    """The owner a shared service records for a session: ``tenant/worker``.

    Worker ids cannot hold ``/``, so the pair splits back unambiguously; the
    default tenant's sessions keep the bare worker id, as before tenants.
    """
    if session.tenant == DEFAULT_TENANT:
        return session.worker_id
    return f"{session.tenant}/{session.worker_id}"


def owner_from_service(owner: str) -> tuple[str, str]:
    """(tenant, worker) back from `service_owner`'s form."""
    tenant, _, worker = owner.rpartition("/")
    return tenant or DEFAULT_TENANT, worker


def parse_status(reply: dict[str, Any]) -> ServiceStatus:
    """A service's ``<type>.status`` reply, typed; a malformed one says so."""
    try:
        return ServiceStatus.model_validate(reply)
    except ValidationError:
        return ServiceStatus(
            state=ServiceState.UNREACHABLE, error="the service sent a malformed status"
        )


class ServiceSessions:
    """Opens, adopts, closes and waits for sessions inside shared services.

    Args:
        ctx: The shared collaborators (adopted sessions go in its table; its
            background runs the warm-ups).
    """

    def __init__(self, ctx: SessionContext) -> None:
        self._ctx = ctx
        self._warming: dict[str, str | None] = {}
        """Resource type -> None while its warm-up runs, or why it failed."""

    async def follow(self, session: Session, resource: ResourceType) -> None:
        """Point a shared-resource session at the running service, opening it there."""
        service, fresh = await self._ctx.services.ensure(resource)
        if fresh:
            await self.adopt_sessions(resource, service)
        if session.container_id == service.container_id:
            return
        await self._ctx.agents.call(
            service.url,
            service.token,
            f"{resource.name}.open_session",
            {"session": session.session_id, "worker": service_owner(session)},
            _SERVICE_CALL_TIMEOUT_S,
        )
        session.container_id, session.agent_url = service.container_id, service.url
        session.token = service.token

    async def adopt_sessions(self, resource: ResourceType, service: ServiceContainer) -> None:
        """Put the sessions a service already holds (from before a restart) in the table.

        An entry this server could not have opened (a malformed id or owner) is skipped.
        """
        data = await self._ctx.agents.call(
            service.url, service.token, f"{resource.name}.sessions", {}, _SERVICE_CALL_TIMEOUT_S
        )
        now = self._ctx.table.clock()
        entries = data.get("sessions")
        for entry in entries if isinstance(entries, list) else []:
            session = self._listed_session(resource, service, entry, now)
            if session is None:
                continue
            known = self._ctx.table.get(session.key)
            if known is not None and known.session_id == session.session_id:
                continue
            if known is not None:  # the worker has a newer session: the old one is stale
                await self.close(resource, service, session.session_id)
                continue
            seq = session_seq(session.session_id)
            if seq is not None:
                self._ctx.table.note_seq(session.worker_id, seq, session.tenant)
            self._ctx.table.put(session)

    def _listed_session(
        self, resource: ResourceType, service: ServiceContainer, entry: object, now: float
    ) -> Session | None:
        """The session one entry of ``<type>.sessions`` names, or None if malformed."""
        if not isinstance(entry, dict):
            return None
        session_id = str(entry.get("session"))
        tenant, worker_id = owner_from_service(str(entry.get("worker")))
        if not (is_worker_id(worker_id) and is_session_id(session_id, resource.name)):
            return None
        created = entry.get("created_at")
        return Session(
            session_id=session_id,
            session_name=session_id,
            worker_id=worker_id,
            resource_type=resource.name,
            config=applied_config(resource, resource.config_model(), self._ctx.settings.limits),
            token=service.token,
            created_at=float(created) if isinstance(created, (int, float)) and created else now,
            expires_at=now + self._ctx.settings.session_ttl_s,
            last_used_at=now,
            state=SessionState.READY,
            container_id=service.container_id,
            agent_url=service.url,
            tenant=tenant,
        )

    async def close(
        self, resource: ResourceType, service: ServiceContainer, session_id: str
    ) -> None:
        """Close one session in the service (its data goes with it)."""
        await self._ctx.agents.call(
            service.url,
            service.token,
            f"{resource.name}.close_session",
            {"session": session_id},
            _SERVICE_CALL_TIMEOUT_S,
        )

    async def wait_until_ready(
        self, session: Session, resource: ResourceType, timeout: float
    ) -> None:
        """Poll the service's status until it is no longer starting or indexing.

        Raises:
            SandboxTimeout: It was still busy after `timeout` seconds; the message
                says how far it got.
        """
        deadline = time.monotonic() + timeout
        status = ServiceStatus(state=ServiceState.STARTING)
        while (remaining := deadline - time.monotonic()) > 0:
            reply = await self._ctx.agents.call(
                str(session.agent_url),
                session.token,
                f"{resource.name}.status",
                {},
                min(_STATUS_TIMEOUT_S, remaining),
            )
            status = parse_status(reply)
            if not status.state.busy:
                return
            await asyncio.sleep(min(_STATUS_POLL_S, max(0.0, deadline - time.monotonic())))
        extra = status.model_extra or {}
        reported = extra.get("progress")
        progress: dict[str, Any] = reported if isinstance(reported, dict) else {}
        raise SandboxTimeout(
            f"the {resource.name} service was still {status.state.value} after "
            f"{timeout:g}s ({progress.get('done', '?')} of {progress.get('total', '?')} "
            "documents); wait with warmup(['rag'], wait=True) or pass a longer timeout",
            data={"status": status.model_dump(mode="json", exclude_unset=True)},
        )

    def warm(self, resource_type: str) -> None:
        """Start the service of a shared resource type in the background (warmup).

        A warm-up already running is left alone; one that failed is tried again.
        Every failure, whatever its type, is reported by `status` as ``failed``.
        """
        resource = self._ctx.registry.resource(resource_type)
        if not resource.shared:
            return
        if resource.name in self._warming and self._warming[resource.name] is None:
            return
        self._warming[resource.name] = None
        self._ctx.background.spawn(self._warm(resource))

    async def _warm(self, resource: ResourceType) -> None:
        try:
            await self._ctx.images.ensure(resource.image)
            service, fresh = await self._ctx.services.ensure(resource)
            if fresh:
                await self.adopt_sessions(resource, service)
        except SandboxError as exc:
            self._warming[resource.name] = exc.message
        except asyncio.CancelledError:
            self._warming[resource.name] = "the warm-up was cancelled (the server is stopping)"
            raise
        except Exception as exc:  # reported too, or the service stays "starting"
            log.exception("warming the %s service failed", resource.name)
            self._warming[resource.name] = f"unexpected error: {exc!r}"
        else:
            del self._warming[resource.name]

    async def status(self, resource_type: str) -> ServiceStatus | None:
        """What a shared resource type's service reports (``<type>.status``), if any."""
        resource = self._ctx.registry.resource(resource_type)
        if not resource.shared:
            return None
        if error := self._warming.get(resource.name):
            return ServiceStatus(state=ServiceState.FAILED, error=error)
        service = self._ctx.services.current(resource.name)
        if service is None:
            starting = resource.name in self._warming
            return ServiceStatus(state=ServiceState.STARTING if starting else ServiceState.STOPPED)
        try:
            reply = await self._ctx.agents.call(
                service.url, service.token, f"{resource.name}.status", {}, _STATUS_TIMEOUT_S
            )
        except SandboxError as exc:
            return ServiceStatus(state=ServiceState.UNREACHABLE, error=exc.message)
        return parse_status(reply)
