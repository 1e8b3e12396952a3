"""The agent runs alone, copied into an image as `sandbox_agent`."""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import sandbox.agent

AGENT_DIR = Path(sandbox.agent.__file__).parent
# Debian packages of the desktop image only (python3-pil), so only the desktop's
# own modules may import them: the shell and rag images run the agent without.
DESKTOP_IMAGE_PACKAGES = {"PIL"}
# The rag image's python3-numpy (Debian) and tokenizers (a host-fetched wheel,
# images/rag/wheels.txt), imported only by the embedding model's modules, and
# only when a model is loaded (the agent runs without them elsewhere).
RAG_MODEL_PACKAGES = {"numpy", "tokenizers"}
RAG_MODEL_MODULES = {"embedder.py", "vectors.py"}


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield 0, alias.name
        elif isinstance(node, ast.ImportFrom):
            yield node.level, node.module or ""


@pytest.mark.parametrize("path", sorted(AGENT_DIR.rglob("*.py")), ids=lambda p: p.name)
def test_imports_only_the_standard_library_and_itself(path: Path) -> None:
    allowed = DESKTOP_IMAGE_PACKAGES if path.parent == AGENT_DIR / "desktop" else set()
    if path.parent == AGENT_DIR / "rag" and path.name in RAG_MODEL_MODULES:
        allowed = RAG_MODEL_PACKAGES
    # A module run as a script (the accessibility reader) imports those beside it by name.
    allowed = allowed | {sibling.stem for sibling in path.parent.glob("*.py")}
    for level, module in _imports(path):
        if level == 0:
            top = module.split(".")[0]
            assert top == "__future__" or top in sys.stdlib_module_names or top in allowed, module


def test_public_api_is_sorted() -> None:
    assert sandbox.agent.__all__ == sorted(sandbox.agent.__all__)


@pytest.fixture
def copied_agent(tmp_path: Path) -> Path:
    """The agent package copied alone, as images hold it."""
    shutil.copytree(
        AGENT_DIR, tmp_path / "sandbox_agent", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def _agent_env(home: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SANDBOX_")}
    env.update(HOME=str(home), SANDBOX_AGENT_HOST="127.0.0.1", SANDBOX_AGENT_PORT="0", **extra)
    return env


def test_runs_as_sandbox_agent_and_stops_on_sigterm(copied_agent: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox_agent"],
        cwd=copied_agent,
        env=_agent_env(copied_agent, SANDBOX_AGENT_TOKEN="secret"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.fullmatch(
            r"sandbox-agent listening on 127\.0\.0\.1:(\d+) toolsets=agent,shell\n", line
        )
        assert match, line
        url = f"http://127.0.0.1:{match[1]}"

        health = httpx.get(f"{url}/health", timeout=5)
        reply = httpx.post(
            f"{url}/call/bash.run",
            json={
                "command": 'echo "[$SANDBOX_AGENT_TOKEN]"; '
                "tr '\\0' '\\n' </proc/$PPID/environ 2>/dev/null | grep -c TOKEN",
                "timeout": 5,
            },
            headers={"Authorization": "Bearer secret"},
            timeout=10,
        )

        assert health.json()["tools"] == [
            "agent.meta",
            "bash.read_file",
            "bash.run",
            "bash.write_file",
            "code.execute",
        ]
        lines = reply.json()["data"]["stdout"].splitlines()
        assert lines[0] == "[]"
        if os.geteuid() != 0:
            # Non-dumpable: the agent's initial environment is not readable by its
            # own user's processes (root reads it regardless).
            assert lines[1] == "0"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_refuses_to_start_without_a_token(copied_agent: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sandbox_agent"],
        cwd=copied_agent,
        env=_agent_env(copied_agent),
        capture_output=True,
        text=True,
        timeout=10,
    )

    assert result.returncode == 2
    assert "SANDBOX_AGENT_TOKEN" in result.stderr
