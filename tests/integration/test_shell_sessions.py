"""bash and code sessions on real containers, through a real server and the client."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import docker
import httpx
import pytest

from sandbox import Sandbox
from sandbox.agent.identity import SESSION_UIDS
from sandbox.errors import ErrorCode

from .support import ServerProcess, created


@pytest.fixture(scope="module")
def server(networked_server: ServerProcess) -> ServerProcess:
    """The module's server lets callers ask for network."""
    return networked_server


@pytest.fixture
async def sb(server: ServerProcess, worker_id: str) -> AsyncIterator[Sandbox]:
    async with Sandbox(server_url=server.url, worker_id=worker_id) as sandbox:
        yield sandbox
        await sandbox.client.disconnect()


async def run(sb: Sandbox, command: str, **params: object) -> dict[str, Any]:
    envelope = await sb.execute("bash:run", {"command": command, **params})
    assert envelope["code"] == 0, envelope
    return dict(envelope["data"])


async def test_the_readme_flow(sb: Sandbox) -> None:
    summary = await sb.create_session("bash")
    assert summary["status"] == "success"
    session = created(summary, "bash")
    assert session["created"] is True
    result = await sb.execute("bash:run", {"command": "cd /tmp && echo hello > hi.txt && ls"})
    assert result["code"] == 0
    assert result["data"]["stdout"] == "hi.txt\n"
    assert result["data"]["exit_code"] == 0
    assert result["data"]["cwd"] == "/tmp"
    assert result["meta"]["session_id"] == session["session_id"]
    code = await sb.execute("code:execute", {"code": "print(6*7)", "language": "python"})
    assert code["code"] == 0, code
    assert code["data"]["stdout"] == "42\n"
    assert code["data"]["return_code"] == 0
    assert code["data"]["execution_time_ms"] > 0


async def test_shell_state_persists_between_calls(sb: Sandbox) -> None:
    await run(sb, "cd /tmp && export GREETING=hello && mkdir -p deep/er")
    data = await run(sb, 'cd deep/er; echo "$GREETING from $(pwd)"')
    assert data["stdout"] == "hello from /tmp/deep/er\n"
    data = await run(sb, "pwd", cwd="/", env={"ONCE": "1"})
    assert data["stdout"] == "/\n"
    data = await run(sb, 'pwd; echo "${ONCE:-unset}"')
    assert data["stdout"] == "/tmp/deep/er\nunset\n"


async def test_stdout_stderr_and_exit_code(sb: Sandbox) -> None:
    data = await run(sb, "echo out; echo err >&2; exit 3")
    assert (data["stdout"], data["stderr"], data["exit_code"]) == ("out\n", "err\n", 3)
    data = await run(sb, "echo still here")
    assert data["stdout"] == "still here\n"


async def test_files_round_trip(sb: Sandbox) -> None:
    text = "héllo\nwörld\n"
    written = await sb.execute("bash:write_file", {"path": "notes/a.txt", "content": text})
    assert written["code"] == 0, written
    assert written["data"]["path"] == "/home/sandbox/notes/a.txt"
    data = await run(sb, "cat notes/a.txt")
    assert data["stdout"] == text
    blob = bytes(range(256))
    await sb.execute(
        "bash:write_file",
        {"path": "/tmp/blob", "content": base64.b64encode(blob).decode(), "encoding": "base64"},
    )
    read = await sb.execute("bash:read_file", {"path": "/tmp/blob", "encoding": "base64"})
    assert base64.b64decode(read["data"]["content"]) == blob
    missing = await sb.execute("bash:read_file", {"path": "/nope/none"})
    assert missing["code"] == ErrorCode.INVALID_PARAMS
    assert missing["data"]["field"] == "params.path"


async def test_timeout_answers_promptly_and_the_session_survives(sb: Sandbox) -> None:
    await run(sb, "cd /tmp && export KEEP=kept")
    started = time.monotonic()
    envelope = await sb.execute("bash:run", {"command": "echo before; sleep 60", "timeout": 1})
    elapsed = time.monotonic() - started
    assert envelope["code"] == ErrorCode.TIMEOUT, envelope
    assert elapsed < 5, f"2002 took {elapsed:.1f}s"
    assert envelope["data"]["stdout"] == "before\n"
    assert "1s" in envelope["message"]
    data = await run(sb, 'echo "$KEEP in $(pwd)"; pgrep -c sleep || true')
    assert data["stdout"] == "kept in /tmp\n0\n", "the sleep was killed and the state kept"
    code = await sb.execute("code:execute", {"code": "while True: pass", "timeout": 1})
    assert code["code"] == ErrorCode.TIMEOUT


async def test_large_output_is_truncated_without_breaking_the_envelope(sb: Sandbox) -> None:
    data = await run(sb, "head -c 3000000 /dev/zero | tr '\\0' a; echo; echo done >&2")
    assert data["truncated"] is True
    assert 0 < len(data["stdout"]) <= 1_048_576
    assert data["stderr"] == "done\n"


async def test_error_codes_say_what_to_fix(sb: Sandbox) -> None:
    unknown = await sb.execute("bash:frobnicate", {})
    assert unknown["code"] == ErrorCode.TOOL_NOT_FOUND
    assert "frobnicate" in unknown["message"]
    missing = await sb.execute("bash:run", {})
    assert missing["code"] == ErrorCode.INVALID_PARAMS
    assert missing["data"]["field"] == "params.command"
    wrong = await sb.execute("code:execute", {"code": "1", "language": "cobol"})
    assert wrong["data"]["field"] == "params.language"
    resource = await sb.client.create_session("quantum")
    assert resource["code"] == ErrorCode.INVALID_PARAMS
    assert "bash" in resource["message"]
    summary = await sb.create_session("quantum")
    assert summary["status"] == "error"
    assert summary["sessions"]["quantum"]["code"] == ErrorCode.INVALID_PARAMS
    gone = await sb.destroy_session("code")
    assert gone["status"] == "error"
    assert gone["details"]["code"]["code"] == ErrorCode.SESSION_ERROR


async def test_batches(sb: Sandbox) -> None:
    actions = [
        {"action": "bash:run", "params": {"command": "echo 1 > /tmp/seq"}},
        {"action": "bash:run", "params": {"command": "echo 2 >> /tmp/seq; cat /tmp/seq"}},
        {"action": "bash:run", "params": {}},
        {"action": "bash:run", "params": {"command": "echo never"}},
    ]
    envelope = await sb.execute_batch(actions)
    data = envelope["data"]
    assert (data["total"], data["executed"], data["success_count"]) == (4, 3, 2)
    assert data["results"][1]["data"]["stdout"] == "1\n2\n"
    assert data["results"][2]["code"] == ErrorCode.INVALID_PARAMS
    parallel = await sb.execute_batch(
        [{"action": "code:execute", "params": {"code": f"print({i})"}} for i in range(4)],
        parallel=True,
    )
    outputs = [r["data"]["stdout"] for r in parallel["data"]["results"]]
    assert outputs == ["0\n", "1\n", "2\n", "3\n"]


async def test_containers_are_locked_down_and_labelled(
    sb: Sandbox, server: ServerProcess, docker_client: docker.DockerClient
) -> None:
    session = created(await sb.create_session("bash", {"memory": "256m", "pids": 128}), "bash")
    assert session["config_applied"]["memory"] == "256m"
    data = await run(sb, "id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status")
    uid, cap, nnp = data["stdout"].split("\n")[:3]
    assert int(uid) in SESSION_UIDS, "the session's own uid"
    assert cap.split() == ["CapEff:", "0000000000000000"]
    assert nnp.split() == ["NoNewPrivs:", "1"]
    egress = await sb.execute("code:execute", {"code": EGRESS_PROBE, "timeout": 10})
    assert egress["data"]["stdout"] == "blocked\n"
    (container,) = docker_client.containers.list(
        filters={"label": f"sandbox.session={session['session_id']}"}
    )
    labels = container.labels
    assert labels["sandbox.managed"] == "1"
    assert labels["sandbox.server"] == server.server_id
    assert labels["sandbox.worker"] == sb.worker_id
    assert labels["sandbox.resource"] == "bash"
    assert labels["sandbox.uid"] == uid
    host = container.attrs["HostConfig"]
    # The disk quota (2g by default) is tmpfs, counted in the memory cgroup.
    assert host["Memory"] == (256 + 2048) * 1024**2
    assert host["PidsLimit"] == 128
    assert host["CapDrop"] == ["ALL"]
    assert sorted(host["CapAdd"]) == ["KILL", "SETGID", "SETUID"], "the agent's, not the user's"
    assert host["ReadonlyRootfs"] is True
    # One tmpfs holds the home, /tmp and /var/tmp (symlinks into it): one quota.
    assert list(host["Tmpfs"]) == ["/home"]
    assert host["NetworkMode"] == "none"
    assert host["PortBindings"] in ({}, None), "no port is published without network"
    interfaces = await sb.execute(
        "code:execute", {"code": "import os; print(sorted(os.listdir('/sys/class/net')))"}
    )
    assert interfaces["data"]["stdout"] == "['lo']\n", "only loopback: no network at all"


# Without any interface but loopback, connecting out fails at once.
EGRESS_PROBE = """
import socket
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    print("reachable")
except OSError:
    print("blocked")
"""


async def test_network_is_given_when_asked(sb: Sandbox, docker_client: docker.DockerClient) -> None:
    session = created(await sb.create_session("code", {"network": True}), "code")
    assert session["config_applied"]["network"] is True
    (container,) = docker_client.containers.list(
        filters={"label": f"sandbox.session={session['session_id']}"}
    )
    # The sessions' own bridge, without traffic between containers; nothing published:
    # the server reaches the agent through its socket as for any session.
    assert list(container.attrs["NetworkSettings"]["Networks"]) == ["sandbox-sessions"]
    assert not container.attrs["NetworkSettings"]["Ports"]
    network = docker_client.networks.get("sandbox-sessions")
    assert network.attrs["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    envelope = await sb.execute("code:execute", {"code": "print('online')"})
    assert envelope["data"]["stdout"] == "online\n"


async def test_a_killed_container_is_2001_then_replaced(
    sb: Sandbox, docker_client: docker.DockerClient
) -> None:
    first = created(await sb.create_session("bash"), "bash")
    (container,) = docker_client.containers.list(
        filters={"label": f"sandbox.session={first['session_id']}"}
    )
    container.kill()
    dead = await sb.execute("bash:run", {"command": "true"})
    assert dead["code"] == ErrorCode.BACKEND_ERROR, dead
    assert "container is gone" in dead["message"]
    assert "exit code" in dead["message"]
    again = await sb.execute("bash:run", {"command": "echo alive"})
    assert again["code"] == 0
    assert again["data"]["stdout"] == "alive\n"
    assert again["meta"]["session_id"] != first["session_id"]


async def test_a_retried_request_id_runs_once(server: ServerProcess, worker_id: str) -> None:
    body = {
        "worker_id": worker_id,
        "action": "bash:run",
        "params": {"command": "echo x >> /tmp/count; wc -l < /tmp/count"},
    }
    headers = {"X-Request-ID": f"dedup-{worker_id}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        first, second = await asyncio.gather(
            http.post("/execute", json=body, headers=headers),
            http.post("/execute", json=body, headers=headers),
        )
        assert first.json()["data"]["stdout"] == second.json()["data"]["stdout"] == "1\n"
        check = {**body, "params": {"command": "wc -l < /tmp/count"}}
        assert (await http.post("/execute", json=check)).json()["data"]["stdout"] == "1\n"
        await http.post("/api/v1/worker/disconnect", json={"worker_id": worker_id})


async def test_sessions_of_workers_are_separate_and_listed(server: ServerProcess) -> None:
    async with (
        Sandbox(server_url=server.url, worker_id="iso-a") as a,
        Sandbox(server_url=server.url, worker_id="iso-b") as b,
    ):
        await a.execute("bash:run", {"command": "echo secret-a > /tmp/mine"})
        other = await b.execute("bash:run", {"command": "cat /tmp/mine"})
        assert other["data"]["exit_code"] != 0
        listed = await a.list_sessions()
        assert [s["worker_id"] for s in listed] == ["iso-a"]
        refreshed = await a.refresh_sessions("bash")
        assert refreshed["code"] == 0
        for sandbox in (a, b):
            gone = await sandbox.destroy_session()
            assert (gone["status"], gone["total"]) == ("success", 1), gone
        assert await a.list_sessions() == []


def test_the_sync_twin(server: ServerProcess, worker_id: str) -> None:
    sandbox = Sandbox(server_url=server.url, worker_id=worker_id)
    sandbox.start_sync()
    try:
        envelope = sandbox.execute_sync("bash:run", {"command": "echo sync"})
        assert envelope["data"]["stdout"] == "sync\n"
        tools = sandbox.get_tools_sync()
        assert "bash:run" in {t["name"] for t in tools}
        assert sandbox.destroy_session_sync("bash")["status"] == "success"
    finally:
        sandbox.close_sync()


async def test_a_command_over_the_memory_limit_is_killed_and_named(sb: Sandbox) -> None:
    # A small disk quota: its tmpfs is counted in the memory limit.
    created(await sb.create_session("bash", {"memory": "128m", "disk": "16m"}), "bash")
    await run(sb, "cd /tmp && export KEEP=alive")
    hog = "python3 -c \"x = b'x' * (400 * 1024 * 1024)\""
    envelope = await sb.execute("bash:run", {"command": hog, "timeout": 60})
    assert envelope["code"] == 0, envelope
    data = envelope["data"]
    assert (data["exit_code"], data["oom_killed"]) == (137, True)
    assert "memory limit (144m: 128m + the 16m disk quota) (OOM)" in data["stderr"]
    after = await run(sb, 'echo "$KEEP in $(pwd)"')
    assert after["stdout"] == "alive in /tmp\n", "the shell and its state live on"
    assert after["oom_killed"] is False

    await sb.create_session("code", {"memory": "128m", "disk": "16m"})
    code = await sb.execute("code:execute", {"code": "x = b'x' * (400 * 1024 * 1024)"})
    assert (code["data"]["return_code"], code["data"]["oom_killed"]) == (137, True)
