"""What this server's containers hold against its limits: `max_containers`, `pid_budget`.

Counted from the server's own records (the session table, the pools, the shared
services), never from what a container says of itself.
"""

from __future__ import annotations

from ..config import Settings
from ..errors import SessionError
from .pools import WarmPools
from .registry import ToolRegistry
from .services import SharedServices
from .table import Session, SessionTable


class Capacity:
    """Counts containers and pids, and refuses what would go over the limits.

    Args:
        settings: `max_containers`, `pid_budget` and the default pids limit.
        registry: Tells dedicated from shared resource types.
        table: The sessions (starting ones included).
        services: The shared service containers.
        pools: The warm pools.
    """

    def __init__(
        self,
        settings: Settings,
        registry: ToolRegistry,
        table: SessionTable,
        services: SharedServices,
        pools: WarmPools,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._table = table
        self._services = services
        self._pools = pools

    def container_count(self) -> int:
        """Containers of this server: dedicated sessions (starting too), pools, services."""
        dedicated = sum(
            1 for s in self._table.all() if not self._registry.resource(s.resource_type).shared
        )
        return dedicated + self._pools.container_count() + len(self._services.all())

    def pids_in_use(self) -> int:
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

    def pool_may_start(self) -> bool:
        """Whether a pool may start one more container (of the largest pool's pids)."""
        largest = max((int(pool.applied["pids"]) for pool in self._pools.all()), default=0)
        return (
            self.container_count() < self._settings.max_containers
            and self.pids_in_use() + largest <= self._settings.pid_budget
        )

    def check_cold_start(self, session: Session) -> None:
        """Refuse a cold start past `max_containers` or the pid budget.

        The session is already in the table (so counted) while this runs.

        Raises:
            SessionError: Either limit would be exceeded; the message names the setting.
        """
        if self.container_count() > self._settings.max_containers:
            raise SessionError(
                f"the server runs {self._settings.max_containers} containers, its "
                "limit (max_containers); try again when sessions end"
            )
        in_use, budget = self.pids_in_use(), self._settings.pid_budget
        if in_use > budget:
            asked = int(session.config["pids"])
            raise SessionError(
                f"the server's containers may hold {in_use - asked} pids and this session "
                f"asks for {asked} more, over the server's pid budget of {budget} (setting "
                "pid_budget); ask for fewer pids or try again when sessions end"
            )
