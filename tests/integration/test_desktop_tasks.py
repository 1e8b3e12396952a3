"""OSWorld-style tasks on a real desktop: setup steps, scripted actions, evaluation.

Through a real server: `vm:setup` prepares the desktop as the session user,
actions change it, `vm:evaluate` scores it; a session created with
``config.setup`` (cold or claimed from a warm pool) has the state before the
create answers, and a bad step fails the create, naming it.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterator

import docker
import pytest

from sandbox import Sandbox
from sandbox.errors import ErrorCode

from .support import ServerProcess, created, ok, score, wait_until, worker
from .test_desktop import open_xterm, start_cat

DONE_TEXT = "first line\nsecond line\n"
EVALUATOR = {
    "func": "compare_text_file",
    "result": {"type": "vm_file", "path": "/home/sandbox/task.txt"},
    "expected": {"type": "literal", "value": DONE_TEXT},
}


@pytest.fixture(scope="module")
def sb(server: ServerProcess) -> Iterator[Sandbox]:
    """A worker with a desktop."""
    with worker(server, "task") as sandbox:
        created(sandbox.create_session_sync("vm", {"screen_size": [1024, 768]}), "vm")
        yield sandbox


def test_setup_then_scripted_actions_then_evaluation(sb: Sandbox) -> None:
    ok(
        sb,
        "vm:setup",
        steps=[
            {
                "type": "execute",
                "parameters": {"command": ["bash", "-c", "echo 'first line' > ~/task.txt"]},
            },
            # -e: no shell, whose prompt would retitle the window.
            {
                "type": "launch",
                "parameters": {"command": ["xterm", "-T", "task-term", "-e", "sleep", "600"]},
            },
            {"type": "activate_window", "parameters": {"window_name": "task-term", "strict": True}},
        ],
    )
    assert wait_until(sb, "stat -c %U ~/task.txt") == "sandbox\n"
    assert score(sb, EVALUATOR) == 0.0  # not done yet

    ok(sb, "vm:run_command", command="echo 'second line' >> ~/task.txt")
    answer = ok(sb, "vm:evaluate", evaluator=EVALUATOR)
    assert answer["score"] == 1.0
    assert answer["metrics"][0]["result"]["value"] == DONE_TEXT


def test_typing_into_an_xterm_is_scored_by_the_window_title_and_a_file(sb: Sandbox) -> None:
    open_xterm(sb)
    start_cat(sb, "~/typed.txt")
    ok(sb, "vm:type", text="typed by the agent\n")
    ok(sb, "vm:key", key="ctrl+d")
    wait_until(sb, "grep -q agent ~/typed.txt")
    evaluator = {
        "func": ["check_include_exclude", "match"],
        "conj": "and",
        "result": [
            {"type": "vm_file", "path": "/home/sandbox/typed.txt"},
            {"type": "window_title"},
        ],
        "expected": [
            {"type": "rule", "rules": {"include": ["typed by the agent"], "exclude": ["error"]}},
            {"type": "rule", "rules": {"pattern": "xterm|sandbox@"}},
        ],
    }
    answer = ok(sb, "vm:evaluate", evaluator=evaluator)
    assert answer["score"] == 1.0, answer


def test_uploaded_bytes_land_as_the_session_user_and_the_clipboard_is_read(sb: Sandbox) -> None:
    data = bytes(range(256))
    ok(
        sb,
        "vm:setup",
        steps=[
            {
                "type": "upload_file",
                "parameters": {
                    "files": [
                        {
                            "path": "~/in/blob.bin",
                            "content": base64.b64encode(data).decode(),
                        }
                    ]
                },
            },
            # Launched: xclip stays in the background to serve the clipboard.
            {
                "type": "launch",
                "parameters": {"command": "printf clip-me | xclip -selection clipboard"},
            },
            {"type": "sleep", "parameters": {"seconds": 0.2}},
        ],
    )
    assert wait_until(sb, "stat -c '%U %s' ~/in/blob.bin") == "sandbox 256\n"
    evaluator = {
        "func": "exact_match",
        "result": {"type": "clipboard"},
        "expected": {"type": "rule", "rules": {"expected": "clip-me"}},
    }
    assert score(sb, evaluator) == 1.0


def test_a_window_closed_by_name_goes_away(sb: Sandbox) -> None:
    ok(
        sb,
        "vm:setup",
        steps=[{"type": "launch", "parameters": {"command": "xterm -T closeme -e sleep 600"}}],
    )
    ok(sb, "vm:setup", steps=[{"type": "close_window", "parameters": {"window_name": "closeme"}}])
    wait_until(sb, "! pgrep -f 'xterm -T closeme'")
    envelope = sb.execute_sync(
        "vm:setup", {"steps": [{"type": "close_window", "parameters": {"window_name": "closeme"}}]}
    )
    assert "no window with a title containing 'closeme'" in envelope["message"], envelope


def test_bad_steps_and_evaluators_are_1002_naming_the_field(sb: Sandbox) -> None:
    envelope = sb.execute_sync("vm:setup", {"steps": [{"type": "teleport"}]})
    assert envelope["code"] == ErrorCode.INVALID_PARAMS, envelope
    assert envelope["data"]["field"] == "params.steps.0.type"
    assert "teleport" in envelope["message"]

    envelope = sb.execute_sync(
        "vm:evaluate",
        {"evaluator": {"func": "exact_match", "result": {"type": "page_info"}}},
    )
    assert envelope["code"] == ErrorCode.INVALID_PARAMS, envelope
    assert envelope["data"]["field"] == "params.evaluator.result.url"
    assert "url" in envelope["message"]

    envelope = sb.execute_sync(
        "vm:setup", {"steps": [{"type": "execute", "parameters": {"command": "exit 3"}}]}
    )
    assert envelope["code"] != 0
    assert "steps.0 (execute) failed" in envelope["message"]


def test_a_session_created_with_setup_has_the_state(
    server: ServerProcess, docker_client: docker.DockerClient
) -> None:
    worker = f"task-{secrets.token_hex(3)}"
    with Sandbox(server_url=server.url, worker_id=worker) as sb:
        setup = [{"type": "execute", "parameters": {"command": "echo ready > ~/state.txt"}}]
        created(sb.create_session_sync("vm", {"setup": setup}), "vm")
        try:
            assert ok(sb, "vm:run_command", command="cat ~/state.txt")["stdout"] == "ready\n"
        finally:
            sb.destroy_session_sync()

        bad = sb.client.create_session_sync("vm", {"setup": [{"type": "warp"}]})
        assert bad["code"] == ErrorCode.INVALID_PARAMS, bad
        assert bad["data"]["field"] == "config.setup.0.type"

        failing = [{"type": "execute", "parameters": {"command": "exit 7"}}]
        bad = sb.client.create_session_sync("vm", {"setup": failing})
        assert bad["code"] == ErrorCode.SESSION_ERROR, bad
        assert "config.setup.0" in bad["message"]
        deadline = time.monotonic() + 30  # removed in the background, after the answer
        label = {"label": f"sandbox.worker={worker}"}
        while docker_client.containers.list(all=True, filters=label):
            assert time.monotonic() < deadline, "the failed session's container was not removed"
            time.sleep(0.5)


async def test_a_session_claimed_from_a_warm_pool_runs_its_setup(server: ServerProcess) -> None:
    async with Sandbox(server_url=server.url, worker_id=f"task-{secrets.token_hex(3)}") as sb:
        warm = await sb.warmup(["vm"], pool_size=1, wait=True)
        assert warm["code"] == 0, warm
        try:
            setup = [{"type": "execute", "parameters": {"command": "echo pooled > ~/state.txt"}}]
            created(await sb.create_session("vm", {"setup": setup}), "vm")
            status = await sb.get_warmup_status()
            (pool,) = status["data"]["resources"]["vm"]["pools"]
            assert pool["hits"] == 1, pool
            ran = await sb.execute("vm:run_command", {"command": "cat ~/state.txt"})
            assert ran["data"]["stdout"] == "pooled\n"
        finally:
            await sb.destroy_session()
            await sb.warmup(["vm"], pool_size=0, wait=True)


def test_open_shows_a_file_in_an_editor_window(sb: Sandbox) -> None:
    ok(sb, "vm:run_command", command="echo 'to read' > ~/readme.txt")
    ok(sb, "vm:setup", steps=[{"type": "open", "parameters": {"path": "/home/sandbox/readme.txt"}}])
    evaluator = {
        "func": ["check_include_exclude", "check_include_exclude"],
        "result": [
            {"type": "window_title"},
            {"type": "vm_command_line", "command": "pgrep -a mousepad", "shell": True},
        ],
        "expected": [
            # xdg-open picks the desktop's editor for text: mousepad.
            {"type": "rule", "rules": {"include": ["readme.txt - Mousepad"]}},
            {"type": "rule", "rules": {"include": ["/home/sandbox/readme.txt"]}},
        ],
    }
    deadline = time.monotonic() + 30  # a first window can take seconds to map
    while score(sb, evaluator) != 1.0:
        assert time.monotonic() < deadline, ok(sb, "vm:evaluate", evaluator=evaluator)
        time.sleep(0.2)

    missing = sb.execute_sync(
        "vm:setup", {"steps": [{"type": "open", "parameters": {"path": "~/nope"}}]}
    )
    assert missing["code"] != 0
    assert "steps.0 (open) failed: cannot open ~/nope: no such file" in missing["message"]


def test_tasks_have_the_session_users_rights_only(sb: Sandbox) -> None:
    upload = {"files": [{"path": "/etc/evil.conf", "content": base64.b64encode(b"x").decode()}]}
    envelope = sb.execute_sync(
        "vm:setup", {"steps": [{"type": "upload_file", "parameters": upload}]}
    )
    assert envelope["code"] != 0
    assert "steps.0 (upload_file) failed: cannot write /etc/evil.conf" in envelope["message"]

    evaluator = {
        "func": "exact_match",
        "result": {"type": "vm_file", "path": "/etc/shadow"},
        "expected": {"type": "literal", "value": "x"},
    }
    envelope = sb.execute_sync("vm:evaluate", {"evaluator": evaluator})
    assert envelope["code"] != 0
    assert "Permission denied" in envelope["message"], envelope
