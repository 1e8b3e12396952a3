"""Tool calls: dispatch to the worker's session, and diagnosis when its agent is gone.

A call finds (or auto-creates) the worker's session of the tool's resource type,
runs the tool in its agent within one deadline, and counts the outcome by
``tool:code``. An agent that does not answer is diagnosed: a running container
is a backend error, a dead one ends its session (or, for a shared service, makes
the next call start a replacement).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..backends import ToolSpec
from ..config import DEFAULT_TENANT
from ..errors import BackendError, InvalidParams, SandboxError, SessionError
from ..runtime.agent import AgentNotReady, AgentStream, AgentUnreachable
from . import screen_recordings
from .context import SessionContext
from .lifecycle import SessionLifecycle
from .service_sessions import ServiceSessions
from .table import Session, SessionState

_OBSERVATION_TIMEOUT_S = 15.0
"""How long reading an observation after an action may take (the tree's own
deadline is 10 s)."""


@dataclass(frozen=True)
class CallResult:
    """A tool call's data and where it ran."""

    data: dict[str, Any]
    tool: ToolSpec
    session: Session
    warnings: list[str] = field(default_factory=list)
    """What of the call was ignored (parameters the tool does not take)."""


class ToolCalls:
    """Runs tools in sessions; owns the call counters.

    Args:
        ctx: The shared collaborators.
        lifecycle: Auto-creates sessions, drops dead ones.
        service_sessions: Opens sessions in, and waits for, a shared service.
    """

    def __init__(
        self, ctx: SessionContext, lifecycle: SessionLifecycle, service_sessions: ServiceSessions
    ) -> None:
        self._ctx = ctx
        self._lifecycle = lifecycle
        self._service_sessions = service_sessions
        self.calls: Counter[str] = Counter()
        """Finished tool calls by ``tool:code``."""

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
        tool = self._ctx.registry.resolve(action)
        warnings: list[str] = []
        if self._ctx.settings.unknown_params == "warn":
            params, warnings = self._ctx.registry.drop_unknown(tool, params)
        args = self._ctx.registry.validate_params(tool, params)
        effective = self._effective_timeout(args.get("timeout"), timeout)
        if tool.timeout_param:
            args["timeout"] = effective
        self._ctx.recordings.fill_in(tool.name, args)
        session = self._ctx.table.get((tenant, worker_id, tool.resource_type))
        if session is None or session.state is not SessionState.READY:
            try:
                session, _ = await self._lifecycle.create(
                    worker_id, tool.resource_type, auto_created=True, tenant=tenant
                )
            except SandboxError as exc:
                exc.tool = tool.full_name
                raise
        session.active_calls += 1
        session.touch(self._ctx.settings.session_ttl_s, self._ctx.table.clock())
        try:
            data = await self._call(session, tool, args, effective)
            data = await self._recorded(session, tool, data)
            data = await self._observe(session, tool, args, data)
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
            session.touch(self._ctx.settings.session_ttl_s, self._ctx.table.clock())
        self.calls[f"{tool.full_name}:0"] += 1
        return CallResult(data=data, tool=tool, session=session, warnings=warnings)

    async def look(
        self, session: Session, action: str, params: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Run an observing tool in `session` for an onlooker (the ``/ui`` live view).

        Unlike `execute`, this is not the worker's call: it never creates a
        session, pushes neither its expiry nor its last use (a watched session
        still expires when its worker stops calling), is not counted, and the
        server records nothing of it. The caller picks the tool (only
        ``vm:screenshot``): no input reaches the session this way.

        Raises:
            SessionError: The session is not ready (starting, being destroyed).
        """
        tool = self._ctx.registry.resolve(action)
        if tool.resource_type != session.resource_type:
            raise InvalidParams(
                f"session_id: {session.session_id!r} is a {session.resource_type} session; "
                f"{tool.full_name} needs a {tool.resource_type} one",
                field="session_id",
            )
        args = self._ctx.registry.validate_params(tool, params)
        if session.state is not SessionState.READY or session.agent_url is None:
            raise SessionError(
                f"session {session.session_id!r} is {session.state.value}, not ready",
                session_id=session.session_id,
            )
        return await self._ctx.agents.call(
            session.agent_url, session.token, tool.agent_tool, args, timeout
        )

    async def open_stream(
        self, session: Session, name: str, query: dict[str, str], timeout: float
    ) -> AgentStream:
        """Open the agent's stream `name` in `session` for an onlooker (the ``/ui``
        live view's VNC). Like `look`, not the worker's call: it touches neither
        the session's expiry nor its counters, and nothing of it is recorded.

        Raises:
            SessionError: The session is not ready (starting, being destroyed).
        """
        if session.state is not SessionState.READY or session.agent_url is None:
            raise SessionError(
                f"session {session.session_id!r} is {session.state.value}, not ready",
                session_id=session.session_id,
            )
        return await self._ctx.agents.open_stream(
            session.agent_url, session.token, name, query, timeout
        )

    async def _call(
        self, session: Session, tool: ToolSpec, args: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """The agent's answer, within `timeout` in all (a starting service included)."""
        resource = self._ctx.registry.resource(tool.resource_type)
        if resource.shared:
            await self._service_sessions.follow(session, resource)
            args["session"] = session.session_id
        assert session.agent_url is not None
        started = time.monotonic()
        try:
            return await self._ctx.agents.call(
                session.agent_url, session.token, tool.agent_tool, args, timeout
            )
        except AgentNotReady:
            if not resource.shared:
                raise
            # A service just started (its index still building): wait for it
            # within the call's own timeout rather than failing the first calls.
            remaining = timeout - (time.monotonic() - started)
            await self._service_sessions.wait_until_ready(session, resource, remaining)
            return await self._ctx.agents.call(
                session.agent_url, session.token, tool.agent_tool, args, remaining
            )

    async def _recorded(
        self, session: Session, tool: ToolSpec, data: dict[str, Any]
    ) -> dict[str, Any]:
        """`data`, and for a stopped screen recording the id of its video, now kept."""
        if tool.name == screen_recordings.START:
            self._ctx.recordings.started(session)
        elif tool.name == screen_recordings.STOP:
            return await self._ctx.recordings.stopped(session, data)
        return data

    async def _observe(
        self, session: Session, tool: ToolSpec, args: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """`data` with the observations the session asks for after `tool` (its
        config's ``observation``); one that fails is named in ``observation_error``
        and leaves the tool's own result as it was."""
        resource = self._ctx.registry.resource(tool.resource_type)
        observations = resource.observations(tool, args, session.config)
        if not observations or session.agent_url is None:
            return data
        for observation in observations:
            try:
                answer = await self._ctx.agents.call(
                    session.agent_url,
                    session.token,
                    observation.agent_tool,
                    dict(observation.params),
                    _OBSERVATION_TIMEOUT_S,
                )
            except SandboxError as exc:
                data["observation_error"] = f"{observation.key}: {exc.message}"
                continue
            data[observation.key] = answer.get(observation.field)
        return data

    def _effective_timeout(self, param: float | None, request: float | None) -> float:
        given = [value for value in (param, request) if value is not None]
        return min(given) if given else self._ctx.settings.default_timeout_s

    async def _diagnose(self, session: Session, cause: AgentUnreachable) -> SandboxError:
        """Why the agent did not answer; a dead container's session is dropped."""
        if session.state is SessionState.DESTROYING:
            return SessionError("the session was destroyed while the call was running")
        record = None
        if session.container_id is not None:
            record = await self._ctx.runtime.inspect(session.container_id)
        if record is not None and record.running:
            return BackendError(cause.message)
        what = "it was removed" if record is None else record.describe_exit()
        if (
            record is not None
            and record.lost
            and not self._ctx.registry.resource(session.resource_type).shared
        ):
            await self._lifecycle.destroy_one(session)
            return SessionError(
                f"the {session.resource_type} session was lost with its node ({what}); "
                "the next call or create starts a fresh session"
            )
        if self._ctx.registry.resource(session.resource_type).shared:
            assert session.container_id is not None
            self._ctx.services.forget(session.resource_type, session.container_id)
            return BackendError(
                f"the {session.resource_type} service container is gone ({what}); the next "
                "call starts a new one, with this session's data",
            )
        await self._lifecycle.destroy_one(session)
        return BackendError(
            f"the {session.resource_type} session's container is gone ({what}); "
            "the next call starts a new session",
            data={
                "exit_code": None if record is None else record.exit_code,
                "oom_killed": False if record is None else record.oom_killed,
            },
        )
