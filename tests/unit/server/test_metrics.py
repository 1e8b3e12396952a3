"""``GET /metrics``: Prometheus figures of sessions, calls, latency, starts and pools."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sandbox.sessions.manager import SessionManager

from .conftest import Harness, make_settings, open_harness

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(harness: Harness, path: str = "/metrics", **kw: Any) -> Samples:
    response = await harness.client.get(path, **kw)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def call(harness: Harness, command: str, worker: str = "w1", **body: Any) -> dict:
    return await harness.post(
        "/execute",
        {"worker_id": worker, "action": "bash:run", "params": {"command": command}, **body},
    )


@pytest.mark.parametrize("path", ["/metrics", "/api/v1/metrics"])
async def test_metrics_count_sessions_calls_and_starts(harness: Harness, path: str) -> None:
    await call(harness, "one")
    await call(harness, "two")
    await call(harness, "sleep 9", timeout=1)
    await call(harness, "three", worker="w2")
    await harness.post("/execute", {"worker_id": "w1", "action": "bash:nope"})
    harness.runtime.fail_start = "no image"
    await harness.post("/session/create", {"worker_id": "w3", "resource_type": "code"})

    samples = await scrape(harness, path)
    assert value(samples, "sandbox_sessions", resource="bash", state="ready") == 2
    assert value(samples, "sandbox_sessions", resource="code", state="ready") == 0
    assert value(samples, "sandbox_workers") == 2
    assert value(samples, "sandbox_tool_calls_total", tool="bash:run", code="0") == 3
    assert value(samples, "sandbox_tool_calls_total", tool="bash:run", code="2002") == 1
    assert value(samples, "sandbox_session_starts_total", resource="bash", outcome="ok") == 2
    assert value(samples, "sandbox_session_starts_total", resource="code", outcome="failed") == 1
    assert value(samples, "sandbox_info", version="0.1.0", server_id="unit") == 1
    uptime = value(samples, "sandbox_uptime_seconds")
    assert uptime is not None
    assert 0 <= uptime < 60
    assert value(samples, "process_resident_memory_bytes")


async def test_tool_latency_is_a_histogram_by_canonical_tool_name(harness: Harness) -> None:
    await call(harness, "a")
    await harness.post(
        "/execute", {"worker_id": "w1", "action": "bash.run", "params": {"command": "b"}}
    )
    await harness.post("/execute", {"worker_id": "w1", "action": "no-such-tool"})
    await harness.post("/execute", {"worker_id": "w1", "action": "bash:run", "params": {}})
    samples = await scrape(harness)
    count = value(samples, "sandbox_tool_call_duration_seconds_count", tool="bash:run")
    assert count == 2, "typos and rejected parameters are not calls"
    assert value(samples, "sandbox_tool_call_duration_seconds_bucket", tool="bash:run", le="+Inf")
    histogram_tools = {
        dict(labels)["tool"]
        for name, labels in samples
        if name == "sandbox_tool_call_duration_seconds_count"
    }
    assert histogram_tools == {"bash:run"}


async def test_batches_are_timed_per_call(harness: Harness) -> None:
    actions = [{"action": "bash:run", "params": {"command": str(i)}} for i in range(3)]
    await harness.post("/execute/batch", {"worker_id": "w1", "actions": actions, "parallel": True})
    samples = await scrape(harness)
    assert value(samples, "sandbox_tool_call_duration_seconds_count", tool="bash:run") == 3


async def test_metrics_need_the_api_key() -> None:
    h = await open_harness(make_settings(api_key="k3y"))
    async with h.app.router.lifespan_context(h.app), h.client:
        denied = await h.client.get("/metrics")
        assert denied.status_code == 401
        assert denied.json()["data"] == {"field": "Authorization"}
        samples = await scrape(h, headers={"Authorization": "Bearer k3y"})
        assert value(samples, "sandbox_workers") == 0


async def test_openmetrics_when_the_scraper_asks(harness: Harness) -> None:
    response = await harness.client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


async def test_every_app_has_its_own_registry() -> None:
    first = await open_harness(make_settings())
    second = await open_harness(make_settings(server_id="other"))
    async with (
        first.app.router.lifespan_context(first.app),
        first.client,
        second.app.router.lifespan_context(second.app),
        second.client,
    ):
        await call(first, "only here")
        mine, theirs = await scrape(first), await scrape(second)
    assert value(mine, "sandbox_tool_call_duration_seconds_count", tool="bash:run") == 1
    assert value(theirs, "sandbox_tool_call_duration_seconds_count", tool="bash:run") is None
    assert value(theirs, "sandbox_info", version="0.1.0", server_id="other") == 1


@pytest.mark.parametrize(
    "pools",
    [
        [
            {"key": "bash-1a2b", "resource": "bash", "target": 4, "ready": 3, "starting": 1},
            {"key": "vm-9f", "resource": "vm", "target": 2, "ready": 0, "hits": 5, "misses": 2},
        ],
        {
            "bash-1a2b": {"resource": "bash", "target": 4, "ready": 3, "starting": 1},
            "vm-9f": {"resource": "vm", "target": 2, "ready": 0, "hits": 5, "misses": 2},
        },
    ],
)
async def test_pool_sizes_are_exported_when_the_manager_reports_pools(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, pools: Any
) -> None:
    manager = harness.app.state.services.sessions
    plain = SessionManager.stats

    def with_pools(self: SessionManager) -> dict[str, Any]:
        return {**plain(self), "pools": pools}

    monkeypatch.setattr(type(manager), "stats", with_pools)
    samples = await scrape(harness)
    assert value(samples, "sandbox_pool_ready", resource="bash", key="bash-1a2b") == 3
    assert value(samples, "sandbox_pool_target", resource="bash", key="bash-1a2b") == 4
    assert value(samples, "sandbox_pool_starting", resource="bash", key="bash-1a2b") == 1
    assert value(samples, "sandbox_pool_ready", resource="vm", key="vm-9f") == 0
    assert value(samples, "sandbox_pool_target", resource="vm", key="vm-9f") == 2
    hits = value(samples, "sandbox_pool_claims_total", resource="vm", key="vm-9f", outcome="hit")
    assert hits == 5


async def test_no_pool_series_without_pools(harness: Harness) -> None:
    manager = harness.app.state.services.sessions
    assert not manager.stats().get("pools")
    samples = await scrape(harness)
    assert not [name for name, _ in samples if name.startswith("sandbox_pool_")]
