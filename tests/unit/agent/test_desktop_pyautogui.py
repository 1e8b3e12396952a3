"""Which pyautogui programs are accepted, and what the runner does with them.

The runner is run for real, with a stand-in ``pyautogui`` module that records
its calls, so these tests need neither X nor pyautogui.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox.agent.desktop.pyautogui_code import RUNNER, RejectedCode, check_program

OSWORLD_STYLE = """\
import pyautogui
import time
# open the terminal
pyautogui.click(120, 48)
time.sleep(0.5)
pyautogui.typewrite('ls -la\\n', interval=0.02)
pyautogui.hotkey('ctrl', 'shift', 't')
pyautogui.moveTo(pyautogui.size()[0] // 2, pyautogui.size().height / 2, duration=0.1)
pyautogui.scroll(-3)
pyautogui.dragTo(100, 200, button='left')
pyautogui.press(['enter', 'tab'])
pyautogui.click(x=10, y=-1 + 2 * 3, clicks=2, button=pyautogui.LEFT)
pyautogui.write({'a': (1, 2.5, None, True)}['a'][0:1])
"""


@pytest.mark.parametrize(
    "source",
    [
        OSWORLD_STYLE,
        "import pyautogui, time",
        "pyautogui.click(1, 2)",
        "",
        "# nothing but a comment\n",
    ],
)
def test_plain_pyautogui_programs_are_accepted(source: str) -> None:
    check_program(source)


@pytest.mark.parametrize(
    ("source", "line", "complaint"),
    [
        ("x = 1", 1, "`x = 1` is not allowed"),
        ("pyautogui.FAILSAFE = True", 1, "`pyautogui.FAILSAFE = True` is not allowed"),
        ("import os", 1, "`import os` is not allowed"),
        ("import pyautogui as pg", 1, "`import pyautogui as pg` is not allowed"),
        ("from pyautogui import click", 1, "`from pyautogui import click` is not allowed"),
        ("pyautogui.click(1, 2)\nprint('hi')", 2, "calling `print` is not allowed"),
        ("pyautogui.click(x, 2)", 1, "the name `x` is not allowed"),
        ("pyautogui.write(open('/etc/passwd').read())", 1, "calling `open('/etc/passwd').read`"),
        ("pyautogui.write(str(1))", 1, "calling `str` is not allowed"),
        ("pyautogui._pyautogui_x11._display.close()", 1, "calling"),
        ("pyautogui.click(pyautogui.__dict__)", 1, "private attribute `__dict__`"),
        ("pyautogui.sleep(time.time())", 1, "calling `time.time` is not allowed"),
        ("pyautogui.click(time.sleep(1))", 1, "calling `time.sleep` is not allowed"),
        ("pyautogui.click(*[1, 2])", 1, "`*` arguments"),
        ("pyautogui.click(**{'x': 1})", 1, "`**` arguments"),
        ("pyautogui.click(lambda: 1)", 1, "`lambda: 1` is not allowed as an argument"),
        ("pyautogui.click([i for i in (1,)])", 1, "is not allowed as an argument"),
        ("for i in range(3):\n    pyautogui.click(1, 2)", 1, "`for i in range(3):` is not allowed"),
        ("pyautogui.size().width", 1, "`pyautogui.size().width` is not a call"),
        ("pyautogui.click(1,", 1, "syntax error"),
        ("os.system('ls')", 1, "calling `os.system` is not allowed"),
    ],
)
def test_anything_else_is_refused_naming_the_line(source: str, line: int, complaint: str) -> None:
    with pytest.raises(RejectedCode) as caught:
        check_program(source)
    assert caught.value.line == line
    assert complaint in str(caught.value)
    assert f"line {line}: " in str(caught.value)
    assert "allowed: only `import pyautogui`" in str(caught.value)


FAKE_PYAUTOGUI = """\
import json, os
FAILSAFE = True
PAUSE = 0.1
LEFT = "left"
_log = os.environ["FAKE_LOG"]
def _record(name, *args, **kwargs):
    with open(_log, "a") as out:
        out.write(json.dumps([name, list(args), kwargs, FAILSAFE, PAUSE]) + "\\n")
def click(*args, **kwargs):
    _record("click", *args, **kwargs)
def position():
    return (3, 4)
def size():
    return (1280, 800)
def fail():
    print("about to fail")
    raise ValueError("no such thing")
"""


def run_runner(
    tmp_path: Path, programs: list[str], *, fake: str = FAKE_PYAUTOGUI
) -> tuple[subprocess.CompletedProcess[bytes], dict[str, Any], list[list[Any]]]:
    """Run RUNNER as the toolset does; returns the process, its result and the calls."""
    (tmp_path / "pyautogui.py").write_text(fake)
    log = tmp_path / "calls.log"
    read_fd, write_fd = os.pipe()
    try:
        process = subprocess.run(
            [sys.executable, "-c", RUNNER, "0.02", str(write_fd)],
            input=json.dumps(programs).encode(),
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(tmp_path), "FAKE_LOG": str(log)},
            pass_fds=(write_fd,),
            timeout=30,
            check=False,
        )
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        result = json.loads(pipe.read())
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return process, result, calls


def test_the_runner_runs_calls_in_order_with_failsafe_off(tmp_path: Path) -> None:
    process, result, calls = run_runner(
        tmp_path,
        ["import pyautogui\npyautogui.click(1, 2, button='left')", "pyautogui.position()"],
    )

    assert process.returncode == 0, process.stderr
    assert calls == [["click", [1, 2], {"button": "left"}, False, 0.02]]
    assert result == {"ok": True, "values": [{"command": 1, "line": 1, "value": "(3, 4)"}]}


def test_the_runner_reports_where_a_call_failed(tmp_path: Path) -> None:
    process, result, calls = run_runner(
        tmp_path,
        ["pyautogui.click(1, 2)", "pyautogui.size()\n\npyautogui.fail()\npyautogui.click()"],
    )

    assert process.returncode == 1
    assert process.stdout == b"about to fail\n"
    assert b"ValueError: no such thing" in process.stderr
    assert result["ok"] is False
    assert (result["command"], result["line"], result["type"]) == (1, 3, "ValueError")
    assert result["message"] == "no such thing"
    assert result["values"] == [{"command": 1, "line": 1, "value": "(1280, 800)"}]
    assert len(calls) == 1  # nothing after the failure ran


def test_the_runner_reports_a_broken_pyautogui(tmp_path: Path) -> None:
    process, result, _ = run_runner(
        tmp_path, ["pyautogui.click(1, 2)"], fake="raise ImportError('no display')\n"
    )

    assert process.returncode == 3
    assert result == {
        "ok": False,
        "stage": "import",
        "type": "ImportError",
        "message": "no display",
    }
