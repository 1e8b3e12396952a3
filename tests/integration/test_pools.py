"""Warm pools on the real engine: claims, refills, bursts, dead members, restarts."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import docker

from sandbox import Sandbox

from .support import (
    ServerProcess,
    containers_of,
    created,
    remove_containers_of,
    start_server,
    wait_recovered,
)


def pooled(client: docker.DockerClient, server_id: str) -> list[str]:
    found = client.containers.list(
        filters={"label": [f"sandbox.server={server_id}", "sandbox.pool"]}
    )
    return sorted(c.id for c in found)


def pool_of(status: dict[str, Any], resource: str) -> dict[str, Any]:
    (pool,) = status["data"]["resources"][resource]["pools"]
    return dict(pool)


async def wait_for_ready(
    sb: Sandbox, resource: str, ready: int, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        pool = pool_of(await sb.get_warmup_status(), resource)
        if pool["ready"] >= ready or time.monotonic() > deadline:
            return pool
        await asyncio.sleep(0.1)


async def test_claims_refill_and_survive_a_dead_member(
    server: ServerProcess, docker_client: docker.DockerClient
) -> None:
    async with Sandbox(server_url=server.url, worker_id="pool-a") as sb:
        warm = await sb.warmup(["bash"], pool_size=2, wait=True)
        assert warm["code"] == 0, warm
        assert pool_of(warm, "bash")["ready"] == 2
        members = pooled(docker_client, server.server_id)
        assert len(members) == 2

        docker_client.containers.get(members[0]).kill()  # dies while idle
        created(await sb.create_session("bash"), "bash")
        (session,) = await sb.list_sessions()
        assert session["container_id"] == members[1], "the dead member was skipped"
        ran = await sb.execute("bash:run", {"command": "echo pooled; id -un"})
        assert ran["data"]["stdout"] == "pooled\nsandbox\n"

        pool = await wait_for_ready(sb, "bash", 2)
        assert pool["ready"] == 2, pool
        assert pool["hits"] == 1
        assert members[0] not in pooled(docker_client, server.server_id)

        created(await sb.create_session("code", {"memory": "256m"}), "code")
        assert (await sb.destroy_session())["status"] == "success"
        assert members[1] not in [c.id for c in docker_client.containers.list()], (
            "a destroyed session's container is removed, never returned to the pool"
        )
        await sb.warmup(["bash"], pool_size=0, wait=True)


async def test_a_burst_bigger_than_the_pool_all_succeeds(server: ServerProcess) -> None:
    async with Sandbox(server_url=server.url, worker_id="burst") as sb:
        assert (await sb.warmup(["bash"], pool_size=4, wait=True))["code"] == 0
        workers = [Sandbox(server_url=server.url, worker_id=f"burst-{i}") for i in range(12)]
        try:
            results = await asyncio.gather(*(w.create_session("bash") for w in workers))
            assert [r["status"] for r in results] == ["success"] * 12, results
            runs = await asyncio.gather(
                *(w.execute("bash:run", {"command": "echo ok"}) for w in workers)
            )
            assert {r["data"]["stdout"] for r in runs} == {"ok\n"}
        finally:
            await asyncio.gather(*(w.destroy_session() for w in workers))
            for worker in workers:
                await worker.close()
        pool = await wait_for_ready(sb, "bash", 4)
        assert pool["ready"] == 4, pool
        assert pool["hits"] >= 4
        await sb.warmup(["bash"], pool_size=0, wait=True)


async def test_desktop_pools_serve_only_their_screen_size(
    server: ServerProcess, docker_client: docker.DockerClient
) -> None:
    async with Sandbox(server_url=server.url, worker_id="desk-pool") as sb:
        assert (await sb.warmup(["vm"], pool_size=1, wait=True))["code"] == 0
        (member,) = pooled(docker_client, server.server_id)
        created(await sb.create_session("vm", {"screen_size": [1024, 768]}), "vm")
        (session,) = await sb.list_sessions()
        assert session["container_id"] != member, "1024x768 does not take a 1280x800 desktop"
        shot = await sb.execute("vm:screenshot", {})
        assert shot["data"]["size"] == [1024, 768]
        await sb.destroy_session("vm")
        created(await sb.create_session("vm"), "vm")
        (session,) = await sb.list_sessions()
        assert session["container_id"] == member
        assert (await sb.execute("vm:screenshot", {}))["data"]["size"] == [1280, 800]
        await sb.destroy_session("vm")
        await sb.warmup(["vm"], pool_size=0, wait=True)


def test_a_restarted_server_adopts_pool_members_and_claimed_sessions(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    pools = {"SANDBOX_POOLS": '[{"resource": "bash", "size": 2}]'}
    first = start_server(tmp_path, env=pools)
    try:
        with Sandbox(server_url=first.url, worker_id="adopt") as sb:
            sb.warmup_sync(["bash"], pool_size=2, wait=True)
            sb.execute_sync("bash:run", {"command": "cd /tmp && export MARK=claimed"})
            session_id = sb.list_sessions_sync()[0]["session_id"]
            deadline = time.monotonic() + 30
            while len(pooled(docker_client, first.server_id)) < 3:
                assert time.monotonic() < deadline, "the pool did not refill"
                time.sleep(0.1)
        first.stop(signal.SIGKILL)
        before = pooled(docker_client, first.server_id)

        second = start_server(tmp_path, server_id=first.server_id, env=pools)
        wait_recovered(second)
        assert pooled(docker_client, first.server_id) == before, "all adopted, none started"
        with Sandbox(server_url=second.url, worker_id="adopt") as sb:
            (session,) = sb.list_sessions_sync()
            assert session["session_id"] == session_id
            data = sb.execute_sync("bash:run", {"command": 'echo "$MARK in $(pwd)"'})["data"]
            assert data["stdout"] == "claimed in /tmp\n"
            pool = pool_of(sb.get_warmup_status_sync(), "bash")
            assert (pool["target"], pool["ready"]) == (2, 2)
        assert second.stop_gracefully()
        assert containers_of(docker_client, first.server_id) == []
    finally:
        remove_containers_of(docker_client, first.server_id)
