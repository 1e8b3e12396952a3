"""Auto-start: the decisions, and the process handling against tiny stand-in servers.

The stand-ins are a few lines of stdlib Python (no sandbox server, no Docker) and
start in well under a second.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sandbox.client._lifecycle as sandbox_module
from sandbox.client import HTTPClientConfig, HTTPServiceClient, Sandbox
from sandbox.client._local_server import (
    LocalServer,
    connection_refused,
    is_local_url,
    serve_command,
)
from sandbox.errors import SandboxConnectionError

STAND_IN = """
import http.server, json, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"code": 0, "message": "success",
                           "data": {"path": self.path, "pid": __import__("os").getpid()},
                           "meta": {}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = reply

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("stand-in listening", flush=True)
server.serve_forever()
"""
CRASHES = "import sys; print('boom: address already in use', flush=True); sys.exit(3)"
NEVER_ANSWERS = "import time; print('thinking', flush=True); time.sleep(60)"
IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stand_in(port: int) -> list[str]:
    return [sys.executable, "-c", STAND_IN, str(port)]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def probe_client(port: int) -> Iterator[HTTPServiceClient]:
    client = HTTPServiceClient(config=HTTPClientConfig(base_url=f"http://127.0.0.1:{port}"))
    yield client
    client.close_sync()


@pytest.fixture
def started() -> Iterator[list[LocalServer]]:
    """Servers a test spawned; any still running at the end are killed."""
    servers: list[LocalServer] = []
    yield servers
    for server in servers:
        server.kill()
        server.stop_sync(grace_s=0)


def wait_for_log(server: LocalServer, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in server.log_tail() and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:18890", True),
        ("http://localhost:9000", True),
        ("http://LOCALHOST", True),
        ("http://[::1]:18890", True),
        ("http://10.0.0.5:18890", False),
        ("https://sandbox.example.com", False),
        ("http://127.0.0.1.example.com:18890", False),
    ],
)
def test_only_loopback_urls_are_local(url: str, local: bool) -> None:
    assert is_local_url(url) is local


def test_serve_command_names_host_port_and_profile() -> None:
    assert serve_command("http://127.0.0.1:18890") == [
        sys.executable,
        "-m",
        "sandbox",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "18890",
    ]
    command = serve_command("http://localhost:9000/", Path("profiles/dev.yaml"))
    assert command[-6:] == [
        "--host",
        "localhost",
        "--port",
        "9000",
        "--config",
        "profiles/dev.yaml",
    ]
    assert serve_command("http://localhost")[-1] == "80"


def test_only_a_refused_connection_counts_as_no_server() -> None:
    refused = SandboxConnectionError("x", data={"connect_failed": True})
    garbage = SandboxConnectionError("x", data={"status_code": 200})

    assert connection_refused(refused)
    assert not connection_refused(garbage)


def test_refused_probe_error_is_flagged(probe_client: HTTPServiceClient) -> None:
    with pytest.raises(SandboxConnectionError) as caught:
        probe_client._probe_sync()  # nothing listens on the free port

    assert connection_refused(caught.value)


def test_spawned_server_is_waited_for_and_stopped(
    port: int, probe_client: HTTPServiceClient, started: list[LocalServer]
) -> None:
    server = LocalServer.spawn(stand_in(port))
    started.append(server)

    assert server.wait_ready_sync(probe_client._probe_sync, interval_s=0.05) is True
    assert probe_client.health_sync()["data"]["pid"] == server.pid
    assert "stand-in listening" in server.log_tail()

    server.stop_sync()

    assert server.returncode is not None
    assert not server.log_path.parent.exists()


async def test_async_wait_and_stop(port: int, started: list[LocalServer]) -> None:
    server = LocalServer.spawn(stand_in(port))
    started.append(server)
    client = HTTPServiceClient(f"http://127.0.0.1:{port}")
    assert await server.wait_ready(client._probe, interval_s=0.05) is True
    await client.close()

    await server.stop()

    assert server.returncode == -signal.SIGTERM


def test_a_server_that_exits_fails_with_its_log(
    probe_client: HTTPServiceClient, started: list[LocalServer]
) -> None:
    server = LocalServer.spawn(python(CRASHES))
    started.append(server)

    with pytest.raises(SandboxConnectionError, match="exited with code 3") as caught:
        server.wait_ready_sync(probe_client._probe_sync, interval_s=0.05)

    assert "boom: address already in use" in caught.value.message
    assert caught.value.data["returncode"] == 3


async def test_a_server_that_never_answers_is_killed(port: int, started: list[LocalServer]) -> None:
    server = LocalServer.spawn(python(NEVER_ANSWERS))
    started.append(server)
    client = HTTPServiceClient(f"http://127.0.0.1:{port}")
    with pytest.raises(SandboxConnectionError, match=r"did not answer within 0\.3 s") as caught:
        await server.wait_ready(client._probe, timeout_s=0.3, interval_s=0.05)
    await client.close()

    assert server.returncode == -signal.SIGKILL
    assert "thinking" in caught.value.message


async def test_stop_kills_a_server_that_ignores_sigterm(started: list[LocalServer]) -> None:
    server = LocalServer.spawn(python(IGNORES_SIGTERM))
    started.append(server)
    wait_for_log(server, "ready")

    await server.stop(grace_s=0.2)

    assert server.returncode == -signal.SIGKILL


def test_sandbox_starts_and_stops_its_own_server(
    port: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    commands: list[tuple[str, object]] = []

    def fake_serve_command(url: str, config_file: object = None) -> list[str]:
        commands.append((url, config_file))
        return stand_in(port)

    monkeypatch.setattr(sandbox_module, "serve_command", fake_serve_command)
    profile = tmp_path / "profile.yaml"

    url = f"http://127.0.0.1:{port}"
    with Sandbox(url, auto_start_server=True, server_config_path=profile) as sb:
        assert sb.server is not None
        own = sb.server
        assert sb.execute_sync("bash:run")["data"]["path"] == "/execute"

    assert commands == [(f"http://127.0.0.1:{port}", profile)]
    assert own.returncode is not None
    assert sb.server is None


async def test_sandbox_async_start_and_close_its_own_server(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox_module, "serve_command", lambda url, config_file: stand_in(port))

    async with Sandbox(f"http://localhost:{port}", auto_start_server=True) as sb:
        own = sb.server
        assert own is not None
        assert (await sb.health())["data"]["pid"] == own.pid

    assert own.returncode is not None


def test_sandbox_leaves_an_already_running_server_alone(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def spawn(command: list[str]) -> LocalServer:
        raise AssertionError("started a second server")

    monkeypatch.setattr(LocalServer, "spawn", staticmethod(spawn))
    running = subprocess.Popen(stand_in(port), stdout=subprocess.PIPE)
    try:
        assert running.stdout is not None
        running.stdout.readline()  # listening

        with Sandbox(f"http://127.0.0.1:{port}", auto_start_server=True) as sb:
            assert sb.server is None
            assert sb.health_sync()["data"]["pid"] == running.pid

        assert running.poll() is None
    finally:
        running.kill()
        running.wait()
        assert running.stdout is not None
        running.stdout.close()


def test_sandbox_start_failure_reports_the_log(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    monkeypatch.setattr(sandbox_module, "serve_command", lambda url, config_file: python(CRASHES))
    sb = Sandbox(f"http://127.0.0.1:{port}", auto_start_server=True)

    with pytest.raises(SandboxConnectionError, match="boom: address already in use") as caught:
        sb.start_sync()

    log = Path(caught.value.data["log_path"])
    assert log.read_text().startswith("boom")  # kept for a look after the failure
    shutil.rmtree(log.parent)
    assert not sb.is_started
    assert sb.server is None
    sb.close_sync()
