"""Server start, crash, restart and shutdown against the real engine."""

from __future__ import annotations

import signal
from pathlib import Path

import docker
import httpx

from sandbox import Sandbox

from .support import containers_of, free_port, remove_containers_of, start_server, wait_recovered


def test_a_killed_server_restarts_and_adopts_its_sessions_with_their_state(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    first = start_server(tmp_path)
    try:
        with Sandbox(server_url=first.url, worker_id="crash") as sb:
            sb.execute_sync("bash:run", {"command": "cd /tmp && export MARK=survived"})
            session_id = sb.list_sessions_sync()[0]["session_id"]
        first.stop(signal.SIGKILL)
        assert len(containers_of(docker_client, first.server_id)) == 1

        second = start_server(tmp_path, server_id=first.server_id, port=first.port)
        wait_recovered(second)
        with Sandbox(server_url=second.url, worker_id="crash") as sb:
            (session,) = sb.list_sessions_sync()
            assert session["session_id"] == session_id
            data = sb.execute_sync("bash:run", {"command": 'echo "$MARK in $(pwd)"'})["data"]
            assert data["stdout"] == "survived in /tmp\n"
        assert second.stop_gracefully()
        assert containers_of(docker_client, first.server_id) == []
    finally:
        remove_containers_of(docker_client, first.server_id)


def test_start_removes_orphans(tmp_path: Path, docker_client: docker.DockerClient) -> None:
    server = start_server(tmp_path)
    try:
        with Sandbox(server_url=server.url, worker_id="orphan") as sb:
            sb.create_session_sync("bash")
        server.stop(signal.SIGKILL)
        (name,) = containers_of(docker_client, server.server_id)
        docker_client.containers.get(name).stop(timeout=1)

        again = start_server(tmp_path, server_id=server.server_id)
        wait_recovered(again)
        assert containers_of(docker_client, server.server_id) == []
        with Sandbox(server_url=again.url, worker_id="orphan") as sb:
            assert sb.list_sessions_sync() == []
        assert again.stop_gracefully()
    finally:
        remove_containers_of(docker_client, server.server_id)


def test_kept_sessions_survive_a_graceful_restart(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    keep = {"SANDBOX_KEEP_SESSIONS_ON_SHUTDOWN": "true"}
    server = start_server(tmp_path, env=keep)
    try:
        with Sandbox(server_url=server.url, worker_id="keeper") as sb:
            sb.execute_sync("bash:run", {"command": "echo kept > /tmp/f"})
        assert server.stop_gracefully()
        assert len(containers_of(docker_client, server.server_id)) == 1
        again = start_server(tmp_path, server_id=server.server_id)
        wait_recovered(again)
        with Sandbox(server_url=again.url, worker_id="keeper") as sb:
            data = sb.execute_sync("bash:run", {"command": "cat /tmp/f"})["data"]
            assert data["stdout"] == "kept\n"
        assert again.stop_gracefully()
        assert containers_of(docker_client, server.server_id) == []
    finally:
        remove_containers_of(docker_client, server.server_id)


def test_shutdown_endpoint_destroys_sessions_and_stops_the_process(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    server = start_server(tmp_path)
    try:
        with Sandbox(server_url=server.url, worker_id="bye") as sb:
            sb.create_session_sync("bash")
            sb.create_session_sync("code")
            envelope = sb.shutdown_server_sync()
            assert envelope["data"]["destroyed"] == 2
        assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert containers_of(docker_client, server.server_id) == []
    finally:
        server.stop(signal.SIGKILL)
        remove_containers_of(docker_client, server.server_id)


async def test_auto_start_server_starts_and_stops_a_local_server(
    docker_client: docker.DockerClient,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with Sandbox(server_url=url, worker_id="auto", auto_start_server=True) as sb:
        envelope = await sb.execute("bash:run", {"command": "echo auto"})
        assert envelope["data"]["stdout"] == "auto\n"
        health = httpx.get(f"{url}/health").json()["data"]
        server_id = health["server_id"]
        assert len(containers_of(docker_client, server_id)) == 1
    try:
        refused = False
        try:
            httpx.get(f"{url}/health", timeout=2)
        except httpx.ConnectError:
            refused = True
        assert refused, "close() stops the server it started"
        assert containers_of(docker_client, server_id) == []
    finally:
        remove_containers_of(docker_client, server_id)
