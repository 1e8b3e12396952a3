#!/usr/bin/env python3
"""What one tool call costs on its way through the server: latency and the server's CPU.

On a shared 2-core machine a latency moves with whatever else runs, while the
CPU time the server process spends per call (``process_cpu_seconds_total`` of
its ``/metrics``, read around each block of calls) barely does: so this reports
both. Given several servers (``--url`` more than once, e.g. two builds), it
calls them in turns, block by block, so that they share the machine's moods.

    python scripts/bench_call_path.py                     # a fresh server of this checkout
    python scripts/bench_call_path.py --url http://127.0.0.1:8791 --url http://127.0.0.1:8792

The calls: ``bash:run`` of ``true``, ``rag:stats`` (the service only reads its
file sizes and latency counters) and a bm25 ``rag:search`` over the benchmark
corpus.
"""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import RAG_CORPUS, _queries, rag_corpus, server_at, write_section

from sandbox import Sandbox

_CPU = re.compile(r"^process_cpu_seconds_total (\S+)$", re.MULTILINE)


def server_cpu_s(url: str) -> float:
    """The server process's CPU seconds so far (user and system)."""
    found = _CPU.search(httpx.get(f"{url}/metrics", timeout=10).text)
    if found is None:
        raise SystemExit(f"{url}/metrics has no process_cpu_seconds_total")
    return float(found.group(1))


def measure(urls: list[str], rounds: int, calls: int, corpus: Path) -> dict[tuple[str, str], Any]:
    """Per (url, call): latencies (ms) and server CPU per call (ms)."""
    queries = _queries(corpus, rounds * calls)
    cases: dict[str, Callable[[int], dict[str, Any]]] = {
        "bash:run": lambda n: {"command": "true"},
        "rag:stats": lambda n: {},
        "rag:search": lambda n: {"query": queries[n], "top_k": 5, "mode": "bm25"},
    }
    worker = f"bench-path-{secrets.token_hex(3)}"
    results: dict[tuple[str, str], Any] = {
        (url, case): {"ms": [], "cpu_s": 0.0} for url in urls for case in cases
    }
    with ExitStack() as stack:
        sandboxes = [stack.enter_context(Sandbox(server_url=url, worker_id=worker)) for url in urls]
        for sb in sandboxes:
            assert sb.warmup_sync(["rag"], wait=True)["code"] == 0
            for case, params in cases.items():
                for n in range(20):  # sessions open, connections and caches warm
                    sb.execute_sync(case, params(n))
        for round_ in range(rounds):
            for url, sb in zip(urls, sandboxes, strict=True):
                for case, params in cases.items():
                    result = results[(url, case)]
                    before = server_cpu_s(url)
                    for n in range(round_ * calls, (round_ + 1) * calls):
                        started = time.perf_counter()
                        envelope = sb.execute_sync(case, params(n))
                        result["ms"].append((time.perf_counter() - started) * 1000)
                        assert envelope["code"] == 0, envelope
                    result["cpu_s"] += server_cpu_s(url) - before
        for sb in sandboxes:
            sb.destroy_session_sync("bash")
            sb.destroy_session_sync("rag")
    return results


def report(urls: list[str], labels: list[str], results: dict[tuple[str, str], Any]) -> str:
    """A table: per call, each server's p50 latency and CPU per call."""
    head = "| call | " + " | ".join(
        f"{label}: p50 ms | {label}: server CPU ms/call" for label in labels
    )
    lines = [head + " |", "|---|" + "---|---|" * len(labels)]
    for case in ("bash:run", "rag:stats", "rag:search"):
        cells = []
        for url in urls:
            result = results[(url, case)]
            cells.append(f"{statistics.median(result['ms']):.2f}")
            cells.append(f"{result['cpu_s'] * 1000 / len(result['ms']):.2f}")
        lines.append(f"| `{case}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", action="append", help="a running server (repeat to compare)")
    parser.add_argument("--label", action="append", help="a name for each --url, in order")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=100, help="calls per block")
    parser.add_argument("--rag-corpus", type=Path, default=RAG_CORPUS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    corpus = rag_corpus(args.rag_corpus)
    with ExitStack() as stack:
        env = {"SANDBOX_RAG__CORPUS": str(corpus)}
        urls = args.url or [stack.enter_context(server_at(None, env))]
        labels = args.label or [f"server {n + 1}" for n in range(len(urls))]
        if len(labels) != len(urls):
            raise SystemExit("give one --label per --url")
        results = measure(urls, args.rounds, args.calls, corpus)
    body = "\n".join(
        [
            "## The call path: latency and server CPU per call",
            "",
            report(urls, labels, results),
            "",
            f"{args.rounds} rounds of {args.calls} calls of each kind per server, servers "
            "in turns. CPU: the server process's `process_cpu_seconds_total` around each "
            "block (the agents' and the client's CPU are not in it).",
        ]
    )
    print(body)
    if not args.no_write:
        write_section("call-path", body, "python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
