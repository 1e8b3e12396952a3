"""``sandbox warmup``: ask a running server to warm up, and show its progress.

The server does the work (image builds, the rag index, pool fills); this polls
``/warmup/status`` and draws one line per resource type until everything asked
for is ready or something failed.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from .client import HTTPClientConfig, HTTPServiceClient
from .errors import error_from_envelope

_BAR_WIDTH = 20


@dataclass(frozen=True)
class Progress:
    """What a status report says about the resource types asked for."""

    lines: list[str]
    done: bool
    errors: list[str]


def _bar(done: float, total: float) -> str:
    filled = 0 if total <= 0 else min(_BAR_WIDTH, round(_BAR_WIDTH * done / total))
    return "[" + "#" * filled + "." * (_BAR_WIDTH - filled) + "]"


def describe(status: dict[str, Any], resources: list[str]) -> Progress:
    """One line per resource type, whether all is ready, and what failed."""
    lines, errors, done = [], [], True
    for name in resources:
        entry = status.get(name) or {}
        parts = [f"{name:<6}"]
        image = entry.get("state", "unknown")
        if image == "building":
            parts.append(f"image building: {entry.get('progress', '')}"[:60])
            done = False
        elif image == "failed":
            errors.append(f"{name}: image build failed: {entry.get('error')}")
            parts.append("image FAILED")
        else:
            parts.append(f"image {image}")
            done = done and image == "ready"
        service = entry.get("service")
        if service:
            state = service.get("state")
            progress = service.get("progress") or {}
            if state == "indexing":
                total = float(progress.get("total") or 0)
                parts.append(f"index {_bar(float(progress.get('done') or 0), total)}")
            else:
                parts.append(f"service {state}")
            if state == "failed":
                errors.append(f"{name}: service failed: {service.get('error')}")
            done = done and state in ("ready", "empty")
        for pool in entry.get("pools") or []:
            ready, target = int(pool["ready"]), int(pool["target"])
            parts.append(f"pool {_bar(ready, target)} {ready}/{target}")
            if pool.get("last_error") and ready < target:
                parts.append(f"({pool['last_error']})")
            done = done and ready >= target
        lines.append("  ".join(parts))
    return Progress(lines, done and not errors, errors)


def run(
    url: str,
    resources: list[str],
    pool_size: int | None,
    *,
    api_key: str | None = None,
    timeout_s: float = 1800.0,
    out: TextIO = sys.stdout,
) -> int:
    """Start a warmup on the server at `url` and draw its progress; the exit status."""
    client = HTTPServiceClient(config=HTTPClientConfig(base_url=url, api_key=api_key))
    try:
        started = client.warmup_sync(resources or None, pool_size=pool_size)
        if started["code"] != 0:
            raise error_from_envelope(started)
        names = resources or sorted(started["data"]["resources"])
        deadline = time.monotonic() + timeout_s
        shown: list[str] = []
        while True:
            envelope = client.get_warmup_status_sync()
            if envelope["code"] != 0:
                raise error_from_envelope(envelope)
            progress = describe(envelope["data"]["resources"], names)
            if progress.lines != shown:
                _draw(out, progress.lines, len(shown))
                shown = progress.lines
            if progress.errors:
                for error in progress.errors:
                    print(f"sandbox: {error}", file=sys.stderr)
                return 1
            if progress.done:
                return 0
            if time.monotonic() > deadline:
                print(f"sandbox: warmup not done after {timeout_s:g}s", file=sys.stderr)
                return 1
            time.sleep(0.5)
    finally:
        client.close_sync()


def _draw(out: TextIO, lines: list[str], previous: int) -> None:
    """Redraw in place on a terminal; print each new state on its own otherwise."""
    if out.isatty() and previous:
        out.write(f"\x1b[{previous}F")  # back to the first line drawn last time
    for line in lines:
        out.write(line + ("\x1b[K" if out.isatty() else "") + "\n")
    out.flush()
