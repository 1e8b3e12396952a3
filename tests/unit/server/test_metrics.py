"""``GET /metrics``: Prometheus figures of sessions, calls, latency, starts and pools."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

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


async def call(harness: Harness, command: str, worker: str = "w1", **body: Any) -> dict[str, Any]:
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


async def test_pool_series_follow_the_pools_the_manager_keeps(harness: Harness) -> None:
    filled = await harness.post("/warmup", {"resources": ["bash"], "pool_size": 2, "wait": True})
    assert filled["code"] == 0, filled
    (pool,) = filled["data"]["resources"]["bash"]["pools"]
    key = pool["key"]
    created = await harness.post("/session/create", {"worker_id": "w1", "resource_type": "bash"})
    assert created["code"] == 0, created
    # A config no pool was made for is a cold start, not a miss of this pool.
    other: dict[str, object] = {"worker_id": "w2", "resource_type": "bash", "config": {"pids": 64}}
    assert (await harness.post("/session/create", other))["code"] == 0

    samples = await scrape(harness)
    assert value(samples, "sandbox_pool_target", resource="bash", key=key) == 2
    hits = value(samples, "sandbox_pool_claims_total", resource="bash", key=key, outcome="hit")
    assert hits == 1
    misses = value(samples, "sandbox_pool_claims_total", resource="bash", key=key, outcome="miss")
    assert misses == 0
    assert value(samples, "sandbox_pool_start_failures_total", resource="bash", key=key) == 0
    ready = value(samples, "sandbox_pool_ready", resource="bash", key=key)
    starting = value(samples, "sandbox_pool_starting", resource="bash", key=key)
    assert ready is not None
    assert starting is not None
    assert ready + starting == 2, "the claimed member is being replaced"
    pool_keys = {dict(labels)["key"] for name, labels in samples if name == "sandbox_pool_target"}
    assert pool_keys == {key}


async def test_no_pool_series_without_pools(harness: Harness) -> None:
    manager = harness.app.state.services.sessions
    assert manager.stats().pools == []
    samples = await scrape(harness)
    assert not [name for name, _ in samples if name.startswith("sandbox_pool_")]
