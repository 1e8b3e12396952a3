"""The one codec between Docker labels and a `Session`.

A cold-started session container carries its session in labels; a claimed pool
container carries the same labels in its agent (``agent.meta``), signed by the
server (`claims`). A restarted server reads them back here. Only what this server
could have written decodes: any other label set (an unknown or shared resource
type, a worker id the API refuses, a config that does not validate, an unreadable
creation time) is no session, and its container is removed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

from ..backends import ResourceType, SessionConfig
from ..config import DEFAULT_TENANT, ResourceLimits
from ..errors import SandboxError
from ..protocol import WORKER_ID_PATTERN
from ..runtime.docker import (
    LABEL_AUTO,
    LABEL_CONFIG,
    LABEL_CREATED,
    LABEL_NAME,
    LABEL_POOL,
    LABEL_RESOURCE,
    LABEL_SESSION,
    LABEL_WORKER,
    ContainerRecord,
)
from .applied import applied_config
from .registry import ToolRegistry
from .table import LABEL_TENANT, Session, SessionState

_WORKER_ID = re.compile(WORKER_ID_PATTERN)
# What `new_session_id` makes: resource, worker (made safe), sequence, random hex.
_SESSION_ID = re.compile(r"^[a-z][a-z0-9_]{0,31}_[A-Za-z0-9_.-]{1,40}_(\d{3,})_[0-9a-f]{8}$")


# -- encoding ---------------------------------------------------------------------------


def config_label(config: SessionConfig) -> str:
    """The session config as its label holds it: what was asked, not the defaults."""
    return json.dumps(config.model_dump(exclude_none=True), sort_keys=True)


def session_labels(session: Session, config: SessionConfig) -> dict[str, str]:
    """The labels (or signed claim) that let a restarted server adopt `session`."""
    return {
        LABEL_TENANT: session.tenant,
        LABEL_WORKER: session.worker_id,
        LABEL_SESSION: session.session_id,
        LABEL_NAME: session.session_name,
        LABEL_CONFIG: config_label(config),
        LABEL_CREATED: f"{session.created_at:.3f}",
        LABEL_AUTO: "1" if session.auto_created else "0",
    }


def pool_labels(pool_key: str, config: SessionConfig, created_at: float) -> dict[str, str]:
    """The labels of a warm pool's container."""
    return {
        LABEL_POOL: pool_key,
        LABEL_CONFIG: config_label(config),
        LABEL_CREATED: f"{created_at:.3f}",
    }


# -- decoding ---------------------------------------------------------------------------


def created_at(labels: Mapping[str, str]) -> float | None:
    """The creation time a container's labels give, or None when unreadable."""
    try:
        value = float(labels.get(LABEL_CREATED) or "")
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def is_worker_id(worker_id: str) -> bool:
    """Whether the API would accept `worker_id`."""
    return bool(_WORKER_ID.match(worker_id))


def is_session_id(session_id: str, resource: str) -> bool:
    """Whether `session_id` is one this server makes for sessions of `resource`."""
    return session_id.startswith(f"{resource}_") and bool(_SESSION_ID.match(session_id))


def session_seq(session_id: str) -> int | None:
    """The per-worker sequence number inside a session id, if it has one."""
    match = _SESSION_ID.match(session_id)
    return int(match.group(1)) if match else None


def decode_config(
    labels: Mapping[str, str], registry: ToolRegistry
) -> tuple[ResourceType, SessionConfig] | None:
    """The resource type and validated config the labels name, or None if invalid."""
    try:
        resource = registry.resource(labels.get(LABEL_RESOURCE, ""))
        config = json.loads(labels.get(LABEL_CONFIG) or "{}")
        if not isinstance(config, dict):
            return None
        return resource, registry.validate_config(resource, config)
    except (ValueError, SandboxError):
        return None


def session_from_labels(
    labels: Mapping[str, str],
    record: ContainerRecord,
    registry: ToolRegistry,
    defaults: ResourceLimits,
    *,
    ttl_s: float,
    now: float,
) -> Session | None:
    """The ready session a running container's labels describe, or None.

    Args:
        labels: The container's labels, with a verified claim merged over them.
        record: The container (its id, agent URL and token).
        registry: Resource types and their config models.
        defaults: The server's default limits (for the applied config).
        ttl_s: The session's new lease from `now`.
        now: The time of adoption.
    """
    session_id, worker_id = labels.get(LABEL_SESSION, ""), labels.get(LABEL_WORKER, "")
    token, created = record.token, created_at(labels)
    if not (record.running and record.agent_url and token and created is not None):
        return None
    decoded = decode_config(labels, registry)
    if decoded is None or decoded[0].shared:  # shared sessions live in their service
        return None
    resource, config = decoded
    if not (is_worker_id(worker_id) and is_session_id(session_id, resource.name)):
        return None
    return Session(
        session_id=session_id,
        session_name=labels.get(LABEL_NAME) or session_id,
        worker_id=worker_id,
        resource_type=resource.name,
        config=applied_config(resource, config, defaults),
        token=token,
        created_at=created,
        expires_at=now + ttl_s,
        last_used_at=now,
        auto_created=labels.get(LABEL_AUTO) == "1",
        state=SessionState.READY,
        container_id=record.id,
        agent_url=record.agent_url,
        tenant=labels.get(LABEL_TENANT) or DEFAULT_TENANT,
    )
