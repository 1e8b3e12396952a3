"""A compromised agent, on the real engine: what it answers must not hurt the server.

The attacks need what session code must never get (root in its container), so the
tests take it with ``docker exec -u 0``: the real agent is stopped (SIGSTOP: killing
it would end the container) and an impostor listens on its socket path instead.
Each test asserts that the attack fails with a clear error and that the server and
the other sessions carry on.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest

from sandbox import Sandbox
from sandbox.errors import ErrorCode
from sandbox.runtime.docker import AGENT_SOCKET_DIR, AGENT_SOCKET_ENV

from .support import ServerProcess, remove_containers_of, start_server, wait_recovered

# The server's pooled connection to a Unix-socket agent expires after 5 s idle
# (httpx's default); past it the next call connects anew, to the impostor.
_POOLED_CONNECTION_EXPIRY_S = 5.5
_READY_MARK = "/tmp/.impostor-ready"

# Runs in the container as root. argv: mode, socket path, forged agent.meta (JSON).
# The agent is found by its command line; the literal is split so that this
# script's own command line does not match.
_IMPOSTOR = r"""
import gzip, os, signal, socket, sys, threading, time
mode, path, meta = sys.argv[1], sys.argv[2], sys.argv[3]
needle = b"sandbox" + b"_agent"
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) in (1, os.getpid()):
        continue
    try:
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        continue
    if needle in cmdline:
        os.kill(int(pid), signal.SIGSTOP)
bomb = gzip.compress(b'{"ok": true, "data": {"x": "' + b"0" * (100 << 20) + b'"}}')
os.unlink(path)
server = socket.socket(socket.AF_UNIX)
server.bind(path)
os.chmod(path, 0o777)
server.listen(64)
open(sys.argv[4], "w").close()

def head(length, extra=b""):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (length, extra)

def trickle(conn):
    conn.sendall(head(100000))
    while True:
        conn.sendall(b" ")
        time.sleep(0.5)

def answer(conn, target):
    if mode == "trickle-all":
        trickle(conn)
    elif target == b"/health":
        conn.sendall(head(11) + b'{"ok":true}')
    elif target.endswith(b"/agent.meta"):
        body = b'{"ok": true, "data": {"meta": ' + meta.encode() + b"}}"
        conn.sendall(head(len(body)) + body)
    elif mode == "trickle":
        trickle(conn)
    elif mode == "gzip":
        conn.sendall(head(len(bomb), b"Content-Encoding: gzip\r\n") + bomb)
    elif mode == "huge":
        conn.sendall(head(200 << 20))
        chunk = b"0" * (1 << 20)
        for _ in range(200):
            conn.sendall(chunk)
    else:
        conn.sendall(head(2) + b"{}")

def serve(conn):
    data = b""
    try:
        while True:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            request, _, data = data.partition(b"\r\n\r\n")
            length = 0
            for line in request.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(data) < length:
                data += conn.recv(65536)
            data = data[length:]
            answer(conn, request.split(b" ")[1])
    except OSError:
        pass
    finally:
        conn.close()

while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def _socket_path(container: docker.models.containers.Container) -> str:
    """The agent's socket inside the container, wherever the image puts it."""
    for entry in container.attrs["Config"]["Env"] or []:
        name, _, value = entry.partition("=")
        if name == AGENT_SOCKET_ENV:
            return str(value)
    return f"{AGENT_SOCKET_DIR}/agent.sock"


def hijack(
    docker_client: docker.DockerClient, container_id: str, mode: str, meta: object = None
) -> None:
    """Stop the container's agent and answer in its place as `mode` says."""
    container = docker_client.containers.get(container_id)
    argv = [_socket_path(container), json.dumps(meta or {}), _READY_MARK]
    container.exec_run(["python3", "-c", _IMPOSTOR, mode, *argv], user="0", detach=True)
    deadline = time.monotonic() + 30
    while container.exec_run(["test", "-e", _READY_MARK], user="0").exit_code != 0:
        assert time.monotonic() < deadline, "the impostor did not start"
        time.sleep(0.1)


def session_of(sb: Sandbox, resource: str = "bash") -> dict[str, str]:
    (session,) = [s for s in sb.list_sessions_sync() if s["resource_type"] == resource]
    return dict(session)


def assert_healthy(server: ServerProcess, bystander: Sandbox) -> None:
    """The server answers and another worker's session runs commands."""
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
    ran = bystander.execute_sync("bash:run", {"command": "echo still here"})
    assert ran["code"] == 0, ran
    assert ran["data"]["stdout"] == "still here\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(tmp_path_factory.mktemp("adversarial"))
    try:
        yield process
    finally:
        process.stop(signal.SIGKILL)
        remove_containers_of(docker.from_env(), process.server_id)


@pytest.mark.parametrize(
    ("mode", "code", "words"),
    [
        ("trickle", ErrorCode.TIMEOUT, "did not answer within 1s"),
        ("gzip", ErrorCode.BACKEND_ERROR, "'gzip'-encoded"),
        ("huge", ErrorCode.BACKEND_ERROR, "agent_reply_max_bytes"),
    ],
)
def test_a_hostile_reply_fails_the_call_clearly_and_hurts_nothing_else(
    server: ServerProcess, docker_client: docker.DockerClient, mode: str, code: int, words: str
) -> None:
    with (
        Sandbox(server_url=server.url, worker_id=f"attacker-{mode}") as attacker,
        Sandbox(server_url=server.url, worker_id=f"bystander-{mode}") as bystander,
    ):
        attacker.create_session_sync("bash")
        bystander.create_session_sync("bash")
        hijack(docker_client, session_of(attacker)["container_id"], mode)
        time.sleep(_POOLED_CONNECTION_EXPIRY_S)

        started = time.monotonic()
        failed = attacker.execute_sync("bash:run", {"command": "true", "timeout": 1})
        elapsed = time.monotonic() - started
        assert failed["code"] == code, failed
        assert words in failed["message"]
        assert elapsed < 1 + 10 + 5, "within the call's timeout, its grace and some slack"
        assert_healthy(server, bystander)
        attacker.destroy_session_sync("bash")


def test_a_forged_claim_to_another_workers_session_is_refused_at_restart(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    pools = {"SANDBOX_POOLS": '[{"resource": "bash", "size": 2}]'}
    first = start_server(tmp_path, env=pools)
    stop_later = [first]
    try:
        with (
            Sandbox(server_url=first.url, worker_id="victim") as victim,
            Sandbox(server_url=first.url, worker_id="attacker") as attacker,
        ):
            victim.warmup_sync(["bash"], pool_size=2, wait=True)
            victim.execute_sync("bash:run", {"command": "export MARK=victim-state"})
            attacker.create_session_sync("bash")
            mine, theirs = session_of(victim), session_of(attacker)
        claimed = docker_client.containers.get(theirs["container_id"]).labels
        assert "sandbox.pool" in claimed, "the attacker's session came from the pool"
        # The claim as the server stored it before claims were signed: the attacker's
        # container names itself the victim's session.
        forged = {
            "sandbox.resource": "bash",
            "sandbox.worker": "victim",
            "sandbox.session": mine["session_id"],
            "sandbox.session_name": mine["session_id"],
            "sandbox.config": "{}",
            "sandbox.created": f"{time.time():.3f}",
            "sandbox.auto_created": "0",
        }
        hijack(docker_client, theirs["container_id"], "meta", forged)
        first.stop(signal.SIGKILL)

        second = start_server(tmp_path, server_id=first.server_id, env=pools)
        stop_later.append(second)
        wait_recovered(second)
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(theirs["container_id"])
        assert "forged claim" in second.log()
        with Sandbox(server_url=second.url, worker_id="victim") as victim:
            adopted = session_of(victim)
            assert (adopted["session_id"], adopted["container_id"]) == (
                mine["session_id"],
                mine["container_id"],
            )
            echoed = victim.execute_sync("bash:run", {"command": 'echo "$MARK"'})["data"]
            assert echoed["stdout"] == "victim-state\n"
        with Sandbox(server_url=second.url, worker_id="attacker") as attacker:
            assert attacker.list_sessions_sync() == []
        assert second.stop_gracefully()
    finally:
        for process in stop_later:
            process.stop(signal.SIGKILL)
        remove_containers_of(docker_client, first.server_id)


def test_health_answers_within_5_s_of_a_restart_while_every_agent_hangs(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    quick = {"SANDBOX_RECOVERY_TIMEOUT_S": "3"}
    first = start_server(tmp_path, env=quick)
    stop_later = [first]
    try:
        containers = []
        for worker in ("hung-1", "hung-2"):
            with Sandbox(server_url=first.url, worker_id=worker) as sb:
                sb.create_session_sync("bash")
                containers.append(session_of(sb)["container_id"])
        # Stopped agents would only be silent; these trickle, health checks too.
        for container_id in containers:
            hijack(docker_client, container_id, "trickle-all")
        first.stop(signal.SIGKILL)

        started = time.monotonic()
        second = start_server(tmp_path, server_id=first.server_id, env=quick)
        stop_later.append(second)
        assert time.monotonic() - started < 5, "/health answered only after recovery"
        wait_recovered(second)
        for container_id in containers:
            with pytest.raises(docker.errors.NotFound):
                docker_client.containers.get(container_id)
        with Sandbox(server_url=second.url, worker_id="hung-1") as sb:
            ran = sb.execute_sync("bash:run", {"command": "echo fresh"})
            assert ran["code"] == 0, ran
            assert ran["data"]["stdout"] == "fresh\n"
        assert second.stop_gracefully()
    finally:
        for process in stop_later:
            process.stop(signal.SIGKILL)
        remove_containers_of(docker_client, first.server_id)
