"""Faults on the real engine: the Docker engine going away and coming back.

The server talks to the engine through a socket proxy the test can cut, so the
engine "goes away" for this server only, not for the other tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from sandbox import Sandbox
from sandbox.errors import ErrorCode

from .support import remove_containers_of, start_server

ENGINE = "/var/run/docker.sock"


class EngineProxy:
    """Forwards a Unix socket to the engine's; `cut` drops it and every connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def open(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(ENGINE)
            with self._lock:
                self._connections |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[EngineProxy]:
    engine_proxy = EngineProxy(tmp_path / "engine.sock")
    engine_proxy.open()
    try:
        yield engine_proxy
    finally:
        engine_proxy.cut()


def _health(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/health", timeout=10).json()["data"])


def test_the_engine_going_away_is_2001_and_the_server_recovers(
    tmp_path: Path, proxy: EngineProxy, docker_client: docker.DockerClient
) -> None:
    server = start_server(tmp_path, env={"DOCKER_HOST": f"unix://{proxy.path}"})
    try:
        with Sandbox(server_url=server.url, worker_id="faults") as sb:
            assert sb.execute_sync("bash:run", {"command": "echo up"})["code"] == 0

            proxy.cut()
            health = _health(server.url)
            assert (health["status"], health["docker"]) == ("degraded", "unreachable")
            running = sb.execute_sync("bash:run", {"command": "echo still"})
            assert running["data"]["stdout"] == "still\n", "live sessions keep working"
            refused = sb.client.create_session_sync("code")
            assert refused["code"] == ErrorCode.BACKEND_ERROR, refused
            assert "Docker engine" in refused["message"]

            proxy.open()
            deadline = time.monotonic() + 15
            while _health(server.url)["docker"] != "ok":
                assert time.monotonic() < deadline, "the server did not notice the engine"
                time.sleep(0.2)
            again = sb.client.create_session_sync("code")
            assert again["code"] == 0, again
            assert sb.execute_sync("code:execute", {"code": "print(1)"})["data"]["stdout"] == "1\n"
        assert server.stop_gracefully()
    finally:
        server.stop()
        remove_containers_of(docker_client, server.server_id)
