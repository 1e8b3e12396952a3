"""Helpers of the tests of the containerized server (server image, compose file).

A containerized server shares the host's Docker engine and the host directory of
agent sockets, so everything it makes is found, and removed, by its server id:
containers and volumes by the ``sandbox.server`` label, the socket directory by
path. The server container itself never carries that label (the server would
take it for one of its orphans).
"""

from __future__ import annotations

import base64
import os
import shutil
import struct
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx

SOCKET_ROOT = Path("/tmp/sandbox-agents")
"""The servers' default socket directory, mounted at the same path into them."""
DOCKER_SOCKET = "/var/run/docker.sock"
SERVER_IMAGE = "sandbox/server:latest"


def server_image_or_fail(client: docker.DockerClient) -> str:
    """The server image's tag; a missing image is a set-up error, not a skip."""
    try:
        client.images.get(SERVER_IMAGE)
    except docker.errors.ImageNotFound:
        raise AssertionError(
            f"{SERVER_IMAGE} is missing: run scripts/setup.sh (it fetches the wheels and "
            "runs docker build -f images/server/Dockerfile -t sandbox/server:latest .)"
        ) from None
    return SERVER_IMAGE


def labelled(client: docker.DockerClient, server_id: str) -> list[str]:
    """Names of the containers (running or not) carrying ``sandbox.server=<server_id>``."""
    found = client.containers.list(all=True, filters={"label": f"sandbox.server={server_id}"})
    return sorted(c.name for c in found)


def remove_everything_of(client: docker.DockerClient, server_id: str) -> None:
    """Containers and volumes labelled with `server_id`, and its socket directory."""
    label = {"label": f"sandbox.server={server_id}"}
    for container in client.containers.list(all=True, filters=label):
        container.remove(force=True, v=True)
    for volume in client.volumes.list(filters=label):
        volume.remove(force=True)
    shutil.rmtree(SOCKET_ROOT / server_id, ignore_errors=True)


def wait_healthy(client: docker.DockerClient, container_id: str, timeout: float = 120) -> None:
    """Until the container's healthcheck says healthy (it may restart meanwhile)."""
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = client.api.inspect_container(container_id)["State"]
        if (state.get("Health") or {}).get("Status") == "healthy":
            return
        time.sleep(0.5)
    logs = client.api.logs(container_id, tail=30).decode(errors="replace")
    raise AssertionError(f"not healthy after {timeout}s: {state}\n{logs}")


def wait_for_health_endpoint(url: str, timeout: float = 60) -> dict[str, Any]:
    """The ``/health`` data once the server answers it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(f"{url}/health", timeout=2)
            if response.status_code == 200:
                data: dict[str, Any] = response.json()["data"]
                return data
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url}/health did not answer within {timeout}s")
        time.sleep(0.2)


def server_process_status(client: docker.DockerClient, container_id: str) -> dict[str, str]:
    """``/proc/<pid>/status`` fields of the server process (the one running `sandbox`)."""
    script = (
        "import os\n"
        "for pid in sorted(p for p in os.listdir('/proc') if p.isdigit()):\n"
        "    with open(f'/proc/{pid}/cmdline', 'rb') as f:\n"
        "        cmd = f.read().split(b'\\0')\n"
        "    if b'/opt/sandbox/venv/bin/sandbox' in cmd and b'serve' in cmd:\n"
        "        print(open(f'/proc/{pid}/status').read()); break\n"
    )
    result = client.containers.get(container_id).exec_run(["python3", "-c", script])
    lines = result.output.decode().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def socket_gid_groups() -> set[int]:
    """Groups a process needs to use the host's Docker socket (none if world-writable)."""
    info = os.stat(DOCKER_SOCKET)
    return set() if info.st_mode & 0o006 == 0o006 else {info.st_gid}


def png_size(image_b64: str) -> tuple[int, int]:
    """Width and height from a base64 PNG's header (checking that it is a PNG)."""
    png = base64.b64decode(image_b64)
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", png[16:24])
    return width, height
