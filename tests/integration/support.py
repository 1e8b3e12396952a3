"""Helpers of the integration tests: a real `sandbox serve` child process.

Every server started here has its own server id, and every container it makes
carries that id as a label, so a test can prove nothing leaked and remove
whatever did.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx

from sandbox import Sandbox
from sandbox.errors import ErrorCode

STARTED_SERVER_IDS: set[str] = {"testcontainers"}
"""Server ids this test process started (and the label its testcontainers use): the
leak check looks at their containers only, so a concurrent run elsewhere on the
same engine cannot make this one fail."""


def created(summary: Mapping[str, Any], resource: str) -> dict[str, Any]:
    """`resource`'s line of a `Sandbox.create_session` summary, checked to be a success."""
    entry = dict(summary["sessions"][resource])
    assert entry["status"] == "success", summary
    return entry


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def containers_of(client: docker.DockerClient, server_id: str) -> list[str]:
    found = client.containers.list(all=True, filters={"label": f"sandbox.server={server_id}"})
    return [c.name for c in found]


def remove_containers_of(client: docker.DockerClient, server_id: str) -> None:
    """Remove the server's containers, then its volumes (the rag index persists by design)."""
    label = {"label": f"sandbox.server={server_id}"}
    for container in client.containers.list(all=True, filters=label):
        container.remove(force=True)
    for volume in client.volumes.list(filters=label):
        volume.remove(force=True)
    shutil.rmtree(Path("/tmp/sandbox-agents") / server_id, ignore_errors=True)


@dataclass
class ServerProcess:
    """A `sandbox serve` child process."""

    url: str
    server_id: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def stop_gracefully(self) -> bool:
        """SIGTERM; True when the server shut down cleanly.

        uvicorn re-raises the signal it handled once shutdown is complete, so a
        clean exit is status 0 or death by that same SIGTERM.
        """
        return self.stop() in (0, -signal.SIGTERM)


def start_server(
    tmp_path: Path,
    *,
    server_id: str | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """Start `python -m sandbox serve` and wait until /health answers."""
    server_id = server_id or f"test-{secrets.token_hex(4)}"
    STARTED_SERVER_IDS.add(server_id)
    port = port or free_port()
    child_env = {
        **os.environ,
        "SANDBOX_SERVER_ID": server_id,
        "SANDBOX_LOG_LEVEL": "info",
        # The tests start more sessions than this host could hold if every one filled
        # its memory and disk (3 GiB each by default); they use a few MiB each.
        "SANDBOX_MEMORY_BUDGET": "1024g",
        **(env or {}),
    }
    log_path = tmp_path / f"server-{server_id}-{port}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env,
        )
    server = ServerProcess(
        f"http://127.0.0.1:{port}", server_id, port, process, log_path, child_env
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server did not answer /health within 30 s:\n{server.log()}")


@contextmanager
def checked(client: docker.DockerClient, server: ServerProcess) -> Iterator[ServerProcess]:
    """Yield `server`; then SIGTERM it and prove it exited cleanly leaving nothing."""
    try:
        yield server
    finally:
        clean = server.stop_gracefully()
        left = containers_of(client, server.server_id)
        remove_containers_of(client, server.server_id)
        assert clean, f"server exited with {server.process.returncode}:\n{server.log()}"
        assert left == [], f"SIGTERM left containers behind: {left}"


def wait_recovered(server: ServerProcess, timeout: float = 60) -> None:
    """Until the server has adopted (or removed) the containers of an earlier run.

    That adoption runs in the background after start (``/health`` answers at
    once and says ``recovering``), so a test looking at the result waits for it.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not httpx.get(f"{server.url}/health", timeout=5).json()["data"]["recovering"]:
            return
        time.sleep(0.1)
    raise AssertionError(f"the server was still recovering after {timeout:g}s:\n{server.log()}")


@contextmanager
def worker(server: ServerProcess, prefix: str) -> Iterator[Sandbox]:
    """A started `Sandbox` of a new worker (``<prefix>-<hex>``); its sessions go after."""
    sandbox = Sandbox(server_url=server.url, worker_id=f"{prefix}-{secrets.token_hex(3)}")
    sandbox.start_sync()
    try:
        yield sandbox
    finally:
        sandbox.destroy_session_sync()
        sandbox.close_sync()


def ok(sb: Sandbox, action: str, **params: Any) -> dict[str, Any]:
    """The data of a call that must succeed."""
    envelope = sb.execute_sync(action, params)
    assert envelope["code"] == 0, envelope
    return dict(envelope["data"])


def score(sb: Sandbox, evaluator: dict[str, Any]) -> float:
    """`vm:evaluate`'s score of `evaluator`."""
    return float(ok(sb, "vm:evaluate", evaluator=evaluator)["score"])


def refused(sb: Sandbox, action: str, **params: Any) -> dict[str, Any]:
    """The envelope of a call that must be refused as a parameter error (1002)."""
    envelope = sb.execute_sync(action, params)
    assert envelope["code"] == ErrorCode.INVALID_PARAMS, envelope
    return envelope


def wait_until(sb: Sandbox, command: str, timeout: float = 10) -> str:
    """Run `command` in the desktop until it succeeds; returns its stdout."""
    deadline = time.monotonic() + timeout
    while True:
        data = ok(sb, "vm:run_command", command=command, timeout=10)
        if data["exit_code"] == 0:
            return str(data["stdout"])
        assert time.monotonic() < deadline, f"{command!r} kept failing: {data}"
        time.sleep(0.1)
