"""A session's applied config: what it asked for with the server's defaults filled in.

A pure function of the resource type, the validated config and the default
limits, so the pools (which key on it) and the session table agree on it without
asking the manager.
"""

from __future__ import annotations

from typing import Any

from ..backends import ResourceType, SessionConfig
from ..config import ResourceLimits


def applied_config(
    resource: ResourceType, config: SessionConfig, defaults: ResourceLimits
) -> dict[str, Any]:
    """`config` with memory, cpus, pids and network filled in from `defaults`."""
    limits = config.limits(defaults)
    applied = config.model_dump(exclude_none=True)
    applied.update(
        memory=limits.memory,
        cpus=limits.cpus,
        pids=limits.pids,
        network=resource.default_network if config.network is None else config.network,
    )
    return applied
