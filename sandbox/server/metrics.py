"""Prometheus metrics of one server.

Each app owns a `CollectorRegistry` (never the process-wide default), so apps in
one process, as in tests, do not share or clash over metrics. Session counts,
call and start counters and pool sizes are read from the session manager when
Prometheus scrapes; only the tool call latency histogram is recorded as calls
finish (`ServerMetrics.observe_call`).

Exported:

    sandbox_info{version,server_id}                      1
    sandbox_uptime_seconds                               seconds since the server started
    sandbox_sessions{resource,state}                     live sessions
    sandbox_workers                                      workers holding a session
    sandbox_tool_calls_total{tool,code}                  finished tool calls by envelope code
    sandbox_tool_call_duration_seconds{tool}             histogram of tool call latency
    sandbox_session_starts_total{resource,outcome}       session starts, outcome ok|failed
    sandbox_pool_ready{resource,key}                     ready containers in a warm pool
    sandbox_pool_target{resource,key}                    the size the pool is kept at
    sandbox_pool_starting{resource,key}                  containers starting to refill it
    sandbox_pool_claims_total{resource,key,outcome}      claims: hit or miss (cold start)
    sandbox_pool_start_failures_total{resource,key}      pool containers that failed to start
    process_*                                            CPU, memory, open files of the server
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from .. import __version__
from ..protocol import PoolStatus, ServerStats

if TYPE_CHECKING:
    from .deps import Services

# Tool calls take from a millisecond (vm:click) to minutes (a long bash:run).
_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip


class ServerMetrics:
    """The metrics of one app: a registry, the latency histogram, the scrape-time reader."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._sessions = _SessionCollector()
        self.registry.register(self._sessions)
        ProcessCollector(registry=self.registry)
        self._latency = Histogram(
            "sandbox_tool_call_duration_seconds",
            "Tool call latency in the server, from request to envelope, by tool.",
            ["tool"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def watch(self, services: Services) -> None:
        """Read session, call, start and pool figures from `services` at each scrape."""
        self._sessions.services = services

    def observe_call(self, tool: str, seconds: float) -> None:
        """Record one finished call of `tool` (a canonical ``resource:tool`` name)."""
        self._latency.labels(tool=tool).observe(seconds)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """Every metric, in the format an ``Accept`` header asks for, and its media type.

        The Prometheus text format 0.0.4 unless the scraper asks for OpenMetrics or
        a newer text format.
        """
        encode, media_type = choose_encoder(accept)
        return encode(self.registry), media_type


class _SessionCollector:
    """Reads the session manager when scraped; exports nothing before the lifespan ran."""

    def __init__(self) -> None:
        self.services: Services | None = None

    def describe(self) -> Iterable[Metric]:
        # The families vary with the manager's state: nothing to pre-declare.
        return ()

    def collect(self) -> Iterator[Metric]:
        services = self.services
        if services is None:
            return
        info = GaugeMetricFamily(
            "sandbox_info", "This server's version and id.", labels=["version", "server_id"]
        )
        info.add_metric([__version__, services.settings.server_id], 1)
        yield info
        yield GaugeMetricFamily(
            "sandbox_uptime_seconds",
            "Seconds since the server started.",
            value=max(0.0, time.time() - services.started_at),
        )
        yield from _session_metrics(services)
        stats = services.sessions.stats()
        yield from _counter_metrics(stats)
        yield from _pool_metrics(stats.pools)


def _session_metrics(services: Services) -> Iterator[Metric]:
    sessions = services.sessions.sessions()
    by_key = Counter((s.resource_type, s.state.value) for s in sessions)
    family = GaugeMetricFamily(
        "sandbox_sessions",
        "Live sessions by resource type and state.",
        labels=["resource", "state"],
    )
    # Every known resource's `ready` count is exported, zero included, so a
    # dashboard tells "none" from "not reported".
    for resource in services.registry.resource_names:
        by_key.setdefault((resource, "ready"), 0)
    for (resource, state), count in sorted(by_key.items()):
        family.add_metric([resource, state], count)
    yield family
    yield GaugeMetricFamily(
        "sandbox_workers",
        "Workers holding at least one session.",
        value=len({s.worker_id for s in sessions}),
    )


def _counter_metrics(stats: ServerStats) -> Iterator[Metric]:
    calls = CounterMetricFamily(
        "sandbox_tool_calls",
        "Finished tool calls by tool and envelope code (0 is success).",
        labels=["tool", "code"],
    )
    for key, count in sorted(stats.calls.items()):
        tool, _, code = key.rpartition(":")
        calls.add_metric([tool, code], count)
    yield calls
    starts = CounterMetricFamily(
        "sandbox_session_starts",
        "Session starts (container starts, pool claims, shared-service sessions) by outcome.",
        labels=["resource", "outcome"],
    )
    for key, count in sorted(stats.starts.items()):
        resource, _, outcome = key.rpartition(":")
        starts.add_metric([resource, outcome], count)
    yield starts


def _pool_metrics(pools: list[PoolStatus]) -> Iterator[Metric]:
    """Warm pool figures, one series per pool; none at all while there is no pool."""
    if not pools:
        return
    labels = ["resource", "key"]
    ready = GaugeMetricFamily(
        "sandbox_pool_ready", "Ready containers in a warm pool.", labels=labels
    )
    target = GaugeMetricFamily(
        "sandbox_pool_target", "The size a warm pool is kept at.", labels=labels
    )
    starting = GaugeMetricFamily(
        "sandbox_pool_starting", "Containers starting to refill a warm pool.", labels=labels
    )
    claims = CounterMetricFamily(
        "sandbox_pool_claims",
        "Sessions that asked a warm pool for a container: hit (served) or miss (cold start).",
        labels=[*labels, "outcome"],
    )
    failures = CounterMetricFamily(
        "sandbox_pool_start_failures", "Pool containers that failed to start.", labels=labels
    )
    for pool in pools:
        values = [pool.resource, pool.key]
        ready.add_metric(values, pool.ready)
        target.add_metric(values, pool.target)
        starting.add_metric(values, pool.starting)
        claims.add_metric([*values, "hit"], pool.hits)
        claims.add_metric([*values, "miss"], pool.misses)
        failures.add_metric(values, pool.failures)
    yield from (ready, target, starting, claims, failures)


__all__ = ["ServerMetrics"]
