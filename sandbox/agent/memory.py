"""How many times the kernel's OOM killer struck in this container.

A command that outgrows the container's memory limit is killed by the kernel
(SIGKILL, exit status 137) while the shell and the agent live on; comparing the
cgroup's OOM-kill counter before and after a command tells that this, and not
some other SIGKILL, is what ended it.
"""

from __future__ import annotations

import os
from typing import Any

_COUNTERS = (
    "/sys/fs/cgroup/memory.events",  # cgroup v2
    "/sys/fs/cgroup/memory/memory.oom_control",  # cgroup v1
)
_LIMITS = (
    "/sys/fs/cgroup/memory.max",
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
)
DISK_QUOTA_ENV = "SANDBOX_AGENT_DISK_BYTES"
"""The session's disk quota: its tmpfs directories count in the memory cgroup, so
the server adds the quota to the limit, and the OOM message says so."""


class OomWatch:
    """Reads the container's OOM-kill counter (None where the kernel keeps none)."""

    def __init__(self, counters: tuple[str, ...] = _COUNTERS) -> None:
        self._path = next((path for path in counters if os.path.exists(path)), None)

    def count(self) -> int | None:
        """OOM kills in this container so far."""
        if self._path is None:
            return None
        try:
            with open(self._path, encoding="ascii") as file:
                for line in file:
                    name, _, value = line.partition(" ")
                    if name == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            return None
        return None

    def mark(self, before: int | None, data: dict[str, Any]) -> dict[str, Any]:
        """Add ``oom_killed`` to a command's result, and say so in its stderr."""
        after = self.count()
        killed = before is not None and after is not None and after > before
        data["oom_killed"] = killed
        if killed:
            limit = _memory_limit()
            what = f"the container's memory limit ({limit})" if limit else "the memory limit"
            note = f"[sandbox] killed by the kernel for exceeding {what} (OOM)\n"
            stderr = str(data.get("stderr") or "")
            data["stderr"] = stderr + ("" if not stderr or stderr.endswith("\n") else "\n") + note
        return data


def _memory_limit() -> str | None:
    for path in _LIMITS:
        try:
            with open(path, encoding="ascii") as file:
                raw = file.read().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:
            limit = _size(int(raw))
            disk = os.environ.get(DISK_QUOTA_ENV, "")
            if disk.isdigit() and 0 < int(disk) < int(raw):
                return f"{limit}: {_size(int(raw) - int(disk))} + the {_size(int(disk))} disk quota"
            return limit
    return None


def _size(size: int) -> str:
    mib = size / (1 << 20)
    return f"{mib / 1024:g}g" if mib >= 1024 else f"{mib:g}m"
