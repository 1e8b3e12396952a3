"""deploy/swarm-stack.yml deployed for real: `docker stack deploy`, a session, `docker stack rm`.

The server image (`<namespace>/server:latest`, built from this tree by
scripts/setup.sh) runs as a stack service on this engine (a swarm manager), in
its host network; its session is a service reached through its relay; removing
the stack stops the server, which removes its sessions, secrets and relay.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from sandbox import Sandbox

from .support import STARTED_SERVER_IDS, free_port
from .swarm_support import manager_swarm, remove_swarm_state_of, services_of

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = os.environ.get("SANDBOX_IMAGE_NAMESPACE", "sandbox")


@pytest.fixture
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=60)
    try:
        with manager_swarm(client):
            yield client
    finally:
        client.close()


def _stack(*args: str, env: dict[str, str]) -> None:
    subprocess.run(["docker", "stack", *args], check=True, env=env, capture_output=True)


def test_the_stack_file_deploys_a_working_server_and_removes_cleanly(
    engine: docker.DockerClient,
) -> None:
    stack = f"sandbox-test-{os.getpid()}"
    server_id = f"{stack}-server"
    STARTED_SERVER_IDS.add(server_id)
    port = free_port()
    env = {
        **os.environ,
        "SANDBOX_STACK_NAMESPACE": NAMESPACE,
        "SANDBOX_STACK_SERVER_ID": server_id,
        "SANDBOX_STACK_API_KEY": "stack-test-key",
        "SANDBOX_STACK_PORT": str(port),
    }
    url = f"http://127.0.0.1:{port}"
    try:
        _stack("deploy", "-c", str(ROOT / "deploy" / "swarm-stack.yml"), stack, env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the stack's server did not answer in 60 s"
            time.sleep(0.5)
        with Sandbox(server_url=url, worker_id="stack", api_key="stack-test-key") as sb:
            answer = sb.execute_sync("bash:run", {"command": "echo from-the-stack"})
            assert answer["code"] == 0, answer
            assert answer["data"]["stdout"] == "from-the-stack\n"
        assert len(services_of(engine, server_id)) == 1

        _stack("rm", stack, env=env)
        deadline = time.monotonic() + 60
        while services_of(engine, server_id) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert services_of(engine, server_id) == []  # the stopping server removed them
        assert engine.secrets.list(filters={"label": f"sandbox.server={server_id}"}) == []
    finally:
        subprocess.run(["docker", "stack", "rm", stack], env=env, capture_output=True, check=False)
        remove_swarm_state_of(engine, server_id)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                engine.volumes.get(f"{server_id}-state").remove(force=True)
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:  # the server's container is still going
                time.sleep(0.5)
