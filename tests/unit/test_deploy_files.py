"""The deployment files agree with the code: pins, compose wiring, the shipped profile."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from sandbox.backends import RESOURCE_TYPES
from sandbox.config import Settings

ROOT = Path(__file__).resolve().parents[2]
_VARIABLE = re.compile(r"\$\{([A-Z_]+):[-?]([^}]*)\}")


def _dependencies() -> list[Requirement]:
    if sys.version_info >= (3, 11):
        import tomllib

        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        return [Requirement(r) for r in project["dependencies"]]
    # Python 3.10 has no tomllib: the installed metadata says the same.
    return [Requirement(r) for r in importlib.metadata.requires("sandbox") or [] if ";" not in r]


def _server_pins() -> dict[str, str]:
    pins = {}
    for raw in (ROOT / "images/server/wheels.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def _defaults(value: Any) -> Any:
    """The compose file with every ``${NAME:-default}`` replaced by its default."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m.group(2), value)
    if isinstance(value, list):
        return [_defaults(item) for item in value]
    if isinstance(value, dict):
        return {_defaults(k): _defaults(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = _defaults(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))
    return loaded


def test_every_dependency_of_the_package_is_pinned_for_the_server_image() -> None:
    pins = _server_pins()
    for requirement in _dependencies():
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{name} is not pinned in images/server/wheels.txt"
        assert requirement.specifier.contains(pins[name]), (
            f"images/server/wheels.txt pins {name}=={pins[name]}, outside {requirement}"
        )


def test_the_shipped_profile_is_a_valid_settings_file() -> None:
    settings = Settings(config_file=ROOT / "deploy/sandbox.yaml")
    assert settings.session_ttl_s > 0


def test_the_server_shares_no_network_with_sessions(compose: dict[str, Any]) -> None:
    server = compose["services"]["server"]
    env = server["environment"]
    assert "SANDBOX_AGENT_NETWORK" not in env, "agents are reached through sockets only"
    # Sessions with network join a network the runtime makes; the server never does.
    assert server["networks"] == ["api"]
    assert env["SANDBOX_SESSION_NETWORK"] != compose["networks"]["api"]["name"]
    assert env["SANDBOX_HOST"] == "0.0.0.0"
    assert server["ports"] == [f"127.0.0.1:18890:{env['SANDBOX_PORT']}"]


def test_the_cluster_does_not_start_without_an_api_key() -> None:
    # Compose stops with this message before anything starts when the key is unset.
    text = (ROOT / "docker-compose.yml").read_text()
    assert "SANDBOX_API_KEY: ${SANDBOX_COMPOSE_API_KEY:?" in text


def test_the_socket_directory_has_the_same_path_inside_and_out(compose: dict[str, Any]) -> None:
    server = compose["services"]["server"]
    socket_dir = server["environment"]["SANDBOX_SOCKET_DIR"]
    assert f"{socket_dir}:{socket_dir}" in server["volumes"]
    profile = server["environment"]["SANDBOX_CONFIG_FILE"]
    assert any(v.endswith(f":{profile}:ro") for v in server["volumes"])


def test_the_rag_service_uses_the_compose_index_volume(compose: dict[str, Any]) -> None:
    env = compose["services"]["server"]["environment"]
    volume = compose["volumes"]["rag-index"]
    assert env["SANDBOX_RAG__VOLUME"] == volume["name"]
    assert volume["labels"]["sandbox.server"] == env["SANDBOX_SERVER_ID"]


def test_recordings_are_on_a_compose_volume_of_the_server(compose: dict[str, Any]) -> None:
    server = compose["services"]["server"]
    recording_dir = PurePosixPath(server["environment"]["SANDBOX_RECORDING_DIR"])
    volumes = [v.split(":") for v in server["volumes"] if v.split(":")[0] in compose["volumes"]]
    (on,) = [name for name, target in volumes if PurePosixPath(target) in recording_dir.parents]
    assert on == "recordings"
    labels = compose["volumes"]["recordings"]["labels"]
    assert labels["sandbox.server"] == server["environment"]["SANDBOX_SERVER_ID"]


def test_compose_builds_every_session_image_before_the_server_starts(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    namespace = services["server"]["environment"]["SANDBOX_IMAGE_NAMESPACE"]
    built = {
        service["image"]: name
        for name, service in services.items()
        if name != "server" and "build" in service
    }
    for image in {resource.image for resource in RESOURCE_TYPES}:
        tag = f"{namespace}/{image}:latest"
        assert tag in built, f"no compose service builds {tag}"
        builder = services[built[tag]]
        assert builder["build"]["dockerfile"] == f"images/{image}/Dockerfile"
        condition = services["server"]["depends_on"][built[tag]]["condition"]
        assert condition == "service_completed_successfully"
