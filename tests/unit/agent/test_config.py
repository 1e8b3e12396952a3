"""Settings from the environment, and toolset loading."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from sandbox.agent import (
    AgentConfig,
    AgentContext,
    AgentServer,
    ConfigError,
    Params,
    Tool,
    ToolRegistry,
    Toolset,
)
from sandbox.agent.registry import load_toolset


def test_defaults() -> None:
    config = AgentConfig.from_environ({"SANDBOX_AGENT_TOKEN": "t"})

    assert config == AgentConfig(
        token="t", host="0.0.0.0", port=8765, output_limit=1048576, toolsets=("shell",)
    )


def test_every_setting_from_the_environment() -> None:
    config = AgentConfig.from_environ(
        {
            "SANDBOX_AGENT_TOKEN": "t",
            "SANDBOX_AGENT_HOST": "127.0.0.1",
            "SANDBOX_AGENT_PORT": "9000",
            "SANDBOX_OUTPUT_LIMIT": "4096",
            "SANDBOX_AGENT_TOOLSETS": " shell , desktop ,",
        }
    )

    assert config == AgentConfig(
        token="t", host="127.0.0.1", port=9000, output_limit=4096, toolsets=("shell", "desktop")
    )


def test_token_is_required() -> None:
    with pytest.raises(ConfigError, match="SANDBOX_AGENT_TOKEN"):
        AgentConfig.from_environ({})


def test_token_file_is_read_then_removed(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")

    config = AgentConfig.from_environ({"SANDBOX_AGENT_TOKEN_FILE": str(token_file)})

    assert config.token == "from-file"
    assert not token_file.exists(), "no later process of the sandbox finds it"


def test_an_unreadable_token_file_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="token file"):
        AgentConfig.from_environ({"SANDBOX_AGENT_TOKEN_FILE": str(tmp_path / "missing")})


def test_token_may_be_waived_for_local_testing() -> None:
    assert AgentConfig.from_environ({}, require_token=False).token is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SANDBOX_AGENT_PORT", "http"),
        ("SANDBOX_AGENT_PORT", "70000"),
        ("SANDBOX_OUTPUT_LIMIT", "0"),
    ],
)
def test_malformed_numbers_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        AgentConfig.from_environ({"SANDBOX_AGENT_TOKEN": "t", name: value})


def test_empty_token_is_refused() -> None:
    with pytest.raises(ConfigError):
        AgentServer("127.0.0.1", 0, token="")


def test_unknown_toolset_stops_the_start(tmp_path: Path) -> None:
    server = AgentServer("127.0.0.1", 0, token="t", toolsets=["shell", "nope"], home=str(tmp_path))

    with pytest.raises(ConfigError, match="unknown toolset 'nope'"):
        server.start()
    server.close()


def test_malformed_toolset_name_is_refused(tmp_path: Path) -> None:
    context = AgentContext(str(tmp_path), str(tmp_path), 100, {})

    with pytest.raises(ConfigError, match="invalid toolset name"):
        load_toolset("../shell", context)


class _EchoToolset(Toolset):
    name = "echo"

    def tools(self) -> Sequence[Tool]:
        return [Tool("echo.say", lambda params: {"said": params.string("text")})]


def test_registry_dispatches_and_refuses_duplicate_tools() -> None:
    registry = ToolRegistry()
    registry.add_toolset(_EchoToolset())

    assert registry.get("echo.say").handler(Params({"text": "hi"})) == {"said": "hi"}
    assert registry.tool_names == ["echo.say"]
    with pytest.raises(ConfigError, match=r"echo\.say"):
        registry.add_toolset(_EchoToolset())
