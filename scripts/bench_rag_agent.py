#!/usr/bin/env python3
"""Benchmark the rag toolset at the agent level: an in-process agent over HTTP.

    python images/rag/make_demo_corpus.py --out /tmp/corpus.jsonl \\
        --min-passages 100000 --max-passages 100000
    python scripts/bench_rag_agent.py --corpus /tmp/corpus.jsonl

Measures, each through ``POST /call/...`` on kept-alive connections as the
server calls the agent: building the default collection (passages/s), indexing
into a session (passages/s), single-search latency, 32-query batches, and 32
concurrent searchers against one. The server adds its own ~2 ms on top.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox.agent import AgentServer


class Client:
    """One kept-alive connection to the agent."""

    def __init__(self, port: int, token: str) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, tool: str, **params: Any) -> dict[str, Any]:
        self._conn.request("POST", f"/call/{tool}", json.dumps(params), self._headers)
        body = json.loads(self._conn.getresponse().read())
        if not body["ok"]:
            raise RuntimeError(f"{tool}: {body['error']}")
        data: dict[str, Any] = body["data"]
        return data

    def close(self) -> None:
        self._conn.close()


def make_queries(corpus: Path, count: int, seed: int) -> list[str]:
    """Natural-language-ish queries: words of random passages, shuffled, plus filler."""
    rng = random.Random(seed)
    with corpus.open(encoding="utf-8") as file:
        lines = file.readlines()
    queries = []
    for line in rng.sample(lines, count):
        passage = json.loads(line)
        words = re.findall(r"[A-Za-z]{4,}", passage["text"])
        picked = rng.sample(words, min(len(words), rng.randint(3, 7)))
        queries.append("how do I " + " ".join(picked))
    return queries


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--db", help="index file (default: a fresh temporary one)")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--session-passages", type=int, default=20_000)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument(
        "--model",
        type=Path,
        help="embedding model directory (images/rag/unpack_model.py makes one): vectors are "
        "built too and dense and hybrid searches timed",
    )
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="rag-bench-")
    db = args.db or os.path.join(workdir, "index.sqlite3")
    token = secrets.token_hex(8)
    environ = {
        **os.environ,
        "SANDBOX_AGENT_TOKEN": token,
        "SANDBOX_RAG_DB": db,
        "SANDBOX_RAG_CORPUS": str(args.corpus),
    }
    if args.model is not None:
        environ["SANDBOX_RAG_MODEL"] = str(args.model)
    started = time.perf_counter()
    agent = AgentServer("127.0.0.1", 0, token=token, toolsets=("rag",), environ=environ)
    agent.start()
    client = Client(agent.port, token)
    try:
        while (status := client.call("rag.status"))["state"] == "indexing":
            time.sleep(0.2)
        build_s = time.perf_counter() - started
        if status["state"] != "ready":
            raise RuntimeError(f"default collection: {status}")
        documents = status["documents"]
        print(f"default build: {documents} passages in {build_s:.1f}s", end="")
        if status["rebuilt"]:
            print(f" = {documents / build_s:,.0f} passages/s (incl. merge)")
        else:
            print(" (not rebuilt: the index already held it)")
        print(f"index size: {client.call('rag.stats')['index_bytes'] / 1e6:.0f} MB")

        # Session indexing: passages from the corpus under new ids, 5,000 per call.
        with args.corpus.open(encoding="utf-8") as file:
            sample = [json.loads(next(file)) for _ in range(args.session_passages)]
        client.call("rag.open_session", session="bench", worker="bench")
        calls = [sample[i : i + 5000] for i in range(0, len(sample), 5000)]
        t0 = time.perf_counter()
        for number, chunk in enumerate(calls):
            docs = [{**doc, "id": f"s{number}-{doc['id']}"} for doc in chunk]
            client.call("rag.index", session="bench", documents=docs)
        index_s = time.perf_counter() - t0
        print(
            f"rag.index: {len(sample)} passages in {index_s:.2f}s = "
            f"{len(sample) / index_s:,.0f} passages/s (calls of 5,000, JSON included)"
        )

        queries = make_queries(args.corpus, args.queries, seed=7)
        for query in queries[:20]:  # warm the page cache and statement caches
            client.call("rag.search", query=query, top_k=args.top_k, session="bench")
        for collection in ("default", "all"):
            latencies = []
            for query in queries:
                t0 = time.perf_counter()
                client.call(
                    "rag.search",
                    query=query,
                    top_k=args.top_k,
                    collection=collection,
                    session="bench",
                )
                latencies.append((time.perf_counter() - t0) * 1000)
            print(
                f"rag.search ({collection}): p50 {statistics.median(latencies):.2f} ms, "
                f"p95 {percentile(latencies, 0.95):.2f} ms over {len(latencies)} queries"
            )
        for mode in ("dense", "hybrid") if args.model is not None else ():
            latencies = []
            for query in queries:
                t0 = time.perf_counter()
                client.call("rag.search", query=query, top_k=args.top_k, mode=mode)
                latencies.append((time.perf_counter() - t0) * 1000)
            print(
                f"rag.search ({mode}, default): p50 {statistics.median(latencies):.2f} ms, "
                f"p95 {percentile(latencies, 0.95):.2f} ms over {len(latencies)} queries"
            )

        batches = [queries[i : i + 32] for i in range(0, len(queries) - 31, 32)]
        latencies = []
        for batch in batches:
            t0 = time.perf_counter()
            client.call("rag.batch_search", queries=batch, top_k=args.top_k, session="bench")
            latencies.append((time.perf_counter() - t0) * 1000)
        print(
            f"rag.batch_search (32 queries): p50 {statistics.median(latencies):.1f} ms, "
            f"max {max(latencies):.1f} ms over {len(latencies)} batches"
        )

        single = _searchers(agent.port, token, queries, threads=1, top_k=args.top_k)
        many = _searchers(agent.port, token, queries, threads=32, top_k=args.top_k)
        print(
            f"1 searcher: {single[0]:.0f} queries/s, p50 {single[1]:.2f} ms; "
            f"32 concurrent searchers: {many[0]:.0f} queries/s in all, p50 {many[1]:.2f} ms "
            f"each; {len(queries)} queries per run, {os.cpu_count()} CPUs"
        )
    finally:
        client.close()
        agent.close()
    return 0


def _searchers(
    port: int, token: str, queries: list[str], *, threads: int, top_k: int
) -> tuple[float, float]:
    """Throughput (queries/s) and median latency of `threads` searchers sharing `queries`."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = max(len(queries) // threads, 8)
    barrier = threading.Barrier(threads + 1)

    def work(offset: int) -> None:
        client = Client(port, token)
        mine = [queries[(offset * per_thread + i) % len(queries)] for i in range(per_thread)]
        barrier.wait()
        own = []
        for query in mine:
            t0 = time.perf_counter()
            client.call("rag.search", query=query, top_k=top_k, session="bench")
            own.append((time.perf_counter() - t0) * 1000)
        client.close()
        with lock:
            latencies.extend(own)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    t0 = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - t0
    return len(latencies) / elapsed, statistics.median(latencies)


if __name__ == "__main__":
    raise SystemExit(main())
