"""The shell image on its own, as a container under test (testcontainers)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest

# The reaper's image cannot be pulled where no registry is reachable; each test
# removes its own container (and the label lets anything missed be found).
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import HttpWaitStrategy

TOKEN = secrets.token_hex(8)


@pytest.fixture(scope="module")
def agent(docker_client: docker.DockerClient) -> Iterator[httpx.Client]:
    container = (
        DockerContainer("sandbox/shell:latest")
        .with_env("SANDBOX_AGENT_TOKEN", TOKEN)
        .with_exposed_ports(8765)
        .with_kwargs(labels={"sandbox.managed": "1", "sandbox.server": "testcontainers"})
        .waiting_for(HttpWaitStrategy(8765, "/health").for_status_code(200))
    )
    with container:
        url = f"http://{container.get_container_host_ip()}:{container.get_exposed_port(8765)}"
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client


def call(
    client: httpx.Client, tool: str, params: dict[str, object], token: str = TOKEN
) -> dict[str, Any]:
    response = client.post(
        f"/call/{tool}", json=params, headers={"Authorization": f"Bearer {token}"}
    )
    return {"status": response.status_code, **response.json()}


def test_health_lists_the_shell_tools(agent: httpx.Client) -> None:
    health = agent.get("/health").json()
    assert health["status"] == "ok"
    assert {"bash.run", "bash.write_file", "bash.read_file", "code.execute"} <= set(health["tools"])


def test_calls_need_the_token(agent: httpx.Client) -> None:
    refused = call(agent, "bash.run", {"command": "true", "timeout": 5}, token="wrong")
    assert refused["status"] == 401
    assert refused["error"]["kind"] == "unauthorized"


def test_the_agent_runs_as_the_sandbox_user_without_its_token(agent: httpx.Client) -> None:
    result = call(agent, "bash.run", {"command": "whoami; env | grep -c AGENT_TOKEN", "timeout": 5})
    assert result["status"] == 200
    assert result["data"]["stdout"] == "sandbox\n0\n"


def test_python_is_there(agent: httpx.Client) -> None:
    result = call(agent, "code.execute", {"code": "import sys; print(sys.version_info[0])"})
    assert result["data"]["stdout"] == "3\n"
