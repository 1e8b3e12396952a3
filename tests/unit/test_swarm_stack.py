"""deploy/swarm-stack.yml agrees with the code: its settings load, and the server
shares no network with sessions (it is in the manager's host namespace, API on loopback)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.config import Settings

from .test_deploy_files import _defaults

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    text = (ROOT / "deploy" / "swarm-stack.yml").read_text()
    loaded: dict[str, Any] = _defaults(yaml.safe_load(text))
    return loaded


def test_the_stack_settings_load_as_a_swarm_server(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = dict(stack["services"]["server"]["environment"])
    environment["SANDBOX_API_KEY"] = "stack-key"  # the file demands one (`:?`)
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    settings = Settings(memory_budget="64g")
    assert settings.runtime == "swarm"
    assert settings.swarm.relay  # reaches the overlays through the relay on loopback
    assert settings.host == "127.0.0.1"


def test_the_server_runs_on_a_manager_in_its_host_network(stack: dict[str, Any]) -> None:
    server = stack["services"]["server"]
    assert server["networks"] == ["hostnet"]
    assert stack["networks"]["hostnet"] == {"external": True, "name": "host"}
    assert "node.role == manager" in server["deploy"]["placement"]["constraints"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in server["volumes"]
