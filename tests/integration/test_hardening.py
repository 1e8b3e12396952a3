"""Auth, bad input, body limits, path tricks, metrics and logs on a real server process.

One server for the module, with an API key, debug logging (so uvicorn's access
log is on too), JSON log lines and a 1 MiB body limit; its log file is checked
at the end for secrets and for the request context on every line.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sandbox import Sandbox
from sandbox.errors import ErrorCode

from .support import ServerProcess, checked, start_server

API_KEY = f"it-key-{secrets.token_hex(16)}"
BODY_LIMIT = 1 << 20
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def guarded(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = start_server(
        tmp_path_factory.mktemp("guarded"),
        env={
            "SANDBOX_API_KEY": API_KEY,
            "SANDBOX_LOG_LEVEL": "debug",
            "SANDBOX_LOG_FORMAT": "json",
            "SANDBOX_MAX_BODY_BYTES": str(BODY_LIMIT),
        },
    )
    with checked(docker_client, proc):
        yield proc


@pytest.fixture
async def sb(guarded: ServerProcess, worker_id: str) -> AsyncIterator[Sandbox]:
    async with Sandbox(server_url=guarded.url, worker_id=worker_id, api_key=API_KEY) as sandbox:
        yield sandbox
        await sandbox.client.disconnect()


@pytest.fixture
async def http(guarded: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=guarded.url, timeout=60) as client:
        yield client


def _token_of(docker_client: docker.DockerClient, session_id: str) -> str:
    (container,) = docker_client.containers.list(filters={"label": f"sandbox.session={session_id}"})
    token = str(container.labels["sandbox.token"])
    assert len(token) >= 16
    env = "\n".join(container.attrs["Config"]["Env"])
    assert token not in env, "the token is never in the container's environment"
    return token


# -- auth ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/tools"),
        ("GET", "/metrics"),
        ("GET", "/api/v1/metrics"),
        ("POST", "/execute"),
        ("POST", "/session/create"),
        ("POST", "/shutdown"),
        ("GET", "/warmup/status"),
    ],
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-Api-Key": API_KEY}])
async def test_without_the_key_everything_but_health_is_401(
    http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = await http.request(method, path, json={"worker_id": "w"}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == ErrorCode.INVALID_PARAMS
    assert (await http.get("/health")).status_code == 200


async def test_the_client_with_its_api_key_runs_tools_and_reads_metrics(
    sb: Sandbox, http: httpx.AsyncClient
) -> None:
    result = await sb.execute("bash:run", {"command": "echo guarded"})
    assert result["code"] == 0, result
    assert result["data"]["stdout"] == "guarded\n"
    response = await http.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    bash_run = (("code", "0"), ("tool", "bash:run"))
    assert samples[("sandbox_tool_calls_total", bash_run)] >= 1
    assert samples[("sandbox_tool_call_duration_seconds_count", (("tool", "bash:run"),))] >= 1
    assert samples[("sandbox_sessions", (("resource", "bash"), ("state", "ready")))] >= 1
    starts = ("sandbox_session_starts_total", (("outcome", "ok"), ("resource", "bash")))
    assert samples[starts] >= 1
    assert samples[("sandbox_uptime_seconds", ())] > 0


# -- bad input ---------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413_with_or_without_content_length(
    http: httpx.AsyncClient, worker_id: str
) -> None:
    big = json.dumps(
        {"worker_id": worker_id, "action": "bash:run", "params": {"command": "x" * (2 << 20)}}
    ).encode()

    async def streamed() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    for content in (big, streamed()):
        response = await http.post(
            "/execute", content=content, headers={**AUTH, "content-type": "application/json"}
        )
        assert response.status_code == 413
        envelope = response.json()
        assert envelope["code"] == ErrorCode.INVALID_PARAMS
        assert envelope["data"] == {"field": "body", "max_body_bytes": BODY_LIMIT}
    fine = await http.post(
        "/execute",
        json={"worker_id": worker_id, "action": "bash:run", "params": {"command": "echo ok"}},
        headers=AUTH,
    )
    assert fine.json()["code"] == 0, "the server and the session are fine afterwards"
    under = "z" * (BODY_LIMIT - 4096)
    written = await http.post(
        "/execute",
        json={
            "worker_id": worker_id,
            "action": "bash:write_file",
            "params": {"path": "/tmp/big", "content": under},
        },
        headers=AUTH,
    )
    assert written.json()["data"]["size"] == len(under)
    long_command = await http.post(
        "/execute",
        json={
            "worker_id": worker_id,
            "action": "bash:run",
            "params": {"command": f"x='{under}'; echo ${{#x}}"},
        },
        headers=AUTH,
    )
    assert long_command.json()["data"]["stdout"] == f"{len(under)}\n"
    await http.post("/session/destroy", json={"worker_id": worker_id}, headers=AUTH)


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"{not json", "body"),
        (b"[" * 50_000 + b"]" * 50_000, "body"),
        (b'{"worker_id": "w", "action": "bash:run", "timeout": NaN}', "timeout"),
        (b'{"worker_id": "w", "action": "bash:run", "params": {"command": 5}}', "params.command"),
        (b'{"worker_id": "w", "action": "bash:run", "surprise": 1}', "surprise"),
        (b'{"worker_id": "w", "action": "bash:run", "timeout": 1e99}', "timeout"),
        (b'{"worker_id": "w", "action": "' + b"a" * 10_000 + b'"}', "action"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(
    http: httpx.AsyncClient, content: bytes, field: str
) -> None:
    response = await http.post(
        "/execute", content=content, headers={**AUTH, "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["data"]["field"] == field


async def test_odd_headers_are_harmless(http: httpx.AsyncClient) -> None:
    auth = [(name.encode(), value.encode()) for name, value in AUTH.items()]
    response = await http.get("/tools", headers=[*auth, (b"X-Trace-ID", b"\xff<script>")])
    assert response.status_code == 200
    assert response.headers["x-trace-id"].isalnum()
    response = await http.post(
        "/execute",
        json={"action": "bash:run", "params": {"command": "x"}},
        headers=[*auth, (b"X-Worker-ID", b"\xe9")],
    )
    assert (response.status_code, response.json()["data"]["field"]) == (400, "worker_id")


async def test_a_tiny_timeout_is_a_clean_2002_and_the_shell_lives_on(sb: Sandbox) -> None:
    started = time.monotonic()
    timed_out = await sb.execute("bash:run", {"command": "sleep 5"}, timeout=0.001)
    assert timed_out["code"] == ErrorCode.TIMEOUT, timed_out
    assert time.monotonic() - started < 4
    after = await sb.execute("bash:run", {"command": "echo alive"})
    assert after["data"]["stdout"] == "alive\n"
    assert after["meta"]["session_id"] == timed_out["meta"]["session_id"]


# -- path tricks in the file tools ---------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "path", "reason"),
    [
        ("read_file", "../../etc/shadow", "Permission denied"),
        ("read_file", "/etc/shadow", "Permission denied"),
        ("read_file", "shadow-link", "Permission denied"),
        ("read_file", "/proc/self/environ", "Permission denied"),
        ("read_file", "/proc/thread-self/environ", "Permission denied"),
        ("read_file", "/proc/self/mem", "Permission denied"),
        ("read_file", "/root/.bashrc", "Permission denied"),
        ("read_file", "a\x00b", "NUL"),
        ("read_file", "x" * 5000, "File name too long"),
        ("read_file", "/" + "d/" * 3000, "File name too long"),
        ("read_file", "/no/such/file", "No such file"),
        ("read_file", "/tmp", "Is a directory"),
        # Outside the session's tmpfs directories the root filesystem is read-only.
        ("write_file", "../../etc/shadow", "Read-only file system"),
        ("write_file", "shadow-link", "Read-only file system"),
        ("write_file", "/etc/passwd", "Read-only file system"),
        ("write_file", "/proc/self/environ", "Permission denied"),
        ("write_file", "/opt/sandbox-agent/sandbox_agent/cli.py", "Read-only file system"),
        ("write_file", "/usr/local/bin/evil", "Read-only file system"),
        ("write_file", "a\x00b", "NUL"),
        ("write_file", "x" * 5000, "File name too long"),
        ("write_file", "/tmp/" + "y" * 300, "File name too long"),
    ],
)
async def test_path_tricks_are_a_clean_1002_naming_the_path(
    sb: Sandbox, tool: str, path: str, reason: str
) -> None:
    setup = await sb.execute("bash:run", {"command": "ln -sfn /etc/shadow ~/shadow-link"})
    assert setup["code"] == 0, setup
    params = {"path": path} if tool == "read_file" else {"path": path, "content": "pwned"}
    envelope = await sb.execute(f"bash:{tool}", params)
    assert envelope["code"] == ErrorCode.INVALID_PARAMS, envelope
    assert envelope["data"]["field"] == "params.path"
    assert reason in envelope["message"]
    intact = await sb.execute("bash:run", {"command": "id -un; head -c 5 /etc/passwd"})
    assert intact["data"]["stdout"] == "sandbox\nroot:"


async def test_the_agents_own_environment_is_not_readable(
    sb: Sandbox, docker_client: docker.DockerClient
) -> None:
    found = await sb.execute("bash:run", {"command": "pgrep -o -x python3"})
    assert found["code"] == 0, found
    agent_pid = found["data"]["stdout"].strip()
    token = _token_of(docker_client, found["meta"]["session_id"])
    for path in (f"/proc/{agent_pid}/environ", f"/proc/{agent_pid}/task/{agent_pid}/environ"):
        envelope = await sb.execute("bash:read_file", {"path": path})
        assert envelope["code"] == ErrorCode.INVALID_PARAMS, envelope
        assert "Permission denied" in envelope["message"]
    shell = await sb.execute(
        "bash:run", {"command": f"cat /proc/{agent_pid}/environ; env; cat /proc/$$/environ"}
    )
    assert token not in json.dumps(shell)
    assert "Permission denied" in shell["data"]["stderr"]


async def test_no_process_of_the_sandbox_holds_the_agent_token(
    sb: Sandbox, docker_client: docker.DockerClient
) -> None:
    every = await sb.execute(
        "bash:run", {"command": "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'"}
    )
    token = _token_of(docker_client, every["meta"]["session_id"])
    init = await sb.execute("bash:read_file", {"path": "/proc/1/environ"})
    assert token not in json.dumps(init)
    assert token not in every["data"]["stdout"]
    leftover = await sb.execute("bash:run", {"command": "ls -a /tmp; cat /tmp/.sandbox-agent-*"})
    assert token not in json.dumps(leftover), "the token file is gone once the agent read it"


async def test_a_deeply_nested_path_is_written_or_refused_cleanly(sb: Sandbox) -> None:
    deep = "/tmp" + "/d" * 1500 + "/f"
    written = await sb.execute("bash:write_file", {"path": deep, "content": "x"})
    assert written["code"] == 0, written
    assert (await sb.execute("bash:read_file", {"path": deep}))["data"]["content"] == "x"
    too_deep = await sb.execute("bash:write_file", {"path": "/tmp" + "/d" * 2100, "content": "x"})
    assert too_deep["code"] == ErrorCode.INVALID_PARAMS, too_deep
    assert too_deep["data"]["field"] == "params.path"


# -- logs (last: they check what the tests above logged) -----------------------------


async def test_log_lines_are_json_with_context_and_no_secrets(
    guarded: ServerProcess, sb: Sandbox, docker_client: docker.DockerClient
) -> None:
    trace_id = f"it-{secrets.token_hex(4)}"
    async with httpx.AsyncClient(base_url=guarded.url, timeout=60) as http:
        response = await http.post(
            "/execute",
            json={"worker_id": sb.worker_id, "action": "bash:run", "params": {"command": "id"}},
            headers={**AUTH, "X-Trace-ID": trace_id},
        )
    envelope = response.json()
    assert envelope["code"] == 0, envelope
    session_id = envelope["meta"]["session_id"]
    token = _token_of(docker_client, session_id)
    await asyncio.sleep(0.2)  # the access line is written as the response goes out

    text = Path(guarded.log_path).read_text()
    assert API_KEY not in text
    assert token not in text
    entries = []
    for line in text.splitlines():
        entry = json.loads(line)  # every line is one JSON object
        assert {"time", "level", "logger", "message"} <= set(entry), line
        entries.append(entry)
    mine = [e for e in entries if e.get("trace_id") == trace_id]
    access = [e for e in mine if e["logger"] == "uvicorn.access"]
    assert len(access) == 1, mine
    assert "POST /execute" in access[0]["message"]
    assert (access[0]["worker"], access[0]["session"]) == (sb.worker_id, session_id)
    assert any(e["logger"] == "uvicorn.error" for e in entries), "uvicorn's own lines too"
    requests = [e for e in entries if e["logger"] == "uvicorn.access"]
    assert all(e.get("trace_id") for e in requests), "every request line has its trace id"
