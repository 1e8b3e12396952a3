"""The agent served on a Unix-domain socket, as a session without a network reaches it."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sandbox.agent import AgentConfig, AgentServer, ConfigError

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass
class UnixAgent:
    """A running agent on a socket, its token, and an httpx client bound to the socket."""

    server: AgentServer
    token: str
    path: Path
    client: httpx.Client

    def run(self, command: str) -> httpx.Response:
        return self.client.post(
            "/call/bash.run",
            json={"command": command, "timeout": 10},
            headers={"Authorization": f"Bearer {self.token}"},
        )


def _client(path: Path) -> httpx.Client:
    # The host in base_url only fills the Host header; the transport dials the socket.
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(path)), base_url="http://agent", timeout=30
    )


def _stale_socket(path: Path) -> None:
    """Leave a socket file nobody listens on, as a dead container's agent would."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    # Short name: AF_UNIX paths are limited to 107 bytes.
    return tmp_path / "a.sock"


@pytest.fixture
def unix_agent(socket_path: Path, home: Path) -> Iterator[UnixAgent]:
    token = secrets.token_hex(16)
    server = AgentServer(token=token, socket_path=str(socket_path), home=str(home))
    server.start()
    client = _client(socket_path)
    try:
        yield UnixAgent(server, token, socket_path, client)
    finally:
        client.close()
        server.close()


def test_health_over_the_socket(unix_agent: UnixAgent) -> None:
    response = unix_agent.client.get("/health")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert "bash.run" in response.json()["tools"]


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic {token}"])
def test_call_without_the_right_token_is_401_and_runs_nothing(
    unix_agent: UnixAgent, authorization: str | None
) -> None:
    marker = unix_agent.path.parent / "ran"
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(token=unix_agent.token)

    response = unix_agent.client.post(
        "/call/bash.run", json={"command": f"touch {marker}", "timeout": 5}, headers=headers
    )

    assert response.status_code == 401
    assert response.json()["error"]["kind"] == "unauthorized"
    assert not marker.exists()


def test_calls_share_one_kept_alive_connection(unix_agent: UnixAgent) -> None:
    sockets = []
    outputs = []
    for number in range(5):
        response = unix_agent.run(f"echo call {number}")
        sockets.append(response.extensions["network_stream"].get_extra_info("socket"))
        outputs.append(response.json()["data"]["stdout"])

    assert outputs == [f"call {number}\n" for number in range(5)]
    assert len({id(sock) for sock in sockets}) == 1  # never reconnected


def test_url_names_the_socket_and_port_is_refused(unix_agent: UnixAgent) -> None:
    assert unix_agent.server.url == f"unix://{unix_agent.path}"
    assert unix_agent.server.socket_path == str(unix_agent.path)
    with pytest.raises(RuntimeError, match="unix socket"):
        _ = unix_agent.server.port


def test_socket_is_connectable_by_any_user(unix_agent: UnixAgent) -> None:
    info = os.stat(unix_agent.path)

    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o666


def test_malformed_request_is_answered_400(
    unix_agent: UnixAgent, capfd: pytest.CaptureFixture[str]
) -> None:
    # The error log names the peer; a Unix peer has no (host, port) to name.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(unix_agent.path))
        sock.sendall(b"NONSENSE\r\n\r\n")
        reply = sock.recv(65536).decode()

    assert reply.startswith("HTTP/1.1 400 ")
    assert "sandbox-agent: unix:" in capfd.readouterr().err


def test_stale_socket_file_is_replaced(socket_path: Path, home: Path) -> None:
    _stale_socket(socket_path)

    with (
        AgentServer(token="t", socket_path=str(socket_path), home=str(home)),
        _client(socket_path) as client,
    ):
        assert client.get("/health").status_code == 200


def test_socket_another_agent_listens_on_is_left_alone(socket_path: Path, home: Path) -> None:
    with AgentServer(token="t", socket_path=str(socket_path), home=str(home)):
        second = AgentServer(token="t", socket_path=str(socket_path), home=str(home))
        with pytest.raises(ConfigError, match="another process is listening"):
            second.start()
        second.close()

        with _client(socket_path) as client:
            assert client.get("/health").status_code == 200


def test_file_that_is_not_a_socket_is_left_alone(socket_path: Path, home: Path) -> None:
    socket_path.write_text("keep me")
    server = AgentServer(token="t", socket_path=str(socket_path), home=str(home))

    with pytest.raises(ConfigError, match=re.escape(f"{socket_path}: a non-socket file")):
        server.start()
    server.close()

    assert socket_path.read_text() == "keep me"


def test_close_removes_the_socket_file_and_ends_idle_connections(
    socket_path: Path, home: Path
) -> None:
    server = AgentServer(token="t", socket_path=str(socket_path), home=str(home))
    server.start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(socket_path))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: agent\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")  # now idle, kept alive

        server.close()

        assert sock.recv(65536) == b""  # the server hung up
    assert not socket_path.exists()


def test_close_leaves_a_file_another_process_put_there(socket_path: Path, home: Path) -> None:
    with AgentServer(token="t", socket_path=str(socket_path), home=str(home)):
        socket_path.unlink()
        socket_path.write_text("not the agent's")

    assert socket_path.read_text() == "not the agent's"


def test_missing_directory_is_a_clear_error(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "missing" / "a.sock"
    server = AgentServer(token="t", socket_path=str(path), home=str(home))

    with pytest.raises(ConfigError, match=re.escape(f"{path}: the directory {path.parent}")):
        server.start()
    server.close()


def test_a_directory_nobody_can_bind_in_is_a_clear_error(home: Path) -> None:
    # Not even root can create a socket in /proc: the check that runs everywhere.
    server = AgentServer(token="t", socket_path="/proc/a.sock", home=str(home))

    with pytest.raises(
        ConfigError, match=re.escape("cannot listen on the unix socket /proc/a.sock")
    ):
        server.start()
    server.close()


def test_relative_socket_path_is_refused() -> None:
    with pytest.raises(ConfigError, match="absolute"):
        AgentServer(token="t", socket_path="agent.sock")


def test_config_reads_the_socket_path() -> None:
    config = AgentConfig.from_environ(
        {"SANDBOX_AGENT_TOKEN": "t", "SANDBOX_AGENT_SOCKET": "/run/agent/a.sock"}
    )

    assert config.socket_path == "/run/agent/a.sock"
    assert AgentConfig.from_environ({"SANDBOX_AGENT_TOKEN": "t"}).socket_path is None


def test_config_refuses_a_relative_socket_path() -> None:
    with pytest.raises(ConfigError, match="SANDBOX_AGENT_SOCKET must be an absolute path"):
        AgentConfig.from_environ({"SANDBOX_AGENT_TOKEN": "t", "SANDBOX_AGENT_SOCKET": "a.sock"})


def test_command_line_serves_on_the_socket_and_removes_it_on_sigterm(
    socket_path: Path, home: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SANDBOX_")}
    env.update(
        HOME=str(home),
        PYTHONPATH=str(REPO_ROOT),
        SANDBOX_AGENT_TOKEN="secret",
        SANDBOX_AGENT_SOCKET=str(socket_path),
        # Ignored with a socket; binding this address (TEST-NET-3) would fail.
        SANDBOX_AGENT_HOST="203.0.113.1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.agent"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()

        assert line == f"sandbox-agent listening on unix://{socket_path} toolsets=agent,shell\n"
        with _client(socket_path) as client:
            reply = client.post(
                "/call/bash.run",
                json={"command": "echo over the socket", "timeout": 5},
                headers={"Authorization": "Bearer secret"},
            )
        assert reply.json()["data"]["stdout"] == "over the socket\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert not socket_path.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
