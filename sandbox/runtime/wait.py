"""Waiting for a new container's agent, failing fast when the container dies."""

from __future__ import annotations

import asyncio
import time

from ..errors import BackendError
from .agent import AgentClient
from .base import ContainerRecord, Runtime

_POLL_S = 0.02
_ALIVE_CHECK_S = 0.5


async def wait_for_agent(
    runtime: Runtime, agents: AgentClient, record: ContainerRecord, timeout: float
) -> str:
    """Poll the agent's health check until it answers; returns the agent's URL.

    Every half second the container itself is inspected, so one that exits (a bad
    image, a crash at start) fails at once instead of after `timeout`.

    Raises:
        BackendError: No reachable address, the container stopped, or `timeout`
            passed; the message ends with the container's last log lines.
    """
    url = record.agent_url
    if url is None:
        raise BackendError("the container has no address the server can reach")
    deadline = time.monotonic() + timeout
    next_alive_check = time.monotonic() + _ALIVE_CHECK_S
    while time.monotonic() < deadline:
        if await agents.is_ready(url):
            return url
        if time.monotonic() >= next_alive_check:
            next_alive_check = time.monotonic() + _ALIVE_CHECK_S
            current = await runtime.inspect(record.id)
            if current is None or not current.running:
                what = "it was removed" if current is None else current.describe_exit()
                raise BackendError(
                    f"the container stopped before its agent answered ({what})"
                    + await _log_hint(runtime, record.id)
                )
        await asyncio.sleep(_POLL_S)
    raise BackendError(
        f"the agent did not answer within {timeout:g}s" + await _log_hint(runtime, record.id)
    )


async def _log_hint(runtime: Runtime, container_id: str) -> str:
    logs = await runtime.logs_tail(container_id)
    return f"; last container log lines:\n{logs}" if logs else ""
