#!/usr/bin/env python3
"""The swarm runtime against the docker runtime, in one run on this machine.

    python scripts/bench_swarm.py                # writes the "swarm" section of docs/benchmarks.md
    python scripts/bench_swarm.py --calls 200 --creates 8 --no-write
    python scripts/bench_swarm.py --nodes 3 --sessions 100   # the "swarm-scale" section

Two servers run side by side, one per runtime (the swarm one needs this engine to
be a swarm manager: `docker swarm init`), and every measurement alternates
between them, so the 2 shared cores' noise falls on both alike. Measured:
`bash:run` of `true` through the server (client to envelope), a cold `bash`
`session/create` and a claim from a warm `bash` pool (both server-side, the
envelope's ``execution_time_ms``), and the destroy of each cold session (client to
envelope).

With ``--nodes N`` it measures scale instead: N-1 more engines on this machine
(Docker engines in containers, `tests/integration/swarm_nodes_support.py`, as
the multi-node tests start them) join this engine's swarm, one swarm server
holds ``--sessions`` `bash` sessions open at once (small limits), and the run
counts errors, where the sessions were placed, the create and `bash:run`
latencies, memory per session, the manager's CPU per create and the relay's
memory per connection (see `scale`).
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import _table, percentiles, server_at, write_section
from bench_swarm_scale import measure_scale, scale_report

from sandbox import Sandbox

RUNTIMES = ("docker", "swarm")
POOL_ENV = {"SANDBOX_LIMITS__PIDS": "128"}
SETTLE_S = 1.0
"""After a pool is full again, before a claim: the engine finishes the last destroy."""


def measure(urls: dict[str, str], calls: int, creates: int) -> dict[str, dict[str, list[float]]]:
    samples: dict[str, dict[str, list[float]]] = {
        runtime: {"run": [], "cold": [], "destroy": [], "claim": []} for runtime in RUNTIMES
    }
    with contextlib.ExitStack() as stack:
        clients = {
            runtime: stack.enter_context(
                Sandbox(server_url=url, worker_id=f"bench-{runtime}-{secrets.token_hex(3)}")
            )
            for runtime, url in urls.items()
        }
        for sb in clients.values():
            assert sb.client.create_session_sync("bash")["code"] == 0
            for _ in range(20):  # warm the connections up
                sb.execute_sync("bash:run", {"command": "true"})
        for _ in range(calls // 10):
            for runtime, sb in clients.items():
                for _ in range(10):
                    started = time.perf_counter()
                    envelope = sb.execute_sync("bash:run", {"command": "true"})
                    samples[runtime]["run"].append((time.perf_counter() - started) * 1000)
                    assert envelope["code"] == 0, envelope
        for sb in clients.values():
            sb.destroy_session_sync("bash")
        for _ in range(creates):
            for runtime, sb in clients.items():
                envelope = sb.client.create_session_sync("bash")
                assert envelope["code"] == 0, envelope
                samples[runtime]["cold"].append(float(envelope["meta"]["execution_time_ms"]))
                started = time.perf_counter()
                assert sb.destroy_session_sync("bash")["status"] == "success"
                samples[runtime]["destroy"].append((time.perf_counter() - started) * 1000)
        for sb in clients.values():
            ready = sb.warmup_sync(["bash"], pool_size=creates, wait=True)
            assert ready["code"] == 0, ready
        for _ in range(creates):
            for runtime, sb in clients.items():
                # A warm claim: from a full pool, its refills and the last destroy done.
                _wait_pool_full(sb, creates)
                envelope = sb.client.create_session_sync("bash")
                assert envelope["code"] == 0, envelope
                samples[runtime]["claim"].append(float(envelope["meta"]["execution_time_ms"]))
                sb.destroy_session_sync("bash")
        for sb in clients.values():
            sb.warmup_sync(["bash"], pool_size=0)
    return samples


def _wait_pool_full(sb: Sandbox, size: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (pool,) = sb.get_warmup_status_sync()["data"]["resources"]["bash"]["pools"]
        if pool["ready"] >= size and not pool.get("starting"):
            break
        time.sleep(0.1)
    time.sleep(SETTLE_S)


def report(samples: dict[str, dict[str, list[float]]]) -> str:
    stats = {
        runtime: {kind: percentiles(values) for kind, values in kinds.items()}
        for runtime, kinds in samples.items()
    }
    labels = {
        "run": "`bash:run` of `true` through the server (client to envelope)",
        "cold": "cold `session/create` of `bash` (server-side)",
        "destroy": "`session/destroy` of that cold `bash` (client to envelope)",
        "claim": "claim from a full `bash` pool (server-side)",
    }
    rows = [
        (f"{runtime}: {labels[kind]}", stats[runtime][kind])
        for kind in ("run", "cold", "destroy", "claim")
        for runtime in RUNTIMES
    ]
    cold = stats["swarm"]["cold"]["p50"] / stats["docker"]["cold"]["p50"]
    run = stats["swarm"]["run"]["p50"] / stats["docker"]["run"]["p50"]
    claim = stats["swarm"]["claim"]["p50"]
    goals = [
        (f"swarm cold create p50 <= 1.5x docker's (measured {cold:.2f}x)", cold <= 1.5),
        (f"swarm warm claim p50 <= 25 ms (measured {claim:.1f} ms)", claim <= 25),
        (f"swarm `bash:run` p50 <= 1.5x docker's (measured {run:.2f}x)", run <= 1.5),
    ]
    verdicts = "; ".join(f"{text}: {'met' if ok else 'NOT met'}" for text, ok in goals)
    return "\n".join(
        [
            "## Swarm runtime against the docker runtime (issue 15)",
            "",
            "Both servers on this machine at once, measurements alternating between them; the",
            "swarm is this engine alone (a single-node swarm), its agents reached over the",
            "overlay network through the relay (one more hop than a Unix socket). A claim is",
            "timed from a full pool, once its refill and the last destroy are done (back to",
            "back, a swarm claim also competes with the service starts and removals the",
            "claims themselves cause, on the same 2 cores).",
            "",
            *_table(rows),
            "",
            f"Goals: {verdicts}.",
            "",
            "Where a swarm cold start goes (task states polled every 5 ms, one start at a",
            "time on this machine): the task is assigned to the node at ~65 ms (Swarm's",
            "scheduler batches its commits), starting at ~200-300 ms (its dispatcher batches",
            "assignments) and running at ~0.5-0.6 s: the node creates the container and",
            "attaches it to the session's overlay, ~0.3 s of endpoint work that a",
            "`network_mode: none` container on one engine does not have. Its agent answers",
            "~50 ms later. The overlay is a spare the relay joined after an earlier create",
            "(that join, ~0.6 s, was on the create's path before); what remains is Swarm's",
            "own hand-off and the endpoint, which no setting of the server's shortens. The",
            "spare's join runs on the same 2 shared cores between creates, and the ratio",
            'moves with the machine\'s load (see "Swarm: spare overlays" below).',
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="timed tool calls per runtime")
    parser.add_argument("--creates", type=int, default=12, help="cold creates and claims each")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--nodes", type=int, default=0, help="scale mode: nodes in all")
    parser.add_argument("--sessions", type=int, default=100, help="scale mode: sessions")
    parser.add_argument("--parallel", type=int, default=8, help="scale mode: creates at once")
    args = parser.parse_args()
    command = "python scripts/bench_swarm.py " + shlex.join(sys.argv[1:])
    if args.nodes:
        result = measure_scale(args.nodes, args.sessions, args.parallel)
        body = scale_report(result)
        print(body)
        if not args.no_write:
            write_section("swarm-scale", body, command.strip())
        return 0 if not result.errors else 1
    with (
        server_at(None, {**POOL_ENV, "SANDBOX_RUNTIME": "docker"}) as docker_url,
        server_at(None, {**POOL_ENV, "SANDBOX_RUNTIME": "swarm"}) as swarm_url,
    ):
        samples = measure({"docker": docker_url, "swarm": swarm_url}, args.calls, args.creates)
    body = report(samples)
    print(body)
    if not args.no_write:
        write_section("swarm", body, command.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
