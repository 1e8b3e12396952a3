"""The session table: the server's in-memory view of live sessions.

Docker is the source of truth (every container carries its session's labels, and
a restarted server rebuilds this table from them); the table is what lets a call
find its container without asking Docker. One session per (tenant, worker, resource).
"""

from __future__ import annotations

import asyncio
import enum
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import DEFAULT_TENANT
from ..protocol import SessionInfo

Clock = Callable[[], float]
"""Wall-clock seconds since the epoch: `time.time`, or a fake a test advances."""

SessionKey = tuple[str, str, str]
"""(tenant, worker_id, resource_type): two tenants' workers never share a session."""

LABEL_TENANT = "sandbox.tenant"
"""Label (and claim-record entry) naming the tenant that owns a session container."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class SessionState(str, enum.Enum):
    """Where a session is in its life."""

    STARTING = "starting"
    READY = "ready"
    DESTROYING = "destroying"


@dataclass
class Session:
    """One worker's session of one resource type, backed by one container."""

    session_id: str
    session_name: str
    worker_id: str
    resource_type: str
    config: dict[str, Any]
    token: str
    created_at: float
    expires_at: float
    last_used_at: float
    auto_created: bool = False
    state: SessionState = SessionState.STARTING
    container_id: str | None = None
    agent_url: str | None = None
    active_calls: int = 0
    call_count: int = 0
    tenant: str = DEFAULT_TENANT
    """The API key's tenant that owns the session; only it sees and touches it."""

    @property
    def key(self) -> SessionKey:
        """The table key."""
        return (self.tenant, self.worker_id, self.resource_type)

    def touch(self, ttl_s: float, now: float) -> None:
        """Mark the session used at `now` and push its expiry to `ttl_s` from then."""
        self.last_used_at = now
        self.expires_at = max(self.expires_at, now + ttl_s)

    def info(self) -> SessionInfo:
        """The session as the API reports it."""
        return SessionInfo(
            session_id=self.session_id,
            session_name=self.session_name,
            worker_id=self.worker_id,
            resource_type=self.resource_type,
            status=self.state.value,
            created_at=self.created_at,
            expires_at=self.expires_at,
            last_used_at=self.last_used_at,
            auto_created=self.auto_created,
            container_id=self.container_id,
            config=self.config,
        )


def new_session_id(resource_type: str, worker_id: str, seq: int) -> str:
    """A unique, container-name-safe id such as ``bash_w1_001_ab12cd34``."""
    worker = _UNSAFE.sub("-", worker_id)[:40].strip("-.") or "worker"
    return f"{resource_type}_{worker}_{seq:03d}_{secrets.token_hex(4)}"


class SessionTable:
    """Sessions by key, with a lock per key for creation.

    Only the creation of one key's session is serialised; different workers (and
    different resource types of one worker) never wait for each other.

    Args:
        clock: The time sessions are created, used and expire by; every session
            module reads it here, so a test's fake clock expires sessions without
            sleeping.
    """

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._sessions: dict[SessionKey, Session] = {}
        self._locks: dict[SessionKey, asyncio.Lock] = {}
        self._seq: dict[tuple[str, str], int] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, key: SessionKey) -> Session | None:
        """The session at `key`, if any."""
        return self._sessions.get(key)

    def put(self, session: Session) -> None:
        """Insert or replace the session at its key."""
        self._sessions[session.key] = session

    def pop(self, key: SessionKey, session: Session | None = None) -> Session | None:
        """Remove the session at `key` (only if it is `session`, when given)."""
        current = self._sessions.get(key)
        if current is None or (session is not None and current is not session):
            return None
        del self._sessions[key]
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            del self._locks[key]
        return current

    def lock(self, key: SessionKey) -> asyncio.Lock:
        """The lock that serialises creating and destroying the session at `key`."""
        return self._locks.setdefault(key, asyncio.Lock())

    def of_worker(self, worker_id: str, tenant: str = DEFAULT_TENANT) -> list[Session]:
        """The sessions of the tenant's worker."""
        return [
            s for s in self._sessions.values() if s.worker_id == worker_id and s.tenant == tenant
        ]

    def all(self, tenant: str | None = None) -> list[Session]:
        """Every session, or every session of one tenant."""
        if tenant is None:
            return list(self._sessions.values())
        return [s for s in self._sessions.values() if s.tenant == tenant]

    def expired(self, now: float) -> list[Session]:
        """Ready sessions past their expiry with no call running."""
        return [
            s
            for s in self._sessions.values()
            if s.state is SessionState.READY and s.active_calls == 0 and s.expires_at <= now
        ]

    def next_seq(self, worker_id: str, tenant: str = DEFAULT_TENANT) -> int:
        """The tenant's worker's next session sequence number.

        Counted per tenant, so a session id tells nothing about how many sessions
        another tenant's worker of the same name opened.
        """
        owner = (tenant, worker_id)
        self._seq[owner] = self._seq.get(owner, 0) + 1
        return self._seq[owner]

    def note_seq(self, worker_id: str, seq: int, tenant: str = DEFAULT_TENANT) -> None:
        """Make later sequence numbers of the worker exceed `seq` (after adoption)."""
        owner = (tenant, worker_id)
        self._seq[owner] = max(self._seq.get(owner, 0), seq)
