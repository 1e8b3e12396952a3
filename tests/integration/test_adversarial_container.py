"""Attacks from inside a session container, on the real engine, through a real server.

Each test runs what a hostile program in a session would run (as the session
user, through the tools), asserts that the attack fails, and then that the
session and the server still answer. The agent is root with SETUID, SETGID and
KILL only; everything the tools start is the session user (its own uid) without
capabilities.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import docker
import pytest

from sandbox import Sandbox
from sandbox.errors import ErrorCode

from .support import ServerProcess

# The agent is the container's only root process besides docker-init (pid 1).
AGENT_PID = "$(ps -u root -o pid=,comm= | awk '$2 == \"python3\" {print $1; exit}')"


@pytest.fixture(scope="module")
def server(networked_server: ServerProcess) -> ServerProcess:
    """The module's server lets callers ask for network."""
    return networked_server


@pytest.fixture
async def sb(server: ServerProcess, worker_id: str) -> AsyncIterator[Sandbox]:
    async with Sandbox(server_url=server.url, worker_id=worker_id) as sandbox:
        yield sandbox


@pytest.fixture
async def other(server: ServerProcess, worker_id: str) -> AsyncIterator[Sandbox]:
    """A second worker: the bystander whose session must not notice the attack."""
    async with Sandbox(server_url=server.url, worker_id=f"{worker_id}-other") as sandbox:
        yield sandbox


async def run(sb: Sandbox, command: str, timeout: float = 30) -> dict[str, object]:
    envelope = await sb.execute("bash:run", {"command": command, "timeout": timeout})
    assert envelope["code"] == 0, envelope
    return dict(envelope["data"])


async def healthy(sb: Sandbox) -> None:
    """The session's agent still answers, and runs commands as the session user."""
    data = await run(sb, "id -un")
    assert data["stdout"] == "sandbox\n"


async def test_the_socket_directory_and_token_are_out_of_reach(sb: Sandbox) -> None:
    data = await run(
        sb,
        "ls /run/sandbox 2>&1; mv /run/sandbox/agent/agent.sock /tmp/x.sock 2>&1; "
        "cat /run/sandbox/agent/token 2>&1; "
        "python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); "
        's.connect("/run/sandbox/agent/agent.sock")\' 2>&1 | tail -1; '
        "find / -name agent.sock 2>/dev/null | wc -l",
    )
    lines = str(data["stdout"]).splitlines()
    assert "Permission denied" in lines[0]  # ls
    assert "Permission denied" in lines[1]  # mv: cannot replace the agent's socket
    assert "Permission denied" in lines[2]  # the token
    assert "PermissionError" in lines[3]  # connecting to the agent as the user
    assert lines[4] == "0", "no agent socket anywhere the user can see"
    await healthy(sb)


async def test_the_agent_cannot_be_signalled_or_replaced(sb: Sandbox) -> None:
    data = await run(
        sb,
        f"agent={AGENT_PID}; echo agent=$agent; "
        "kill -9 $agent 2>&1; kill -STOP $agent 2>&1; kill -9 1 2>&1; "
        "kill -9 -1 2>/dev/null; echo survived",
    )
    out = str(data["stdout"])
    assert out.split("agent=")[1].split()[0].isdigit(), out
    assert out.count("Operation not permitted") == 3, out
    await healthy(sb)
    # Nor can its code be replaced: root's, read-only, on a read-only filesystem.
    data = await run(
        sb,
        "touch /opt/sandbox-agent/sandbox_agent/cli.py 2>&1; "
        "{ echo x > /opt/sandbox-agent/evil.py; } 2>&1; ls -ld /opt/sandbox-agent | cut -c1-10",
    )
    lines = str(data["stdout"]).splitlines()
    refusals = ("Permission denied", "Read-only file system")
    assert all(any(word in line for word in refusals) for line in lines[:2]), lines
    assert lines[2] == "dr-xr-xr-x"


PTRACE_ATTACH = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
pid = int(sys.argv[1])
result = libc.ptrace(16, pid, None, None)  # PTRACE_ATTACH
print(result, os.strerror(ctypes.get_errno()))
for name in ("environ", "mem", "maps"):
    try:
        open(f"/proc/{pid}/{name}", "rb").read(16)
        print(name, "read")
    except OSError as exc:
        print(name, exc.strerror)
"""


async def test_the_agent_cannot_be_traced_nor_its_memory_or_environment_read(
    sb: Sandbox,
) -> None:
    await run(sb, f"cat > /tmp/trace.py <<'EOF'\n{PTRACE_ATTACH}\nEOF")
    data = await run(sb, f"python3 /tmp/trace.py {AGENT_PID}; python3 /tmp/trace.py 1")
    lines = str(data["stdout"]).splitlines()
    assert lines[0] == "-1 Operation not permitted", lines
    assert lines[1:4] == [
        "environ Permission denied",
        "mem Permission denied",
        "maps Permission denied",
    ]
    assert lines[4] == "-1 Operation not permitted", "docker-init, pid 1, neither"
    assert lines[5] == "environ Permission denied"
    data = await run(sb, "env | grep -c SANDBOX_AGENT_ || true")
    assert data["stdout"] == "0\n", "none of the agent's settings reach the session"
    await healthy(sb)


async def test_a_planted_symlink_leads_file_tools_only_where_the_user_may_go(
    sb: Sandbox,
) -> None:
    await run(
        sb,
        "ln -sf /run/sandbox/agent/token ~/token; ln -sf /etc/shadow ~/shadow; "
        "ln -sf /opt/sandbox-agent/sandbox_agent/cli.py ~/agent.py; "
        "ln -sf /proc/1/environ ~/environ",
    )
    for path in ("~/token", "~/shadow", "~/environ"):
        envelope = await sb.execute("bash:read_file", {"path": path})
        assert envelope["code"] == ErrorCode.INVALID_PARAMS, (path, envelope)
        assert "Permission denied" in envelope["message"], envelope
    for path in ("~/agent.py", "/etc/passwd", "/run/sandbox/agent/agent.sock"):
        envelope = await sb.execute("bash:write_file", {"path": path, "content": "pwned"})
        assert envelope["code"] == ErrorCode.INVALID_PARAMS, (path, envelope)
    written = await sb.execute("bash:write_file", {"path": "~/mine.txt", "content": "ok"})
    assert written["code"] == 0, written
    data = await run(sb, "stat -c %U ~/mine.txt; grep -c pwned /etc/passwd || true")
    assert data["stdout"] == "sandbox\n0\n", "the user's file is the user's; passwd untouched"
    await healthy(sb)


async def test_a_fork_bomb_meets_the_pids_limit_and_the_agent_answers_after(
    sb: Sandbox, other: Sandbox
) -> None:
    await sb.create_session("bash", {"pids": 64})
    await other.create_session("bash")
    bomb = await sb.execute("bash:run", {"command": "b() { b | b & }; b", "timeout": 5})
    # However bash reports it (a timeout that kills the tree, or an exit), the call
    # answers and the next command runs: the kill freed the pids.
    assert bomb["code"] in (0, ErrorCode.TIMEOUT), bomb
    for _ in range(10):
        envelope = await sb.execute("bash:run", {"command": "echo alive", "timeout": 10})
        if envelope["code"] == 0:
            break
        await asyncio.sleep(1)
    assert envelope["code"] == 0, envelope
    assert envelope["data"]["stdout"] == "alive\n"
    await healthy(other)


async def test_filling_the_disk_fails_with_enospc_and_harms_no_one(
    sb: Sandbox, other: Sandbox
) -> None:
    # One quota for all writable directories: with memory as small as the disk,
    # a quota per directory let /tmp plus /var/tmp take the agent's memory (OOM kill).
    created = await sb.client.create_session("bash", {"disk": "64m", "memory": "64m"})
    assert created["code"] == 0, created
    await other.create_session("bash")
    data = await run(sb, "dd if=/dev/zero of=/tmp/fill bs=1M count=40 2>&1 | tail -1")
    assert "copied" in str(data["stdout"]), data
    for directory in ("/var/tmp", "~"):
        data = await run(sb, f"dd if=/dev/zero of={directory}/fill bs=1M count=60 2>&1 | head -1")
        assert "No space left on device" in str(data["stdout"]), (directory, data)
    data = await run(sb, "du -cm /tmp/fill /var/tmp/fill ~/fill | tail -1 | cut -f1")
    assert int(str(data["stdout"])) <= 64, "the three together stay within the one quota"
    data = await run(sb, "touch /usr/fill /fill /etc/fill 2>&1 | grep -c 'Read-only file system'")
    assert data["stdout"] == "3\n", "nothing else is writable"
    # All full at once: the session still answers (no OOM kill), so does the other.
    await healthy(sb)
    data = await run(sb, "rm /tmp/fill && echo freed")
    assert data["stdout"] == "freed\n"
    await healthy(other)


async def test_a_planted_fifo_neither_blocks_nor_feeds_the_file_tools(sb: Sandbox) -> None:
    await run(sb, "mkfifo ~/fifo /tmp/fifo")
    for tool, params in [
        ("bash:write_file", {"path": "~/fifo", "content": "x"}),
        ("bash:read_file", {"path": "/tmp/fifo"}),
    ]:
        envelope = await sb.execute(tool, params)
        assert envelope["code"] == ErrorCode.INVALID_PARAMS, (tool, envelope)
        assert envelope["data"]["field"] == "params.path", envelope
        assert "not a regular file" in envelope["message"], envelope
    await healthy(sb)


async def test_the_agents_own_proc_entries_are_refused(sb: Sandbox) -> None:
    # /proc/self is the agent itself (root) while a file tool runs.
    await run(sb, "ln -sf /proc/self/environ ~/self-environ")
    for path in ("/proc/self/maps", "/proc/thread-self/status", "~/self-environ"):
        envelope = await sb.execute("bash:read_file", {"path": path})
        assert envelope["code"] == ErrorCode.INVALID_PARAMS, (path, envelope)
        assert "Permission denied" in envelope["message"], envelope
    pid = str((await run(sb, f"echo {AGENT_PID}"))["stdout"]).strip()
    envelope = await sb.execute("bash:read_file", {"path": f"/proc/{pid}/maps"})
    assert envelope["code"] == ErrorCode.INVALID_PARAMS, envelope
    mine = await sb.execute("bash:read_file", {"path": "/proc/version"})
    assert mine["code"] == 0, mine


async def test_the_docker_socket_is_not_there(sb: Sandbox) -> None:
    data = await run(
        sb,
        "ls /var/run/docker.sock /run/docker.sock 2>&1 | grep -c 'No such file'; "
        "find / -xdev -type s 2>/dev/null | grep -c docker || true",
    )
    assert data["stdout"] == "2\n0\n"


async def test_no_setuid_or_setgid_program_is_left_to_run(sb: Sandbox) -> None:
    """Nothing the session runs can gain an identity, even without no-new-privileges."""
    find = "find / -xdev -type f -perm /6000 2>/dev/null; echo end"
    data = await run(sb, find)
    assert data["stdout"] == "end\n", data
    assert (await sb.client.create_session("vm"))["code"] == 0
    desktop = await sb.execute("vm:run_command", {"command": find, "timeout": 30})
    assert desktop["data"]["stdout"] == "end\n", desktop


REACH = """
import socket
for target in TARGETS:
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        print(target, "reached")
    except OSError:
        print(target, "blocked")
"""


async def _reach(sb: Sandbox, *targets: str) -> dict[str, str]:
    code = f"TARGETS = {list(targets)!r}\n{REACH}"
    envelope = await sb.execute("code:execute", {"code": code, "timeout": 60})
    assert envelope["code"] == 0, envelope
    lines = str(envelope["data"]["stdout"]).split("\n")
    return dict(line.split(" ", 1) for line in lines if line)


async def _address(docker_client: docker.DockerClient, session_id: str) -> str:
    (container,) = docker_client.containers.list(filters={"label": f"sandbox.session={session_id}"})
    (network,) = container.attrs["NetworkSettings"]["Networks"].values()
    return str(network["IPAddress"])


async def test_without_network_nothing_is_reachable(
    sb: Sandbox, other: Sandbox, server: ServerProcess, docker_client: docker.DockerClient
) -> None:
    target = await other.client.create_session("code", {"network": True})
    address = await _address(docker_client, target["data"]["session_id"])
    gateway = address.rsplit(".", 1)[0] + ".1"
    await sb.create_session("code")
    reached = await _reach(
        sb,
        f"127.0.0.1:{server.port}",
        f"{gateway}:{server.port}",
        f"172.17.0.1:{server.port}",
        f"{address}:8765",
        "1.1.1.1:53",
    )
    assert set(reached.values()) == {"blocked"}, reached


HTTP_SERVER = "nohup python3 -m http.server 8080 >/dev/null 2>&1 & sleep 1; echo started"


async def test_sessions_with_network_cannot_reach_each_other_nor_the_api(
    sb: Sandbox, other: Sandbox, server: ServerProcess, docker_client: docker.DockerClient
) -> None:
    victim = await other.client.create_session("bash", {"network": True})
    assert victim["code"] == 0, victim
    assert (await run(other, HTTP_SERVER))["stdout"] == "started\n"
    victim_address = await _address(docker_client, victim["data"]["session_id"])
    attacker = await sb.client.create_session("code", {"network": True})
    assert attacker["code"] == 0, attacker
    gateway = victim_address.rsplit(".", 1)[0] + ".1"
    # The victim reaches its own server: the port is open, only the path is shut.
    own = await other.execute(
        "bash:run",
        {"command": f"timeout 3 bash -c 'exec 3<>/dev/tcp/{victim_address}/8080' && echo open"},
    )
    assert own["data"]["stdout"] == "open\n", own
    reached = await _reach(
        sb, f"{victim_address}:8080", f"{victim_address}:8765", f"{gateway}:{server.port}"
    )
    assert set(reached.values()) == {"blocked"}, reached
    await healthy(other)


IDLE_CONNECTIONS = """
import select, socket
pending = []
for _ in range(300):  # all at once: a dropped SYN would take seconds one by one
    sock = socket.socket()
    sock.setblocking(False)
    sock.connect_ex(("{address}", 8765))
    pending.append(sock)
_, writable, _ = select.select([], pending, [], 3)
print(sum(1 for sock in writable if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0))
"""


async def test_hundreds_of_connections_to_another_agent_find_no_path(
    sb: Sandbox, other: Sandbox, docker_client: docker.DockerClient
) -> None:
    victim = await other.client.create_session("bash", {"network": True})
    address = await _address(docker_client, victim["data"]["session_id"])
    await sb.create_session("code", {"network": True})
    code = IDLE_CONNECTIONS.replace("{address}", address)
    envelope = await sb.execute("code:execute", {"code": code, "timeout": 30})
    assert envelope["code"] == 0, envelope
    assert envelope["data"]["stdout"] == "0\n", "no agent listens on any network"
    await healthy(other)


async def test_the_server_is_healthy_after_the_attacks(sb: Sandbox) -> None:
    health = await sb.client.health()
    assert health["data"]["status"] == "ok", health
    await healthy(sb)


# X lets any client kill any other client's connection (XKillClient on one of
# its resources); the agent's connection holds a few (a GC, the MIT-SHM segment).
KILL_EVERY_X_CLIENT = """
from Xlib import display
from Xlib.error import CatchError
from Xlib.protocol import request

d = display.Display()
info = d.display.info
step = info.resource_id_mask + 1
mine = info.resource_id_base // step
for index in range(1, 64):
    if index != mine:
        for offset in range(64):
            resource = index * step + offset
            request.KillClient(display=d.display, onerror=CatchError(), resource=resource)
d.sync()
print("sent")
"""


async def test_killing_the_agents_x_connection_leaves_the_agent_alive(sb: Sandbox) -> None:
    assert (await sb.client.create_session("vm"))["code"] == 0
    before = await sb.execute("vm:screenshot", {})
    assert before["code"] == 0, before
    command = f"python3 - <<'EOF'\n{KILL_EVERY_X_CLIENT}\nEOF"
    attack = await sb.execute("vm:run_command", {"command": command, "timeout": 30})
    assert attack["code"] == 0, attack
    assert attack["data"]["stdout"] == "sent\n", attack
    # The call that finds the connection broken may fail (saying so); the next reconnects.
    outcomes = [await sb.execute("vm:screenshot", {}) for _ in range(2)]
    assert outcomes[-1]["code"] == 0, outcomes
    assert outcomes[-1]["data"]["size"] == before["data"]["size"]
    data = await sb.execute("vm:run_command", {"command": "id -un", "timeout": 10})
    assert data["data"]["stdout"] == "sandbox\n", data


async def test_every_desktop_program_runs_as_the_session_user(sb: Sandbox) -> None:
    assert (await sb.client.create_session("vm"))["code"] == 0
    launched = await sb.execute("vm:launch", {"command": "xterm", "wait_for_window": True})
    assert launched["code"] == 0, launched
    data = await sb.execute(
        "vm:run_command", {"command": "ps -eo user:12,comm --no-headers | sort -u", "timeout": 10}
    )
    owners = dict(reversed(line.split()) for line in data["data"]["stdout"].splitlines())
    assert owners["Xvfb"] == owners["openbox"] == owners["xterm"] == "sandbox", owners
    assert owners["python3"] == "root", "the agent, alone with root's name (and 3 capabilities)"
    status = await sb.execute(
        "vm:run_command",
        {"command": f"grep CapEff /proc/{AGENT_PID}/status", "timeout": 10},
    )
    # SETUID, SETGID and KILL: bits 7, 6 and 5.
    assert status["data"]["stdout"].split() == ["CapEff:", "00000000000000e0"], status


async def test_killing_xvfb_gives_errors_not_a_dead_agent(
    sb: Sandbox, docker_client: docker.DockerClient
) -> None:
    created = await sb.client.create_session("vm")
    assert created["code"] == 0, created
    session_id = created["data"]["session_id"]
    attack = await sb.execute("vm:run_command", {"command": "pkill -x Xvfb; echo sent"})
    assert attack["code"] == 0, attack
    await asyncio.sleep(1)
    # Each call answers an error (the agent once died of SIGSEGV on the third):
    # the first may only find its connection broken, the others that X is gone.
    messages = []
    for name in ("screenshot", "screenshot", "click", "cursor_position", "screenshot"):
        params = {"x": 5, "y": 5} if name == "click" else {}
        envelope = await sb.execute(f"vm:{name}", params)
        assert envelope["code"] == ErrorCode.BACKEND_ERROR, (name, envelope)
        messages.append(str(envelope["message"]))
    assert all("display died" in message for message in messages[1:]), messages
    (container,) = docker_client.containers.list(filters={"label": f"sandbox.session={session_id}"})
    container.reload()
    assert container.status == "running"


async def test_the_oom_killer_picks_the_sessions_programs_before_the_agent(sb: Sandbox) -> None:
    data = await run(sb, f"cat /proc/self/oom_score_adj /proc/{AGENT_PID}/oom_score_adj")
    assert data["stdout"] == "1000\n0\n", data
    envelope = await sb.execute(
        "code:execute", {"code": "print(open('/proc/self/oom_score_adj').read().strip())"}
    )
    assert envelope["data"]["stdout"] == "1000\n", envelope
