"""Per-uid kernel limits are per session: each session runs under a uid of its own.

Without user namespaces, the kernel accounts inotify instances, message-queue
bytes and the user keyring per uid across the whole host. These tests exhaust
or fill that accounting from one session and check that another session does
not feel it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import docker
import pytest

from sandbox import Sandbox
from sandbox.agent.identity import SESSION_UIDS

from .support import ServerProcess

# Opens inotify instances until the kernel refuses, reports how many, then holds
# them (the per-uid limit stays used up) until killed.
INOTIFY_HOG = """
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
held = []
while len(held) < 100000:
    fd = libc.inotify_init1(0)
    if fd < 0:
        break
    held.append(fd)
with open(os.path.expanduser("~/hog.out"), "w") as out:
    out.write(f"{len(held)} {os.strerror(ctypes.get_errno())}\\n")
time.sleep(600)
"""

INOTIFY_PROBE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
print("ok" if fd >= 0 else os.strerror(ctypes.get_errno()))
"""

# add_key(2) into the user keyring (KEY_SPEC_USER_KEYRING = -4): every process of
# the uid may read it. syscall 248 is x86_64's add_key.
ADD_KEY = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
key = libc.syscall(248, b"user", b"secret-of-a", b"payload", 7, -4)
print("added" if key >= 0 else os.strerror(ctypes.get_errno()))
"""


@pytest.fixture
async def a(server: ServerProcess, worker_id: str) -> AsyncIterator[Sandbox]:
    async with Sandbox(server_url=server.url, worker_id=f"{worker_id}-a") as sandbox:
        yield sandbox


@pytest.fixture
async def b(server: ServerProcess, worker_id: str) -> AsyncIterator[Sandbox]:
    async with Sandbox(server_url=server.url, worker_id=f"{worker_id}-b") as sandbox:
        yield sandbox


async def run(sb: Sandbox, command: str, resource: str = "bash") -> str:
    tool = "vm:run_command" if resource == "vm" else "bash:run"
    envelope = await sb.execute(tool, {"command": command, "timeout": 30})
    assert envelope["code"] == 0, envelope
    return str(envelope["data"]["stdout"])


async def python(sb: Sandbox, code: str) -> str:
    """`code`'s output, run in the worker's bash session (its code session is another
    container, with another uid)."""
    written = await sb.execute("bash:write_file", {"path": "/tmp/probe.py", "content": code})
    assert written["code"] == 0, written
    return await run(sb, "python3 /tmp/probe.py")


async def test_every_session_has_a_uid_of_its_own_named_sandbox(
    a: Sandbox, b: Sandbox, server: ServerProcess, docker_client: docker.DockerClient
) -> None:
    outputs = await asyncio.gather(
        run(a, "id -u; id -un; stat -c %U ~; echo x > /tmp/f; stat -c %U /tmp/f"),
        run(b, "id -u; id -un"),
        run(a, "id -u", resource="vm"),
    )
    (uid_a, name, home_owner, file_owner), (uid_b, name_b), (uid_vm,) = (
        output.split() for output in outputs
    )
    assert {name, name_b, home_owner, file_owner} == {"sandbox"}
    uids = {int(uid_a), int(uid_b), int(uid_vm)}
    assert len(uids) == 3, "no two live sessions share a uid"
    assert uids <= set(SESSION_UIDS)
    labelled = {
        int(container.labels["sandbox.uid"])
        for container in docker_client.containers.list(
            filters={"label": f"sandbox.server={server.server_id}"}
        )
        if "sandbox.session" in container.labels
        and container.labels.get("sandbox.worker", "").endswith(("-a", "-b"))
    }
    assert uids <= labelled, "the uid the server chose and labelled"


async def test_using_up_inotify_instances_in_one_session_leaves_another_its_own(
    a: Sandbox, b: Sandbox
) -> None:
    await a.execute("bash:write_file", {"path": "/tmp/hog.py", "content": INOTIFY_HOG})
    await run(a, "nohup python3 /tmp/hog.py >/dev/null 2>&1 &")
    try:
        for _ in range(100):
            report = await run(a, "cat ~/hog.out 2>/dev/null || true")
            if report:
                break
            await asyncio.sleep(0.2)
        count, _, reason = report.strip().partition(" ")
        assert reason == "Too many open files", report  # the per-uid limit was reached
        assert int(count) < 100000
        assert (await python(a, INOTIFY_PROBE)).strip() == "Too many open files"
        assert (await python(b, INOTIFY_PROBE)).strip() == "ok", "b's own uid is untouched"
    finally:
        await run(a, "pkill -f hog.py || true")
    assert (await python(a, INOTIFY_PROBE)).strip() == "ok", "freed with the hog"


async def test_a_key_one_session_stores_is_not_visible_to_another(a: Sandbox, b: Sandbox) -> None:
    added = (await python(a, ADD_KEY)).strip()
    # Where seccomp forbids add_key the attack fails at once; else the key is a's alone.
    assert added in ("added", "Operation not permitted"), added
    if added == "added":
        assert "secret-of-a" in await run(a, "cat /proc/keys")
    assert "secret-of-a" not in await run(b, "cat /proc/keys")
