"""What every session job shares: one `SessionContext`, built once by the manager.

The jobs (`Capacity`, `ServiceSessions`, `Recovery`, `SessionLifecycle`,
`ToolCalls`) all work on the same table, settings, Docker runtime, agent client,
containers, pools and services. Rather than each constructor taking a dozen of
them and copying each into an attribute, the manager builds them once, puts
them in this frozen dataclass, and hands it to every job; a job's constructor
then names only the other jobs it calls, so the wiring in `manager` reads as
who depends on whom.

The container owners (`AgentContainers`, `SharedServices`, `WarmPools`) sit
under the context, not on it: they are built first, from the few things they
need, and the context holds them. Frozen, so no job can swap a collaborator
behind another's back.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings
from ..runtime.agent import AgentClient
from ..runtime.base import Runtime
from ..runtime.images import ImageService
from ..runtime.sockets import SocketDirs
from .claims import ClaimedContainers, ClaimSigner
from .containers import AgentContainers
from .pools import WarmPools
from .registry import ToolRegistry
from .screen_recordings import ScreenRecordings
from .services import SharedServices
from .table import SessionTable
from .tasks import Background


@dataclass(frozen=True)
class SessionContext:
    """The collaborators the session jobs share.

    Attributes:
        settings: Server settings (TTLs, limits, ceilings, timeouts, server id).
        runtime: Lists, inspects, starts and removes containers.
        agents: Calls the agents inside them.
        registry: Resource types and tools; validates configs and parameters.
        images: Names and builds the images.
        table: The sessions, and the clock they expire by.
        sockets: The containers' socket directories.
        background: Runs tasks nobody waits for (clean-ups, warm-ups).
        containers: Starts and removes agent containers.
        services: The shared service containers (rag).
        pools: The warm pools.
        claims: Signs and verifies the claims pool containers keep.
        claimed: The server's own record of the pool containers it claimed.
        recordings: Starts screen recordings and keeps their videos.
    """

    settings: Settings
    runtime: Runtime
    agents: AgentClient
    registry: ToolRegistry
    images: ImageService
    table: SessionTable
    sockets: SocketDirs
    background: Background
    containers: AgentContainers
    services: SharedServices
    pools: WarmPools
    claims: ClaimSigner
    claimed: ClaimedContainers
    recordings: ScreenRecordings
