"""What this server's containers hold against its limits: `max_containers`, `pid_budget`,
`memory_budget`.

Counted from the server's own records (the session table, the pools, the shared
services), never from what a container says of itself.
"""

from __future__ import annotations

from typing import Any

from ..config import parse_memory
from ..errors import SessionError
from .context import SessionContext
from .specs import cgroup_memory
from .table import Session


class Capacity:
    """Counts containers, pids and memory, and refuses what would go over the limits.

    Args:
        ctx: The shared collaborators.
    """

    def __init__(self, ctx: SessionContext) -> None:
        self._ctx = ctx

    def _dedicated_sessions(self) -> list[Session]:
        """The sessions with a container of their own (starting ones too): not a shared
        service's."""
        registry = self._ctx.registry
        return [s for s in self._ctx.table.all() if not registry.resource(s.resource_type).shared]

    def container_count(self) -> int:
        """Containers of this server: dedicated sessions (starting too), pools, services."""
        dedicated = len(self._dedicated_sessions())
        return dedicated + self._ctx.pools.container_count() + len(self._ctx.services.all())

    def pids_in_use(self) -> int:
        """The pids limits of this server's containers, added up (see `pid_budget`)."""
        total = 0
        for session in self._dedicated_sessions():
            total += int(session.config.get("pids") or self._ctx.settings.limits.pids)
        for pool in self._ctx.pools.all():
            total += (len(pool.ready) + pool.starting) * int(pool.applied["pids"])
        for service in self._ctx.services.all():
            resource = self._ctx.registry.resource(service.resource)
            total += resource.service_limits(self._ctx.settings).pids
        return total

    def _session_memory(self, applied: dict[str, Any]) -> int:
        """`cgroup_memory` of a dedicated session from its applied config (no validation:
        it is the server's own record)."""
        defaults = self._ctx.settings.limits
        memory = parse_memory(applied.get("memory") or defaults.memory)
        return memory + parse_memory(applied.get("disk") or defaults.disk)

    def memory_in_use(self) -> int:
        """The memory cgroup limits of this server's containers, added up (see
        `memory_budget`)."""
        total = 0
        for session in self._dedicated_sessions():
            total += self._session_memory(session.config)
        for pool in self._ctx.pools.all():
            total += (len(pool.ready) + pool.starting) * self._session_memory(pool.applied)
        for service in self._ctx.services.all():
            resource = self._ctx.registry.resource(service.resource)
            total += cgroup_memory(resource, resource.service_limits(self._ctx.settings))
        return total

    def pool_may_start(self) -> bool:
        """Whether a pool may start one more container (of the largest pool's pids
        and memory)."""
        pools = self._ctx.pools.all()
        pids = max((int(pool.applied["pids"]) for pool in pools), default=0)
        memory = max((self._session_memory(pool.applied) for pool in pools), default=0)
        return (
            self.container_count() < self._ctx.settings.max_containers
            and self.pids_in_use() + pids <= self._ctx.settings.pid_budget
            and self.memory_in_use() + memory <= self._ctx.settings.memory_budget_bytes()
        )

    def check_cold_start(self, session: Session) -> None:
        """Refuse a cold start past `max_containers`, the pid or the memory budget.

        The session is already in the table (so counted) while this runs.

        Raises:
            SessionError: Either limit would be exceeded; the message names the setting.
        """
        if self.container_count() > self._ctx.settings.max_containers:
            raise SessionError(
                f"the server runs {self._ctx.settings.max_containers} containers, its "
                "limit (max_containers); try again when sessions end"
            )
        in_use, budget = self.pids_in_use(), self._ctx.settings.pid_budget
        if in_use > budget:
            asked = int(session.config["pids"])
            raise SessionError(
                f"the server's containers may hold {in_use - asked} pids and this session "
                f"asks for {asked} more, over the server's pid budget of {budget} (setting "
                "pid_budget); ask for fewer pids or try again when sessions end"
            )
        in_use, budget = self.memory_in_use(), self._ctx.settings.memory_budget_bytes()
        if in_use > budget:
            asked = self._session_memory(session.config)
            raise SessionError(
                f"the server's containers may hold {_gib(in_use - asked)} of memory and this "
                f"session asks for {_gib(asked)} more (memory plus disk), over the server's "
                f"memory budget of {_gib(budget)} (setting memory_budget); ask for less "
                "memory or disk, or try again when sessions end"
            )


def _gib(size: int) -> str:
    return f"{size / 1024**3:.2f} GiB"
