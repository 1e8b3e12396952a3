"""The ``sandbox`` command: what ``serve`` listens on, and refusing an open bind without a key.

``serve`` runs up to the point where uvicorn would listen: the test records the
server's configuration instead.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import uvicorn
import yaml

import sandbox.cli
import sandbox.server.logs
from sandbox import __version__
from sandbox.cli import main, server_main


@pytest.fixture(autouse=True)
def only_the_tests_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """None of the runner's own ``SANDBOX_*`` variables; a budget whatever this host's RAM."""
    for name in [name for name in os.environ if name.startswith("SANDBOX_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SANDBOX_MEMORY_BUDGET", "1024g")


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[uvicorn.Config]:
    """The configurations `sandbox serve` ran uvicorn with; no socket is opened."""
    configs: list[uvicorn.Config] = []

    def run(server: uvicorn.Server, sockets: object = None) -> None:
        configs.append(server.config)

    monkeypatch.setattr(uvicorn.Server, "run", run)
    # The test's own logging stays as pytest set it up.
    monkeypatch.setattr(sandbox.server.logs, "configure_logging", lambda settings: None)
    return configs


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "sandbox.example.com"])
def test_serving_beyond_loopback_without_a_key_is_refused(
    host: str, served: list[uvicorn.Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--host", host]) == 1
    error = capsys.readouterr().err
    assert "--insecure" in error
    assert "SANDBOX_API_KEY" in error
    assert served == [], "refused before listening"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_key(host: str, served: list[uvicorn.Config]) -> None:
    assert main(["serve", "--host", host, "--port", "18999"]) == 0
    assert [(config.host, config.port) for config in served] == [(host, 18999)]


@pytest.mark.parametrize(
    ("variable", "value", "flags"),
    [
        ("SANDBOX_API_KEY", "k-123", []),
        ("SANDBOX_API_KEYS", '{"team": "k-456"}', []),
        ("SANDBOX_INSECURE", "true", []),
        (None, None, ["--insecure"]),
    ],
)
def test_a_key_or_an_explicit_insecure_allows_an_open_bind(
    variable: str | None,
    value: str | None,
    flags: list[str],
    served: list[uvicorn.Config],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if variable is not None and value is not None:
        monkeypatch.setenv(variable, value)
    assert main(["serve", "--host", "0.0.0.0", *flags]) == 0
    assert [config.host for config in served] == ["0.0.0.0"]


def test_serve_takes_arguments_over_environment_over_the_profile(
    tmp_path: Path, served: list[uvicorn.Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sandbox.yaml"
    path.write_text(yaml.safe_dump({"host": "127.0.0.2", "port": 1000, "log_level": "debug"}))
    monkeypatch.setenv("SANDBOX_PORT", "2000")

    assert main(["serve", "--config", str(path)]) == 0
    assert main(["serve", "--config", str(path), "--port", "3000"]) == 0
    assert [(c.host, c.port, c.log_level) for c in served] == [
        ("127.0.0.2", 2000, "debug"),
        ("127.0.0.2", 3000, "debug"),
    ]


def test_a_bad_profile_exits_2_naming_it(
    tmp_path: Path, served: list[uvicorn.Config], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.yaml"
    assert main(["serve", "--config", str(missing)]) == 2
    assert f"cannot read profile {missing}" in capsys.readouterr().err
    assert served == []


@pytest.fixture
def warmed(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The resource types `sandbox serve` would warm up once listening."""
    calls: list[list[str]] = []

    def warm_up(server: object, settings: object, resources: list[str]) -> None:
        calls.append(resources)

    monkeypatch.setattr(sandbox.cli, "_warm_up_when_listening", warm_up)
    return calls


AGENTFLOW_GUI_CONFIG = {
    "server": {"url": "http://127.0.0.1:18890", "port": 18890, "session_ttl": 600},
    "resources": {
        "vm": {
            "enabled": True,
            "backend_class": "sandbox.server.backends.resources.vm.VMBackend",
            "config": {"screen_size": [1920, 1080], "pool_size": 1, "headless": False},
        },
        "mcp": {"enabled": True, "backend_class": "x.ToolathlonGymBackend"},
    },
    "warmup": {"enabled": True, "resources": ["vm"]},
}


def test_serve_takes_agentflow_config_and_flags(
    tmp_path: Path,
    served: list[uvicorn.Config],
    warmed: list[list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "GUI_config.json"
    path.write_text(json.dumps(AGENTFLOW_GUI_CONFIG))

    assert main(["serve", "-c", str(path), "-p", "18999", "--log-level", "WARNING"]) == 0

    assert [(c.host, c.port, c.log_level) for c in served] == [("127.0.0.1", 18999, "warning")]
    assert warmed == [["vm"]], "their warmup section warms up once listening"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("resources.mcp: not served" in message for message in warnings)
    assert any("resources.vm.config.headless: ignored" in message for message in warnings)
    assert all(message.startswith(f"config file {path}: ") for message in warnings)


def test_sandbox_server_is_serve_under_agentflows_name(
    tmp_path: Path, served: list[uvicorn.Config], warmed: list[list[str]]
) -> None:
    path = tmp_path / "GUI_config.json"
    path.write_text(json.dumps(AGENTFLOW_GUI_CONFIG))

    assert server_main(["--config", str(path), "--port", "18998", "--host", "localhost"]) == 0

    assert [(c.host, c.port) for c in served] == [("localhost", 18998)]


def test_warmup_comes_from_the_profile_unless_named_on_the_command_line(
    tmp_path: Path, served: list[uvicorn.Config], warmed: list[list[str]]
) -> None:
    path = tmp_path / "sandbox.yaml"
    path.write_text(yaml.safe_dump({"warmup": ["rag"]}))

    assert main(["serve", "--config", str(path)]) == 0
    assert main(["serve", "--config", str(path), "--warmup", "bash", "code"]) == 0
    assert main(["serve"]) == 0

    assert warmed == [["rag"], ["bash", "code"]]


def test_show_config_prints_the_effective_settings_with_secrets_masked(
    tmp_path: Path,
    served: list[uvicorn.Config],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "GUI_config.json"
    path.write_text(json.dumps(AGENTFLOW_GUI_CONFIG))
    monkeypatch.setenv("SANDBOX_API_KEYS", '{"team": "k-team-secret"}')

    assert main(["serve", "-c", str(path), "--show-config"]) == 0

    out, err = capsys.readouterr()
    shown = json.loads(out)
    assert (shown["port"], shown["session_ttl_s"]) == (18890, 600)
    assert shown["resource_types"] == ["vm"]
    assert shown["session_defaults"] == {"vm": {"screen_size": [1920, 1080]}}
    assert shown["api_keys"] == {"team": "**********"}
    assert "k-team-secret" not in out + err
    assert "resources.mcp: not served" in err
    assert served == [], "shows and exits without listening"


def test_an_agentflow_config_error_exits_2_naming_file_and_key(
    tmp_path: Path, served: list[uvicorn.Config], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rag_config.json"
    path.write_text(
        json.dumps({"resources": {"rag": {"config": {"corpus_path": "${NO_SUCH_VARIABLE}"}}}})
    )

    assert main(["serve", "-c", str(path)]) == 2

    error = capsys.readouterr().err
    assert error.startswith(f"sandbox: config file {path}: resources.rag.config.corpus_path: ")
    assert "NO_SUCH_VARIABLE is not set" in error
    assert "Traceback" not in error
    assert served == []


def test_an_unknown_log_level_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--log-level", "verbose"])
    assert exited.value.code == 2
    assert "--log-level" in capsys.readouterr().err


def test_no_command_prints_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"sandbox {__version__}\n"


def test_building_an_unknown_resource_type_names_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["images", "build", "bash", "gpu"]) == 1
    error = capsys.readouterr().err
    assert "unknown resource type(s) gpu" in error
    assert "known: " in error
    assert "bash" in error


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--push"], "--push needs a REGISTRY (host:port) or the setting swarm.registry"),
        (
            ["--push", "https://reg:5000"],
            "--push: 'https://reg:5000' is not a registry's host:port",
        ),
    ],
)
def test_push_without_a_usable_registry_is_refused_before_building(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["images", "build", "bash", *arguments]) == 1
    assert message in capsys.readouterr().err
