"""What a trajectory store keeps and the interface every store offers.

A trajectory is one session of one worker: its steps in order. The SQLite store
(`sandbox.recording.sqlite`) is the default; a server database can replace it by
implementing `TrajectoryStore`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Step:
    """One recorded tool call, as stored (params redacted, images by reference)."""

    tenant: str
    worker_id: str
    session_id: str
    resource_type: str
    action: str
    """What the caller asked for, as written (``screenshot``, ``vm.click``)."""
    tool: str
    """The canonical tool name (``vm:screenshot``)."""
    params: dict[str, Any]
    code: int
    message: str
    data: Any
    started_at: float
    """Wall-clock seconds since the epoch when the call arrived."""
    execution_time_ms: float
    trace_id: str | None
    seq: int = 0
    """Position in the trajectory, from 1; the store assigns it."""
    images: dict[str, int] = field(default_factory=dict)
    """The images the step references: SHA-256 to size in bytes."""

    def line(self) -> dict[str, Any]:
        """The step as one JSONL line of an export."""
        return {
            "seq": self.seq,
            "time": self.started_at,
            "worker_id": self.worker_id,
            "session_id": self.session_id,
            "resource_type": self.resource_type,
            "action": self.action,
            "tool": self.tool,
            "params": self.params,
            "code": self.code,
            "message": self.message,
            "data": self.data,
            "execution_time_ms": self.execution_time_ms,
            "trace_id": self.trace_id,
        }


@dataclass(frozen=True)
class TrajectorySummary:
    """One trajectory as a listing shows it."""

    session_id: str
    worker_id: str
    resource_type: str
    started_at: float
    updated_at: float
    steps: int
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        """The summary as the API returns it."""
        return {
            "session_id": self.session_id,
            "worker_id": self.worker_id,
            "resource_type": self.resource_type,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "steps": self.steps,
            "bytes": self.bytes,
        }


class TrajectoryStore(Protocol):
    """Where trajectories live. Called from one writer thread and the API's threads."""

    def add(self, steps: Sequence[Step]) -> None:
        """Store `steps` (numbering each within its trajectory) in one transaction."""

    def find(
        self,
        tenant: str,
        *,
        worker_id: str | None = None,
        session_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[TrajectorySummary]:
        """The tenant's trajectories, newest first, active in [since, until]."""

    def steps(self, tenant: str, session_id: str) -> Iterator[Step] | None:
        """The trajectory's steps in order; None when the tenant has no such trajectory."""

    def delete(self, tenant: str, session_id: str) -> list[str] | None:
        """Remove a trajectory; the images no longer referenced, or None if unknown."""

    def has_image(self, tenant: str, sha256: str) -> bool:
        """Whether one of the tenant's trajectories references image `sha256`."""

    def prune(self, older_than: float, max_bytes: int) -> list[str]:
        """Drop trajectories idle since before `older_than`, then oldest first
        until the total is at most `max_bytes`; the images no longer referenced."""

    def close(self) -> None:
        """Release the store (everything added is durable)."""
