"""Finding and killing the processes a command left behind, via /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping

TOKEN_ENV = "SANDBOX_AGENT_TOKEN"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Linux only, like /proc; elsewhere (a developer's Mac) there is no tree to walk anyway.
_BOOT_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without the agent's token, for every process the agent starts."""
    return {key: value for key, value in environ.items() if key != TOKEN_ENV}


def boot_ticks() -> int:
    """Now, in the clock ticks since boot that /proc gives process start times in."""
    return int(time.clock_gettime(_BOOT_CLOCK) * _CLOCK_TICKS)


def _stat(pid: int) -> tuple[int, int, int] | None:
    """The parent pid, process group and start time of `pid`, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read()
    except OSError:
        return None
    # The command name in parentheses may itself hold spaces and parentheses.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return int(fields[1]), int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None


def process_tree(root: int, *, started_since: int | None = None) -> set[int]:
    """Every live descendant of `root`, plus every other member of its process group.

    The group catches orphans: a command's background job whose parent exited has
    been reparented away from `root` but still sits in the shell's group.

    Args:
        root: The process whose descendants are wanted (not itself included).
        started_since: Only processes started at or after this `boot_ticks` time.
    """
    children: dict[int, list[int]] = {}
    group: set[int] = set()
    start_times: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return set()
    for entry in entries:
        if not entry.isdigit():
            continue
        pid = int(entry)
        info = _stat(pid)
        if info is None:
            continue
        ppid, pgrp, start_time = info
        children.setdefault(ppid, []).append(pid)
        start_times[pid] = start_time
        if pgrp == root:
            group.add(pid)
    found: set[int] = set()
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), ()):
            if child not in found:
                found.add(child)
                pending.append(child)
    found |= group
    found.discard(root)
    if started_since is not None:
        found = {pid for pid in found if start_times[pid] >= started_since}
    return found


def kill_tree(root: int, *, started_since: int | None = None, rounds: int = 5) -> None:
    """SIGKILL the processes `process_tree` finds, leaving `root` alive.

    Repeats while processes remain, since one may fork between the scan and the kill.
    """
    for _ in range(rounds):
        pids = process_tree(root, started_since=started_since)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def kill_group(pgid: int) -> None:
    """SIGKILL the process group `pgid`, if any of it is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def exit_status(returncode: int) -> int:
    """A `Popen.returncode` as a shell reports it: death by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def open_pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits, where the kernel has them."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        fd: int = pidfd_open(pid)
    except OSError:
        return None
    return fd
