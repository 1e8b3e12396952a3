"""Where a setting comes from: keyword arguments > ``SANDBOX_*`` environment > profile > default."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from sandbox.config import Settings

# Fixed, so the settings load whatever this host's RAM.
BUDGET = "1024g"


@pytest.fixture(autouse=True)
def no_sandbox_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: none of the runner's own ``SANDBOX_*`` variables."""
    for name in [name for name in os.environ if name.startswith("SANDBOX_")]:
        monkeypatch.delenv(name)


def profile(path: Path, **settings: object) -> Path:
    """A profile file at `path` (JSON or YAML by its suffix) holding `settings`."""
    settings.setdefault("memory_budget", BUDGET)
    text = json.dumps(settings) if path.suffix == ".json" else yaml.safe_dump(settings)
    path.write_text(text)
    return path


def test_the_profile_fills_what_nothing_else_sets(tmp_path: Path) -> None:
    path = profile(tmp_path / "sandbox.yaml", port=1000, session_ttl_s=5)

    settings = Settings(config_file=path)

    assert (settings.port, settings.session_ttl_s) == (1000, 5)
    assert settings.host == "127.0.0.1", "a field the profile leaves out keeps its default"
    assert settings.config_file == path


def test_the_environment_beats_the_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = profile(tmp_path / "sandbox.yaml", port=1000, session_ttl_s=5)
    monkeypatch.setenv("SANDBOX_PORT", "2000")

    settings = Settings(config_file=path)

    assert (settings.port, settings.session_ttl_s) == (2000, 5)


def test_arguments_beat_the_environment_and_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = profile(tmp_path / "sandbox.yaml", port=1000, host="127.0.0.2", session_ttl_s=5)
    monkeypatch.setenv("SANDBOX_PORT", "2000")
    monkeypatch.setenv("SANDBOX_HOST", "127.0.0.3")

    settings = Settings(config_file=path, port=3000)

    assert (settings.port, settings.host, settings.session_ttl_s) == (3000, "127.0.0.3", 5)


def test_a_nested_field_is_overridden_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = profile(tmp_path / "sandbox.yaml", limits={"memory": "1g", "pids": 300, "disk": "1g"})
    monkeypatch.setenv("SANDBOX_LIMITS__MEMORY", "2g")
    monkeypatch.setenv("SANDBOX_LIMITS__PIDS", "350")

    from_environment = Settings(config_file=path)
    # A partial mapping as the keyword argument (model_validate: the typed way to pass one).
    from_arguments = Settings.model_validate({"config_file": path, "limits": {"pids": 400}})

    limits = from_environment.limits
    assert (limits.memory, limits.pids, limits.disk) == ("2g", 350, "1g")
    limits = from_arguments.limits
    assert (limits.memory, limits.pids, limits.disk) == ("2g", 400, "1g"), (
        "each source sets only the nested fields it names"
    )


def test_the_profile_is_named_by_argument_before_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_environment = profile(tmp_path / "env.json", port=1000)
    from_argument = profile(tmp_path / "arg.yaml", port=2000)
    monkeypatch.setenv("SANDBOX_CONFIG_FILE", str(from_environment))

    assert Settings().port == 1000
    assert Settings(config_file=from_argument).port == 2000


def test_a_missing_profile_is_refused_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"

    with pytest.raises(ValueError, match=f"cannot read profile {missing}"):
        Settings(config_file=missing)


def test_session_defaults_are_checked_and_normalised_at_start() -> None:
    settings = Settings(
        memory_budget=BUDGET, session_defaults={"vm": {"screen_size": "1920x1080", "cpus": 2}}
    )

    assert settings.session_defaults == {"vm": {"screen_size": [1920, 1080], "cpus": 2.0}}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"session_defaults": {"vm": {"screen_size": [1, 1]}}}, "session_defaults.vm.screen_size"),
        ({"session_defaults": {"bash": {"screen_size": [800, 600]}}}, "session_defaults.bash"),
        (
            {"session_defaults": {"bash": {"memory": "64g"}}},
            "session_defaults.bash: config.memory: '64g' is over the server's ceiling",
        ),
        ({"session_defaults": {"gpu": {}}}, "session_defaults: unknown resource type(s) gpu"),
        ({"resource_types": ["vm", "gpu"]}, "resource_types: unknown resource type(s) gpu"),
        ({"warmup": ["gpu"]}, "warmup: unknown resource type(s) gpu; known: bash, code, rag, vm"),
        ({"resource_types": ["bash"], "warmup": ["vm"]}, "warmup: vm not among resource_types"),
        (
            {"resource_types": ["bash"], "pools": [{"resource": "vm", "size": 1}]},
            "pools: vm not among resource_types",
        ),
    ],
)
def test_resource_settings_name_what_is_wrong(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings.model_validate({"memory_budget": BUDGET, **settings})


def test_resource_settings_come_from_the_environment_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SANDBOX_RESOURCE_TYPES", '["vm", "bash"]')
    monkeypatch.setenv("SANDBOX_WARMUP", '["vm"]')
    monkeypatch.setenv("SANDBOX_SESSION_DEFAULTS__VM__SCREEN_SIZE", "1920x1080")

    settings = Settings(memory_budget=BUDGET)

    assert settings.resource_types == ["vm", "bash"]
    assert settings.warmup == ["vm"]
    assert settings.session_defaults == {"vm": {"screen_size": [1920, 1080]}}
    assert Settings(memory_budget=BUDGET, resource_types=None).resource_types is None
