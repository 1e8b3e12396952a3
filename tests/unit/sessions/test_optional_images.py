"""Optional images (vm-full): a session asking for one runs it, and one that is not
built is refused saying how to build it. Docker and the agents are faked."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sandbox.backends.desktop import FULL_IMAGE, VM, VmConfig
from sandbox.errors import BackendError
from sandbox.runtime.images import ImageService
from sandbox.runtime.sockets import SocketDirs
from sandbox.sessions.containers import AgentContainers
from sandbox.sessions.specs import ContainerRequest
from tests.unit.fakes import FakeAgents, FakeRuntime
from tests.unit.server.conftest import make_settings


def _start(tmp_path: Path, runtime: FakeRuntime, config: VmConfig) -> str:
    settings = make_settings(socket_dir=tmp_path / "sockets", image_namespace="sandbox")
    images = ImageService(runtime, tmp_path / "images", settings.image_namespace)
    sockets = SocketDirs(settings.socket_dir, settings.server_id)
    containers = AgentContainers(settings, runtime, FakeAgents(runtime), images, sockets)
    request = ContainerRequest(
        name="vm-test",
        token="t",
        limits=config.limits(settings.limits),
        network=False,
        image=VM.image_for(config),
    )
    record = asyncio.run(containers.start(VM, request))
    return runtime.specs[record.id].image


def test_a_full_session_runs_the_full_image_once_built(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    runtime.images.add(f"sandbox/{FULL_IMAGE}:latest")
    assert _start(tmp_path, runtime, VmConfig(apps="full")) == f"sandbox/{FULL_IMAGE}:latest"
    assert _start(tmp_path, runtime, VmConfig()) == "sandbox/desktop:latest"


def test_an_unbuilt_optional_image_is_refused_saying_how_to_build_it(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    with pytest.raises(BackendError) as caught:
        _start(tmp_path, runtime, VmConfig(apps="full"))
    assert caught.value.message == (
        f"image sandbox/{FULL_IMAGE}:latest is not built: it is built only on request, "
        "with `sandbox images build vm-full`"
    )
    assert runtime.containers == {}
