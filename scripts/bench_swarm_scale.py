"""Many `bash` sessions at once over a swarm of several nodes on this machine.

`measure_scale` makes this engine a swarm manager (when it is in none), starts
``nodes - 1`` worker engines in containers with the shell image loaded (the
multi-node tests' `worker_nodes`), and runs one swarm server that holds
``sessions`` `bash` sessions open at once, created ``parallel`` at a time. It
counts every error, where the scheduler put each session, the create and
`bash:run` latencies, and the costs a paper estimate for bigger clusters needs:
memory per session container (``docker stats`` on each node), the manager
engine's and the server's CPU per create (``/proc/<pid>/stat``), the manager
engine's memory per service, and the relay's memory per open connection.
Everything it made is removed afterwards, the swarm left only if it made it.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _table, percentiles, server_at

from tests.integration.swarm_nodes_support import NAMESPACE, wait_for, worker_nodes
from tests.integration.swarm_support import manager_swarm, remove_swarm_state_of

LIMITS_ENV = {
    "SANDBOX_LIMITS__MEMORY": "96m",
    "SANDBOX_LIMITS__DISK": "64m",
    "SANDBOX_LIMITS__PIDS": "128",
    "SANDBOX_LIMITS__CPUS": "0.5",
}
"""Small limits, so that 100 sessions fit in this machine's memory many times over."""
RUNS_PER_SESSION = 3
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_SIZE = re.compile(r"([\d.]+)\s*([KMG]i?B|B)")
_BYTES = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


@dataclass
class ScaleResult:
    """What one scale run measured."""

    nodes: int
    sessions: int
    parallel: int
    errors: list[str] = field(default_factory=list)
    create_server_ms: list[float] = field(default_factory=list)
    create_client_ms: list[float] = field(default_factory=list)
    run_ms: list[float] = field(default_factory=list)
    spread: dict[str, int] = field(default_factory=dict)
    session_mem_mib: list[float] = field(default_factory=list)
    create_wall_s: float = 0.0
    engine_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    engine_rss_mib: tuple[float, float] = (0.0, 0.0)
    relay_mem_mib: tuple[float, float] = (0.0, 0.0)
    relay_connections: int = 0


def _pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _server_pid(port: int) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in argv and str(port).encode() in argv:
                return int(entry.name)
    raise RuntimeError(f"no server process on port {port}")


def _start_time(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _mib(text: str) -> float:
    match = _SIZE.search(text)
    return float(match.group(1)) * _BYTES[match.group(2)] / 1024**2 if match else 0.0


def _relay(client: docker.DockerClient, server_id: str) -> Any:
    (relay,) = client.containers.list(
        filters={"label": ["sandbox.relay", f"sandbox.server={server_id}"]}
    )
    return relay


def _relay_mib(relay: Any) -> float:
    return float(relay.stats(stream=False)["memory_stats"]["usage"]) / 1024**2


def _relayed_connections(relay: Any) -> int:
    """Connections the relay copies: each is two established sockets, in and out."""
    listing = relay.exec_run(["cat", "/proc/net/tcp", "/proc/net/tcp6"]).output.decode()
    established = sum(1 for line in listing.splitlines() if line.split()[3:4] == ["01"])
    return established // 2


def measure_scale(nodes: int, sessions: int, parallel: int) -> ScaleResult:
    """Hold `sessions` bash sessions over a swarm of `nodes` nodes; see the module."""
    result = ScaleResult(nodes, sessions, parallel)
    client = docker.from_env(timeout=300)
    engine_pid = min(_pids_named("dockerd"), key=_start_time)  # not a node's, started later
    server_id = f"bench-scale-{secrets.token_hex(3)}"
    shell = f"{NAMESPACE}/shell:latest"
    try:
        with manager_swarm(client), worker_nodes(client, nodes - 1, [shell]) as workers:
            names = {str(client.info()["Swarm"]["NodeID"]): "manager"}
            names |= {node.node_id: str(node.container.name) for node in workers}

            def all_ready() -> bool:
                states = [n.attrs["Status"]["State"] for n in client.nodes.list()]
                return states.count("ready") >= nodes

            wait_for(f"{nodes} ready nodes", all_ready, 60)
            env = {**LIMITS_ENV, "SANDBOX_RUNTIME": "swarm", "SANDBOX_SERVER_ID": server_id}
            try:
                with server_at(None, env) as url:
                    _drive(client, url, server_id, names, workers, result, engine_pid)
            finally:
                remove_swarm_state_of(client, server_id, wait=60)
    finally:
        client.close()
    return result


def _drive(
    client: docker.DockerClient,
    url: str,
    server_id: str,
    names: dict[str, str],
    workers: list[Any],
    result: ScaleResult,
    engine_pid: int,
) -> None:
    server_pid = _server_pid(int(url.rsplit(":", 1)[1]))
    ids = [f"scale-{i:03d}" for i in range(result.sessions)]
    with httpx.Client(base_url=url, timeout=180) as http:

        def create(worker_id: str) -> None:
            started = time.perf_counter()
            try:
                answer = http.post(
                    "/session/create", json={"worker_id": worker_id, "resource_type": "bash"}
                ).json()
            except httpx.HTTPError as error:
                result.errors.append(f"create {worker_id}: {error!r}")
                return
            if answer["code"] != 0:
                result.errors.append(f"create {worker_id}: {answer['code']} {answer['message']}")
                return
            result.create_client_ms.append((time.perf_counter() - started) * 1000)
            result.create_server_ms.append(float(answer["meta"]["execution_time_ms"]))

        def run(worker_id: str) -> None:
            for _ in range(RUNS_PER_SESSION):
                started = time.perf_counter()
                try:
                    answer = http.post(
                        "/execute",
                        json={
                            "worker_id": worker_id,
                            "action": "bash:run",
                            "params": {"command": "true"},
                        },
                    ).json()
                except httpx.HTTPError as error:
                    result.errors.append(f"run {worker_id}: {error!r}")
                    continue
                if answer["code"] != 0:
                    result.errors.append(f"run {worker_id}: {answer['code']} {answer['message']}")
                    continue
                result.run_ms.append((time.perf_counter() - started) * 1000)

        create(ids[0])  # the server starts its relay with its first session
        relay = _relay(client, server_id)
        relay_before = _relay_mib(relay)
        rss_before = _rss_mib(engine_pid)
        cpu_before = (_cpu_s(engine_pid), _cpu_s(server_pid))
        started = time.monotonic()
        with ThreadPoolExecutor(result.parallel) as pool:
            list(pool.map(create, ids[1:]))
        result.create_wall_s = time.monotonic() - started
        result.engine_cpu_s = _cpu_s(engine_pid) - cpu_before[0]
        result.server_cpu_s = _cpu_s(server_pid) - cpu_before[1]
        with ThreadPoolExecutor(result.parallel) as pool:
            list(pool.map(run, ids))  # every session open at once
        result.relay_connections = _relayed_connections(relay)
        result.relay_mem_mib = (relay_before, _relay_mib(relay))
        result.engine_rss_mib = (rss_before, _rss_mib(engine_pid))
        for service in client.services.list(filters={"label": f"sandbox.server={server_id}"}):
            for task in service.tasks(filters={"desired-state": "running"}):
                node = names.get(str(task["NodeID"]), str(task["NodeID"]))
                result.spread[node] = result.spread.get(node, 0) + 1
        stats = (
            f"docker stats --no-stream --format '{{{{.MemUsage}}}}' "
            f"$(docker ps -q --filter label=sandbox.server={server_id})"
        )
        for worker in workers:
            lines = worker.container.exec_run(["sh", "-c", stats]).output.decode()
            result.session_mem_mib += [_mib(line.split("/")[0]) for line in lines.splitlines()]
        for container in client.containers.list(filters={"label": f"sandbox.server={server_id}"}):
            if "sandbox.relay" not in container.labels:
                usage = container.stats(stream=False)["memory_stats"].get("usage", 0)
                result.session_mem_mib.append(float(usage) / 1024**2)
        with ThreadPoolExecutor(result.parallel) as pool:
            list(pool.map(lambda w: http.post("/session/destroy", json={"worker_id": w}), ids))


def scale_report(result: ScaleResult) -> str:
    """The "swarm-scale" section of docs/benchmarks.md."""
    spread = ", ".join(f"{node}: {count}" for node, count in sorted(result.spread.items()))
    created = len(result.create_server_ms)
    rows = [
        ("`session/create` of `bash`, server-side", percentiles(result.create_server_ms)),
        ("`session/create` of `bash`, client to envelope", percentiles(result.create_client_ms)),
        ("`bash:run` of `true`, all sessions open", percentiles(result.run_ms)),
    ]
    mem = percentiles(result.session_mem_mib) if result.session_mem_mib else None
    relay_growth = result.relay_mem_mib[1] - result.relay_mem_mib[0]
    lines = [
        f"## Swarm: {result.sessions} `bash` sessions over {result.nodes} nodes (issue 15)",
        "",
        f"{result.nodes} nodes on this one machine: this engine (manager, also a node) and",
        f"{result.nodes - 1} Docker engines in containers joined as workers; one swarm server",
        f"created {result.sessions} `bash` sessions, {result.parallel} at a time, kept them all",
        f"open and ran `true` {RUNS_PER_SESSION} times in each (limits: "
        + ", ".join(f"{k.rsplit('__', 1)[1].lower()} {v}" for k, v in LIMITS_ENV.items())
        + ").",
        "",
        f"Errors: {len(result.errors)}"
        + (f" ({'; '.join(result.errors[:3])})" if result.errors else "")
        + f". Sessions created: {created}/{result.sessions}. Per node: {spread}.",
        "",
        *_table(rows),
        "",
        f"After the first, {created - 1} creates took {result.create_wall_s:.1f} s of wall time;",
        f"the manager's engine (dockerd) used {result.engine_cpu_s:.1f} s of CPU over them "
        f"({result.engine_cpu_s / max(created - 1, 1) * 1000:.0f} ms per create) and the server",
        f"{result.server_cpu_s:.1f} s ({result.server_cpu_s / max(created - 1, 1) * 1000:.0f} ms "
        "per create). The manager engine's RSS went",
        f"from {result.engine_rss_mib[0]:.0f} to {result.engine_rss_mib[1]:.0f} MiB. "
        f"The relay held {result.relay_connections} connections and grew from "
        f"{result.relay_mem_mib[0]:.1f} to {result.relay_mem_mib[1]:.1f} MiB "
        f"({relay_growth * 1024 / max(result.relay_connections, 1):.0f} KiB per connection).",
    ]
    if mem:
        lines += [
            f"Memory of one idle `bash` session container (docker stats, n={mem['n']}): "
            f"p50 {mem['p50']:.1f} MiB, p90 {mem['p90']:.1f} MiB, mean {mem['mean']:.1f} MiB.",
        ]
    return "\n".join(lines)
