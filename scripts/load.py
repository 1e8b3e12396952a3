#!/usr/bin/env python3
"""Load test: N workers x M tool calls at once, through a real server.

    python scripts/load.py                                    # 64 workers x 100 bash:run
    python scripts/load.py --workers 32 --calls 50 --resources bash,code,rag
    python scripts/load.py --url http://127.0.0.1:18890 --no-write

Every worker is one `Sandbox` client (its own connection) in one asyncio loop.
Each opens a session of every resource type asked for, waits for the others, then
makes its calls as fast as the answers come (closed loop), cycling through the
resource types, and checks every answer: an envelope code other than 0, a wrong
output or an exception from the client is an error. Clients never retry here, so
a transport failure is counted, not hidden. The report gives errors by code and
latency percentiles per tool, and is written to the ``load`` section of
docs/benchmarks.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import secrets
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import percentiles, server_at, write_section

from sandbox import Sandbox

RAG_QUERIES = ("json processor", "compress files", "text editor", "network tool", "python")


@dataclass(frozen=True)
class Probe:
    """One resource type's call: its tool, its params, and a check of its data."""

    tool: str
    params: Callable[[int], dict[str, Any]]
    check: Callable[[int, dict[str, Any]], bool]


PROBES: dict[str, Probe] = {
    "bash": Probe(
        "bash:run",
        lambda n: {"command": f"echo {n}"},
        lambda n, data: data.get("stdout") == f"{n}\n",
    ),
    "code": Probe(
        "code:execute",
        lambda n: {"code": f"print({n} * 2)", "language": "python"},
        lambda n, data: data.get("stdout") == f"{n * 2}\n",
    ),
    "rag": Probe(
        "rag:search",
        lambda n: {"query": RAG_QUERIES[n % len(RAG_QUERIES)], "top_k": 3},
        lambda n, data: isinstance(data.get("results"), list),
    ),
    "vm": Probe(
        "vm:cursor_position",
        lambda n: {},
        lambda n, data: "x" in data and "y" in data,
    ),
}


class Gate:
    """Opens once `parties` workers arrived (asyncio.Barrier needs Python 3.11)."""

    def __init__(self, parties: int) -> None:
        self._waiting = parties
        self._open = asyncio.Event()

    def arrive(self) -> None:
        self._waiting -= 1
        if self._waiting <= 0:
            self._open.set()

    async def wait(self) -> None:
        await self._open.wait()


@dataclass
class Tally:
    """Everything the workers measured."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)

    def record(self, tool: str, started: float, error: str | None, detail: str = "") -> None:
        self.latencies.setdefault(tool, []).append((time.perf_counter() - started) * 1000)
        if error is not None:
            self.errors[f"{tool} {error}"] += 1
            if len(self.first_errors) < 5:
                self.first_errors.append(f"{tool} {error}: {detail[:300]}")


async def _call(
    sb: Sandbox,
    tally: Tally,
    tool: str,
    params: dict[str, Any],
    check: Callable[[dict[str, Any]], bool],
) -> None:
    started = time.perf_counter()
    try:
        envelope = await sb.execute(tool, params)
    except Exception as exc:  # a load test counts every failure, whatever it is
        tally.record(tool, started, f"exception:{type(exc).__name__}", str(exc))
        return
    if envelope["code"] != 0:
        tally.record(tool, started, f"code:{envelope['code']}", envelope["message"])
    elif not check(envelope["data"]):
        tally.record(tool, started, "wrong-output", repr(envelope["data"]))
    else:
        tally.record(tool, started, None)


async def _worker(
    url: str,
    index: int,
    run_id: str,
    args: argparse.Namespace,
    resources: list[str],
    ready: Gate,
    tally: Tally,
    wall: list[float],
) -> None:
    worker_id = f"load-{run_id}-{index}"
    arrived = False
    sb = Sandbox(server_url=url, worker_id=worker_id, timeout=args.timeout, retry_count=0)
    try:
        async with sb:
            for resource in resources:
                started = time.perf_counter()
                try:
                    envelope = await sb.client.create_session(resource)
                    error = None if envelope["code"] == 0 else f"code:{envelope['code']}"
                    detail = envelope["message"]
                except Exception as exc:
                    error, detail = f"exception:{type(exc).__name__}", str(exc)
                tally.record(f"session/create {resource}", started, error, detail)
            arrived = True
            ready.arrive()
            await ready.wait()
            started = time.perf_counter()
            for n in range(args.calls):
                probe = PROBES[resources[n % len(resources)]]
                value = index * 100_000 + n
                await _call(
                    sb,
                    tally,
                    probe.tool,
                    probe.params(value),
                    functools.partial(probe.check, value),
                )
            wall.append(time.perf_counter() - started)
            await sb.client.disconnect()
    except Exception as exc:  # counted, so one broken worker does not end the run
        tally.record("worker", time.perf_counter(), f"exception:{type(exc).__name__}", str(exc))
    finally:
        if not arrived:  # never leave the others waiting for a worker that failed
            ready.arrive()


async def run_load(url: str, args: argparse.Namespace, resources: list[str]) -> tuple[Tally, float]:
    """Run every worker; returns the tally and the wall time of the call phase."""
    if "rag" in resources:
        async with Sandbox(server_url=url, worker_id="load-warmup", timeout=600) as sb:
            warm = await sb.warmup(["rag"], wait=True)
            if warm["code"] != 0:
                raise SystemExit(f"rag warmup failed: {warm['message']}")
    tally = Tally()
    wall: list[float] = []
    ready = Gate(args.workers)
    run_id = secrets.token_hex(2)
    await asyncio.gather(
        *(
            _worker(url, index, run_id, args, resources, ready, tally, wall)
            for index in range(args.workers)
        )
    )
    return tally, max(wall) if wall else 0.0


def report(
    tally: Tally, wall_s: float, args: argparse.Namespace, resources: list[str]
) -> tuple[str, bool]:
    """The markdown section and whether the run had no error at all."""
    rows = [
        "| call | n | errors | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for tool in sorted(tally.latencies, key=lambda t: (t.startswith("session/"), t)):
        samples = tally.latencies[tool]
        stats = percentiles(samples)
        errors = sum(count for key, count in tally.errors.items() if key.startswith(f"{tool} "))
        rows.append(
            f"| `{tool}` | {stats['n']:.0f} | {errors} | {stats['p50']:.1f} | "
            f"{stats['p90']:.1f} | {stats['p99']:.1f} | {max(samples):.1f} |"
        )
    calls = args.workers * args.calls
    total_errors = sum(tally.errors.values())
    by_code: Counter[str] = Counter()
    for key, count in tally.errors.items():
        by_code[key.split(" ")[-1]] += count
    errors_line = (
        "none"
        if not by_code
        else ", ".join(f"{code}: {count}" for code, count in sorted(by_code.items()))
    )
    lines = [
        "## Load: concurrent workers",
        "",
        f"{args.workers} workers x {args.calls} calls over {', '.join(resources)} "
        f"({calls:,} tool calls), each worker one client and one session per resource "
        "type, closed loop (the next call when the answer came), clients without retries.",
        "",
        *rows,
        "",
        f"Errors: **{total_errors}** ({errors_line}). Calls took {wall_s:.1f} s: "
        f"**{calls / wall_s:,.0f} calls/s**."
        if wall_s
        else f"Errors: **{total_errors}**.",
        "The load generator runs on the same cores as the server and the containers, so "
        "latency here includes waiting for CPU: compare it with the single-caller numbers "
        "of the core section. The `session/create` rows are cold starts (no warm pool), "
        f"{args.workers} per resource type asked for at the same moment.",
    ]
    if tally.first_errors:
        lines += ["", "First errors:", "", *(f"- `{error}`" for error in tally.first_errors)]
    return "\n".join(lines), total_errors == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="load this running server instead of starting one")
    parser.add_argument("--workers", type=int, default=64, help="concurrent workers")
    parser.add_argument("--calls", type=int, default=100, help="tool calls per worker")
    parser.add_argument(
        "--resources",
        default="bash",
        help=f"comma-separated resource types, of: {', '.join(PROBES)} (default bash)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="client HTTP timeout, s")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    resources = [name.strip() for name in args.resources.split(",") if name.strip()]
    unknown = sorted(set(resources) - set(PROBES))
    if unknown or not resources:
        parser.error(f"unknown resource type(s) {', '.join(unknown)}; known: {', '.join(PROBES)}")
    if args.workers < 1 or args.calls < 1:
        parser.error("--workers and --calls must be at least 1")
    command = "python scripts/load.py " + shlex.join(sys.argv[1:])
    # 64 sessions at the default 512 pids each would pass the pid budget on a host
    # whose pid_max is 32768 (the budget is half of it); the probes need a handful
    # of processes, so a server started here gives each session 128.
    with server_at(args.url, {"SANDBOX_LIMITS__PIDS": "128"}) as url:
        tally, wall_s = asyncio.run(run_load(url, args, resources))
    body, clean = report(tally, wall_s, args, resources)
    print(body)
    if not args.no_write:
        write_section("load", body, command.strip())
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
