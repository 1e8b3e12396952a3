"""What a session container is started with: identities, socket, disk quota, network.

The Docker client is a recording fake: these tests check the arguments the
runtime hands to the engine, and the files it prepares on the host.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from sandbox.backends.rag import RAG
from sandbox.backends.shell import BASH
from sandbox.config import ResourceLimits, Settings
from sandbox.errors import BackendError, InvalidParams
from sandbox.runtime.docker import ContainerSpec, DockerRuntime
from sandbox.runtime.sockets import SocketDirs
from sandbox.sessions.specs import ContainerRequest, build_spec

MIB = 1024**2


def _spec(tmp_path: Path, resource: Any = BASH, *, network: bool = False) -> ContainerSpec:
    sockets = SocketDirs(tmp_path / "sockets", "unit")
    return build_spec(
        Settings(socket_dir=tmp_path / "sockets", server_id="unit"),
        resource,
        ContainerRequest(
            name="sandbox-unit",
            token="t0ken",
            limits=ResourceLimits(memory="512m", disk="64m"),
            network=network,
        ),
        image="sandbox/shell:latest",
        socket_dir=sockets.create(),
    )


def test_a_session_gets_a_read_only_root_and_one_quota_for_every_writable_dir(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path)
    assert spec.read_only is True
    # One tmpfs: the images link /tmp and /var/tmp into it, next to the home,
    # so filling all of them still stops at one quota.
    assert list(spec.tmpfs) == ["/home"]
    options = spec.tmpfs["/home"].split(",")
    assert f"size={64 * MIB}" in options
    assert "exec" in options
    # Sticky and root's: the agent makes the temporary directories, the user
    # makes nothing the agent relies on.
    assert "mode=1777" in options
    assert not any(option.startswith("uid=") for option in options)
    # tmpfs pages are the container's memory: the quota is added to the limit once.
    assert spec.memory_bytes == (512 + 64) * MIB


@pytest.mark.parametrize(("cpus", "nano"), [(0.01, 10_000_000), (0.5, 500_000_000), (2, 2 * 10**9)])
def test_the_cpu_share_becomes_nano_cpus(tmp_path: Path, cpus: float, nano: int) -> None:
    sockets = SocketDirs(tmp_path / "sockets", "unit")
    spec = build_spec(
        Settings(socket_dir=tmp_path / "sockets", server_id="unit"),
        BASH,
        ContainerRequest(
            name="sandbox-unit", token="t0ken", limits=ResourceLimits(cpus=cpus), network=False
        ),
        image="sandbox/shell:latest",
        socket_dir=sockets.create(),
    )
    assert spec.nano_cpus == nano


def test_a_cpu_share_that_would_mean_no_limit_never_becomes_a_spec(tmp_path: Path) -> None:
    # Validation refuses it first; a ResourceLimits made without validation must not slip by.
    limits = ResourceLimits.model_construct(memory="512m", cpus=1e-10, pids=64, disk="64m")
    with pytest.raises(InvalidParams, match=r"config\.cpus"):
        build_spec(
            Settings(socket_dir=tmp_path / "sockets", server_id="unit"),
            BASH,
            ContainerRequest(name="sandbox-unit", token="t0ken", limits=limits, network=False),
            image="sandbox/shell:latest",
            socket_dir=SocketDirs(tmp_path / "sockets", "unit").create(),
        )


def test_the_agent_keeps_only_the_capabilities_to_become_the_user_and_signal(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path)
    assert spec.capabilities == ("SETUID", "SETGID", "KILL")
    assert spec.environment["SANDBOX_AGENT_TOKEN_FILE"] == "/run/sandbox/agent/token"
    assert "t0ken" not in spec.environment.values()


def test_a_shared_service_keeps_its_filesystem_and_memory(tmp_path: Path) -> None:
    spec = _spec(tmp_path, RAG)
    assert (spec.read_only, spec.tmpfs, spec.memory_bytes) == (False, {}, 512 * MIB)


@pytest.mark.parametrize("network", [False, True])
def test_every_container_is_reached_through_its_socket_directory(
    tmp_path: Path, network: bool
) -> None:
    spec = _spec(tmp_path, network=network)
    ((source, mount),) = spec.volumes.items()
    assert mount == {"bind": "/run/sandbox/agent", "mode": "rw"}
    assert spec.environment["SANDBOX_AGENT_SOCKET"] == "/run/sandbox/agent/agent.sock"
    directory = Path(source)
    # The server's way in is its own; the directory itself is open to the agent.
    assert stat.S_IMODE(directory.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(directory.stat().st_mode) == 0o777


class _Network:
    def __init__(self, name: str, options: dict[str, str]) -> None:
        self.name = name
        self.attrs = {"Options": options}


class _Container:
    def __init__(self) -> None:
        self.id = "c1"
        self.attrs = {"Id": "c1", "Name": "/sandbox-unit", "State": {"Status": "running"}}

    def start(self) -> None:
        pass

    def reload(self) -> None:
        pass


class _Containers:
    def __init__(self) -> None:
        self.created: dict[str, Any] = {}

    def create(self, image: str, **kwargs: Any) -> _Container:
        self.created = {"image": image, **kwargs}
        return _Container()


class _Networks:
    def __init__(self, existing: list[_Network]) -> None:
        self.existing = existing
        self.made: list[tuple[str, dict[str, Any]]] = []

    def list(self, names: list[str]) -> list[_Network]:
        return [network for network in self.existing if network.name in names]

    def get(self, name: str) -> _Network:
        (network,) = self.list([name])
        return network

    def create(self, name: str, **kwargs: Any) -> _Network:
        self.made.append((name, kwargs))
        network = _Network(name, kwargs.get("options", {}))
        self.existing.append(network)
        return network


class _FakeClient:
    """Just enough of `docker.DockerClient` to record what the runtime asks for."""

    def __init__(self, networks: list[_Network] | None = None) -> None:
        self.containers = _Containers()
        self.networks = _Networks(networks or [])

    def close(self) -> None:
        pass


async def _start(tmp_path: Path, client: _FakeClient, *, network: bool) -> ContainerSpec:
    spec = _spec(tmp_path, network=network)
    runtime = DockerRuntime(threads=1, session_network="sessions", client_factory=lambda: client)
    try:
        await runtime.start(spec)
    finally:
        runtime.close()
    return spec


async def test_the_token_is_in_the_socket_directory_before_the_container_starts(
    tmp_path: Path,
) -> None:
    client = _FakeClient()
    spec = await _start(tmp_path, client, network=False)
    (source,) = spec.volumes
    token = Path(source) / "token"
    assert token.read_text() == "t0ken"
    assert stat.S_IMODE(token.stat().st_mode) == 0o644
    assert client.containers.created["network_mode"] == "none"
    assert client.containers.created["cap_drop"] == ["ALL"]
    assert client.containers.created["cap_add"] == ["SETUID", "SETGID", "KILL"]
    assert client.containers.created["read_only"] is True
    assert "ports" not in client.containers.created


async def test_a_session_with_network_joins_the_sessions_network_made_without_icc(
    tmp_path: Path,
) -> None:
    client = _FakeClient()
    await _start(tmp_path, client, network=True)
    ((name, kwargs),) = client.networks.made
    assert name == "sessions"
    assert kwargs["options"] == {"com.docker.network.bridge.enable_icc": "false"}
    assert client.containers.created["network"] == "sessions"
    assert "ports" not in client.containers.created, "no agent port is published"


async def test_an_existing_network_that_lets_sessions_talk_is_refused(tmp_path: Path) -> None:
    client = _FakeClient([_Network("sessions", {})])
    with pytest.raises(BackendError, match="enable_icc=false"):
        await _start(tmp_path, client, network=True)
    assert client.containers.created == {}, "no container joins it"
