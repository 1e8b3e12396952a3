"""vm sessions on real desktops, through a real server and the client.

One 1024x768 desktop serves most tests (each opens its own xterm, which takes
the focus); a second session checks the defaults and config errors.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from sandbox import Sandbox
from sandbox.errors import ErrorCode
from tests.unit.agent.test_desktop_png import decode_png

from .support import ServerProcess, created, ok, refused, wait_until, worker


@pytest.fixture(scope="module")
def vm(server: ServerProcess) -> Iterator[tuple[Sandbox, dict[str, Any]]]:
    """A worker with a 1024x768 desktop, and its line of the create summary."""
    with worker(server, "desk") as sb:
        summary = sb.create_session_sync("vm", {"screen_size": [1024, 768]})
        yield sb, created(summary, "vm")


@pytest.fixture
def sb(vm: tuple[Sandbox, dict[str, Any]]) -> Sandbox:
    return vm[0]


def screenshot(sb: Sandbox) -> tuple[int, int, list[bytes]]:
    data = ok(sb, "vm:screenshot")
    assert data["format"] == "png"
    width, height, rows = decode_png(base64.b64decode(data["image"]))
    assert [width, height] == data["size"]
    return width, height, rows


def open_xterm(sb: Sandbox) -> None:
    """Launch an xterm, wait for its window to take the focus and its shell to start."""
    launched = ok(sb, "vm:launch", command="xterm", wait_for_window=True)
    assert launched["window"], launched
    assert launched["focused"] is True, launched
    wait_until(sb, f"pgrep -P {launched['pid']} -x bash")


def start_cat(sb: Sandbox, path: str) -> None:
    """Run `cat > path` in the focused xterm and wait until cat reads the terminal.

    Typed ahead of that, the text would reach the terminal while the shell's
    line editor has it in raw mode, and Return would arrive as a bare CR.
    """
    ok(sb, "vm:type", text=f"cat > {path}\n")
    wait_until(sb, "pgrep -x cat")


def test_the_session_has_the_asked_screen(vm: tuple[Sandbox, dict[str, Any]]) -> None:
    sb, session = vm
    assert session["config_applied"]["screen_size"] == [1024, 768]
    assert session["config_applied"]["network"] is False
    width, height, rows = screenshot(sb)
    assert (width, height) == (1024, 768)
    assert len(rows) == 768
    assert all(len(row) == 3 * 1024 for row in rows)


def test_screenshots_go_through_shared_memory_with_xvfb(
    vm: tuple[Sandbox, dict[str, Any]], docker_client: docker.DockerClient
) -> None:
    # The root agent and Xvfb (the session user) must share the MIT-SHM segment, or
    # every screenshot falls back to XGetImage over the socket (about 1.3x slower).
    sb, _ = vm
    screenshot(sb)
    (container,) = docker_client.containers.list(
        filters={"label": f"sandbox.worker={sb.worker_id}"}
    )
    table = container.exec_run(["cat", "/proc/sysvipc/shm"], user="0").output.decode()
    attached = [int(line.split()[6]) for line in table.splitlines()[1:] if line.strip()]
    assert any(count >= 2 for count in attached), table


def test_the_readme_flow_types_into_an_xterm(sb: Sandbox) -> None:
    before = screenshot(sb)[2]
    open_xterm(sb)
    ok(sb, "vm:type", text='echo "héllo wörld € λ $((6*7))" > ~/typed.txt\n')

    assert wait_until(sb, "cat ~/typed.txt") == "héllo wörld € λ 42\n"
    after = screenshot(sb)[2]
    changed = sum(a != b for a, b in zip(before, after, strict=True))
    assert changed > 100  # an xterm with two lines of text appeared


def test_long_text_is_typed_whole(sb: Sandbox) -> None:
    open_xterm(sb)
    text = "".join(f"{n:04d}" for n in range(600))  # 2400 characters, one line
    start_cat(sb, "~/long.txt")
    ok(sb, "vm:type", text=f"{text}\n")
    ok(sb, "vm:key", key="ctrl+d")
    assert wait_until(sb, 'test "$(wc -c < ~/long.txt)" = 2401 && cat ~/long.txt') == (text + "\n")


def test_the_pointer_lands_where_it_is_put(sb: Sandbox) -> None:
    ok(sb, "vm:move", x=100, y=120)
    assert ok(sb, "vm:cursor_position") == {"x": 100, "y": 120}

    ran = ok(sb, "vm:pyautogui", command="import pyautogui\npyautogui.moveTo(300, 200)")
    assert ran["exit_code"] == 0, ran
    assert ok(sb, "vm:cursor_position") == {"x": 300, "y": 200}

    ok(sb, "vm:drag", start_x=900, start_y=700, end_x=1023, end_y=767)
    assert ok(sb, "vm:cursor_position") == {"x": 1023, "y": 767}

    ran = ok(sb, "vm:pyautogui", commands=["pyautogui.moveTo(5, 6)", "pyautogui.position()"])
    assert ran["values"] == [{"command": 1, "line": 1, "value": "Point(x=5, y=6)"}]


def test_pyautogui_takes_screenshots_too(sb: Sandbox) -> None:
    ran = ok(sb, "vm:pyautogui", command="pyautogui.screenshot('/tmp/shot.png')")
    assert ran["values"][0]["value"].startswith("<PIL.")
    assert ok(sb, "vm:run_command", command="head -c 8 /tmp/shot.png | od -c | head -1")[
        "stdout"
    ].split()[1:5] == ["211", "P", "N", "G"]


def test_hotkeys_reach_the_focused_window(sb: Sandbox) -> None:
    open_xterm(sb)
    windows = int(wait_until(sb, "xdotool search --onlyvisible --class xterm | wc -l"))
    start_cat(sb, "~/hot.txt")
    ok(sb, "vm:type", text="abc\n")
    ok(sb, "vm:hotkey", keys=["ctrl", "d"])  # ends cat's input

    assert wait_until(sb, "cat ~/hot.txt && ! pgrep -x cat >/dev/null") == "abc\n"
    ok(sb, "vm:key", key="ctrl+d")  # ends the shell: the xterm closes
    wait_until(sb, f"test $(xdotool search --onlyvisible --class xterm | wc -l) -lt {windows}")


def test_bad_coordinates_and_unknown_keys_are_1002_and_harmless(sb: Sandbox) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("vm:click", {"x": 1024, "y": 10}, "params.x"),  # past this 1024-pixel screen
        ("vm:click", {"x": -1, "y": 10}, "params.x"),
        ("vm:move", {"x": 0, "y": 768}, "params.y"),
        ("vm:drag", {"start_x": 0, "start_y": 0, "end_x": 10, "end_y": 9999}, "params.end_y"),
        ("vm:scroll", {"x": 2000, "y": 0, "clicks": 1}, "params.x"),
        ("vm:key", {"key": "nokey"}, "params.key"),
        ("vm:key", {"key": "ctrl+nokey"}, "params.key"),
        ("vm:hotkey", {"keys": ["ctrl", "nokey"]}, "params.keys.1"),
        ("vm:key_down", {"key": "Hyperdrive"}, "params.key"),
        ("vm:type", {"text": "a\x01"}, "params.text"),
        ("vm:pyautogui", {"command": "import os\nos.system('id')"}, "params.command"),
        ("vm:pyautogui", {"commands": ["pyautogui.click()", "x = 1"]}, "params.commands.1"),
    ]
    for action, params, field in cases:
        envelope = refused(sb, action, **params)
        assert envelope["data"]["field"] == field, envelope
    assert "outside of the screen" in refused(sb, "vm:click", x=5000, y=0)["message"]

    ok(sb, "vm:click", x=1023, y=767)
    assert ok(sb, "vm:cursor_position") == {"x": 1023, "y": 767}
    assert screenshot(sb)[:2] == (1024, 768)


def test_run_command_sees_the_display(sb: Sandbox) -> None:
    data = ok(sb, "vm:run_command", command="echo $DISPLAY; xdpyinfo | grep dimensions; exit 3")
    assert data["stdout"].startswith(":0\n")
    assert "1024x768 pixels" in data["stdout"]
    assert data["exit_code"] == 3

    late = sb.execute_sync("vm:run_command", {"command": "echo partial; sleep 5", "timeout": 1})
    assert late["code"] == ErrorCode.TIMEOUT, late
    assert late["data"]["stdout"] == "partial\n"


def test_pyautogui_failures_are_reported(sb: Sandbox) -> None:
    failed = sb.execute_sync("vm:pyautogui", {"command": "pyautogui.noSuchFunction()"})
    assert failed["code"] == ErrorCode.BACKEND_ERROR, failed
    assert "command line 1: AttributeError" in failed["message"]
    ok(sb, "vm:pyautogui", command="pyautogui.click(10, 10); pyautogui.press('esc')")


def test_wait_done_and_fail(sb: Sandbox) -> None:
    started = time.monotonic()
    assert ok(sb, "vm:wait", seconds=0.3) == {"waited": 0.3}
    assert time.monotonic() - started >= 0.3
    assert ok(sb, "vm:done") == {"status": "done"}
    assert ok(sb, "vm:fail", reason="gave up") == {"status": "failed", "reason": "gave up"}


def test_defaults_and_bad_configs(
    server: ServerProcess, docker_client: docker.DockerClient
) -> None:
    worker = f"desk-{secrets.token_hex(3)}"
    with Sandbox(server_url=server.url, worker_id=worker) as sb:
        bad = sb.client.create_session_sync("vm", {"screen_size": [100, 5000]})
        assert bad["code"] == ErrorCode.INVALID_PARAMS, bad
        assert bad["data"]["field"] == "config.screen_size"
        assert (
            docker_client.containers.list(all=True, filters={"label": f"sandbox.worker={worker}"})
            == []
        )

        try:
            assert screenshot(sb)[:2] == (1280, 800)  # execute creates the session
            names = {tool["name"] for tool in sb.get_tools_sync()}
            assert {"vm:screenshot", "vm:pyautogui", "vm:hotkey"} <= names
        finally:
            sb.destroy_session_sync()
