"""Search latencies as ``rag.stats`` reports them."""

from __future__ import annotations

import collections
import threading

_LATENCY_WINDOW = 10_000


class Latencies:
    """Query count and recent per-query latencies, shared by the serving threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: collections.deque[float] = collections.deque(maxlen=_LATENCY_WINDOW)
        self.count = 0

    def add(self, seconds: float, queries: int = 1) -> None:
        with self._lock:
            self.count += queries
            self._recent.extend([seconds * 1000 / queries] * queries)

    def percentiles(self) -> dict[str, float | None]:
        with self._lock:
            ordered = sorted(self._recent)
        if not ordered:
            return {"p50": None, "p95": None}
        return {
            "p50": round(ordered[(len(ordered) - 1) // 2], 3),
            "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 3),
        }
