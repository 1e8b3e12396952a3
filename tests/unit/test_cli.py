"""The ``sandbox`` command: what ``serve`` listens on, and refusing an open bind without a key.

``serve`` runs up to the point where uvicorn would listen: the test records the
server's configuration instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import uvicorn
import yaml

import sandbox.server.logs
from sandbox import __version__
from sandbox.cli import main


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


def test_a_bad_profile_exits_1_naming_it(
    tmp_path: Path, served: list[uvicorn.Config], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.yaml"
    assert main(["serve", "--config", str(missing)]) == 1
    assert f"cannot read profile {missing}" in capsys.readouterr().err
    assert served == []


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
