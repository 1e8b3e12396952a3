"""Attacks through the API itself, on the real engine, through a real server.

A hostile caller asks for more than the operator allows, for network, for more
pids than the host can spare; replays someone else's request id without a key;
and, holding one tenant's key, reaches for another tenant's sessions. Each test
asserts the attack fails with the right code and that the server and the
bystanders' sessions carry on.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import docker
import httpx
import pytest

from sandbox import Sandbox
from sandbox.errors import ErrorCode

from .support import ServerProcess, checked, start_server

ALPHA_KEY = secrets.token_urlsafe(16)
BETA_KEY = secrets.token_urlsafe(16)
MIB = 1024**2
# Small ceilings, so that "over" is cheap to ask for and "within" cheap to start.
SERVER_ENV = {
    "SANDBOX_API_KEYS": json.dumps({"alpha": ALPHA_KEY, "beta": BETA_KEY}),
    "SANDBOX_CEILINGS__MEMORY": "512m",
    "SANDBOX_CEILINGS__CPUS": "1",
    "SANDBOX_CEILINGS__PIDS": "256",
    "SANDBOX_CEILINGS__DISK": "512m",
    "SANDBOX_LIMITS__MEMORY": "256m",
    "SANDBOX_LIMITS__CPUS": "0.5",
    "SANDBOX_LIMITS__PIDS": "128",
    "SANDBOX_LIMITS__DISK": "256m",
}


@pytest.fixture(scope="module")
def server(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Two tenants, small ceilings, network not allowed (the default)."""
    tmp = tmp_path_factory.mktemp("server")
    with checked(docker_client, start_server(tmp, env=SERVER_ENV)) as proc:
        yield proc


@pytest.fixture
async def alpha(server: ServerProcess, worker_id: str) -> AsyncIterator[Sandbox]:
    async with Sandbox(server_url=server.url, worker_id=worker_id, api_key=ALPHA_KEY) as sb:
        yield sb


@pytest.fixture
async def beta(server: ServerProcess, worker_id: str) -> AsyncIterator[Sandbox]:
    """Another tenant using the very same worker id."""
    async with Sandbox(server_url=server.url, worker_id=worker_id, api_key=BETA_KEY) as sb:
        yield sb


def _containers(client: docker.DockerClient, server: ServerProcess, worker: str) -> list[Any]:
    labels = [f"sandbox.server={server.server_id}", f"sandbox.worker={worker}"]
    return list(client.containers.list(all=True, filters={"label": labels}))


async def _run(sb: Sandbox, command: str) -> dict[str, Any]:
    envelope = await sb.execute("bash:run", {"command": command})
    assert envelope["code"] == 0, envelope
    return dict(envelope["data"])


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"memory": "1000g"}, "config.memory"),
        ({"cpus": 64}, "config.cpus"),
        ({"pids": 100_000}, "config.pids"),
        ({"disk": "100g"}, "config.disk"),
        ({"network": True}, "config.network"),
    ],
)
async def test_asking_past_a_ceiling_is_1002_and_starts_nothing(
    alpha: Sandbox,
    server: ServerProcess,
    docker_client: docker.DockerClient,
    worker_id: str,
    config: dict[str, Any],
    field: str,
) -> None:
    envelope = await alpha.client.create_session("bash", config)
    assert (envelope["code"], envelope["data"]["field"]) == (ErrorCode.INVALID_PARAMS, field)
    setting = "allow_network" if field == "config.network" else field.split(".")[1]
    assert f"ceilings.{setting}" in envelope["message"]
    assert _containers(docker_client, server, worker_id) == []
    within = await alpha.client.create_session("bash")
    assert within["code"] == 0, "the caller may still ask within"


async def test_a_session_at_the_ceilings_gets_a_cgroup_within_them(
    alpha: Sandbox, server: ServerProcess, docker_client: docker.DockerClient, worker_id: str
) -> None:
    config = {"memory": "512m", "cpus": 1, "pids": 256, "disk": "512m"}
    created = await alpha.client.create_session("bash", config)
    assert created["code"] == 0, created
    (container,) = _containers(docker_client, server, worker_id)
    host = container.attrs["HostConfig"]
    # The disk quota is tmpfs, charged to memory: the cgroup holds both ceilings.
    assert host["Memory"] == (512 + 512) * MIB
    assert host["NanoCpus"] == 10**9
    assert host["PidsLimit"] == 256
    assert host["NetworkMode"] == "none"
    inside = await _run(
        alpha, "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null"
    )
    assert inside["stdout"].split()[0] == "256", "the kernel enforces the ceiling"


# A session here is 128 pids and 256m memory + 256m disk (tmpfs is RAM): two fit in
# each budget below, a third does not.
@pytest.mark.parametrize(("budget", "value"), [("pid_budget", "300"), ("memory_budget", "1200m")])
async def test_a_budget_refuses_a_start_that_would_pass_it(
    docker_client: docker.DockerClient,
    tmp_path_factory: pytest.TempPathFactory,
    worker_id: str,
    budget: str,
    value: str,
) -> None:
    env = {**SERVER_ENV, f"SANDBOX_{budget.upper()}": value}
    tmp = tmp_path_factory.mktemp("budget")
    with checked(docker_client, start_server(tmp, env=env)) as proc:
        clients = [
            Sandbox(server_url=proc.url, worker_id=f"{worker_id}-{i}", api_key=ALPHA_KEY)
            for i in range(3)
        ]
        try:
            for sb in clients[:2]:
                assert (await sb.client.create_session("bash"))["code"] == 0
            refused = await clients[2].client.create_session("bash")
            assert refused["code"] == ErrorCode.SESSION_ERROR
            assert budget in refused["message"]
            running = docker_client.containers.list(
                filters={"label": f"sandbox.server={proc.server_id}"}
            )
            assert len(running) == 2
            assert (await _run(clients[0], "echo alive"))["stdout"] == "alive\n"
            assert (await clients[0].client.destroy_session())["code"] == 0
            assert (await clients[2].client.create_session("bash"))["code"] == 0, "room again"
        finally:
            for sb in clients:
                await sb.close()


async def test_a_request_id_replayed_without_the_key_gets_nothing(
    server: ServerProcess, worker_id: str
) -> None:
    body = {"worker_id": worker_id, "action": "bash:run", "params": {"command": "echo s3cr3t"}}
    headers = {"X-Request-ID": f"victim-{secrets.token_hex(4)}"}
    keyed = {**headers, "Authorization": f"Bearer {ALPHA_KEY}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        first = await http.post("/execute", json=body, headers=keyed)
        assert first.json()["data"]["stdout"] == "s3cr3t\n"
        stolen = await http.post("/execute", json=body, headers=headers)
        assert stolen.status_code == 401
        assert "s3cr3t" not in stolen.text
        # Another tenant with the same id and body runs its own call, in its own session.
        other = await http.post(
            "/execute", json=body, headers={**headers, "Authorization": f"Bearer {BETA_KEY}"}
        )
        assert "x-request-replayed" not in other.headers
        assert other.json()["meta"]["session_id"] != first.json()["meta"]["session_id"]
        changed = {**body, "params": {"command": "echo other"}}
        reused = await http.post("/execute", json=changed, headers=keyed)
        assert reused.status_code == 400
        assert reused.json()["data"]["field"] == "X-Request-ID"
        again = await http.post("/execute", json=body, headers=keyed)
        assert again.headers["x-request-replayed"] == "1"
        assert again.json()["data"] == first.json()["data"]


async def test_a_tenant_cannot_see_run_in_or_destroy_another_tenants_session(
    alpha: Sandbox,
    beta: Sandbox,
    server: ServerProcess,
    docker_client: docker.DockerClient,
    worker_id: str,
) -> None:
    created = await alpha.client.create_session("bash")
    assert created["code"] == 0, created
    await _run(alpha, "echo alpha-only > /tmp/marker")

    assert await beta.list_sessions() == []
    assert (await beta.client.destroy_session("bash"))["code"] == ErrorCode.SESSION_ERROR
    assert (await beta.client.destroy_session())["code"] == ErrorCode.SESSION_ERROR
    assert (await beta.refresh_sessions())["code"] == ErrorCode.SESSION_ERROR
    # beta's call under the same worker id lands in a session of beta's own.
    probe = await beta.execute("bash:run", {"command": "cat /tmp/marker || echo missing"})
    assert probe["data"]["stdout"] == "missing\n"
    assert probe["meta"]["session_id"] != created["data"]["session_id"]
    batch = await beta.execute_batch([{"action": "bash:run", "params": {"command": "ls /tmp"}}])
    assert "marker" not in batch["data"]["results"][0]["data"]["stdout"]

    assert (await _run(alpha, "cat /tmp/marker"))["stdout"] == "alpha-only\n"
    mine = await alpha.list_sessions()
    assert [s["session_id"] for s in mine] == [created["data"]["session_id"]]
    tenants = sorted(
        c.labels["sandbox.tenant"] for c in _containers(docker_client, server, worker_id)
    )
    assert tenants == ["alpha", "beta"]


async def test_a_tenant_cannot_shut_the_server_down_or_resize_pools(
    alpha: Sandbox, server: ServerProcess, docker_client: docker.DockerClient, worker_id: str
) -> None:
    # Neither alpha nor beta is in admin_tenants (default: the `api_key` tenant only).
    assert (await alpha.client.create_session("bash"))["code"] == 0
    beta = {"Authorization": f"Bearer {BETA_KEY}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        for path, body in [
            ("/shutdown", {}),
            ("/server/shutdown", {}),
            ("/warmup", {"resources": ["bash"], "pool_size": 8}),
        ]:
            refused = await http.post(path, json=body, headers=beta)
            assert refused.status_code == 403, (path, refused.text)
            envelope = refused.json()
            assert envelope["code"] == ErrorCode.INVALID_PARAMS
            assert envelope["data"]["field"] == "Authorization"
        health = await http.get("/health")
        assert health.json()["data"]["status"] == "ok"
    assert (await _run(alpha, "echo alive"))["stdout"] == "alive\n", "alpha's session lives on"
    pooled = docker_client.containers.list(
        filters={"label": [f"sandbox.server={server.server_id}", "sandbox.pool"]}
    )
    assert pooled == [], "no pool was started"


@pytest.mark.parametrize("cpus", [1e-10, 0.001, 0])
async def test_a_cpu_share_too_small_to_limit_is_1002(
    alpha: Sandbox,
    server: ServerProcess,
    docker_client: docker.DockerClient,
    worker_id: str,
    cpus: float,
) -> None:
    envelope = await alpha.client.create_session("bash", {"cpus": cpus})
    assert (envelope["code"], envelope["data"]["field"]) == (
        ErrorCode.INVALID_PARAMS,
        "config.cpus",
    )
    assert _containers(docker_client, server, worker_id) == []


def test_serve_refuses_every_address_without_a_key_unless_told_insecure() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    refused = subprocess.run(
        [sys.executable, "-m", "sandbox", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "--insecure" in refused.stderr
    assert "SANDBOX_API_KEY" in refused.stderr
