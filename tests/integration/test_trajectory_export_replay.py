"""`sandbox trajectories export` and `replay` as a user runs them, against a real server.

A recorded bash session is exported (JSONL and Parquet), read back by
`datasets.load_dataset`, and replayed in a fresh session: identical, exit 0;
with one result changed in the file, the step is named and the exit is 1. Bad
input (another tenant's worker, an unknown session, a cut file) is a clear
message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import docker

from sandbox import Sandbox

from .support import ServerProcess, checked, start_server

ALPHA, BETA = "alpha-export-key-1", "beta-export-key-2"
COMMANDS = (
    "cd /tmp && printf 'one\\ntwo\\n' > lines.txt",
    "wc -l < lines.txt",
    "cat lines.txt; echo to-stderr >&2; exit 3",
    "pwd",
)


def sandbox_cli(server: ServerProcess, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``sandbox trajectories ARGS... --url URL --api-key KEY`` in a child process."""
    command = [sys.executable, "-m", "sandbox", "trajectories", *args]
    command += ["--url", server.url, "--api-key", key]
    env = {k: v for k, v in os.environ.items() if k != "SANDBOX_API_KEY"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def test_export_then_replay_against_a_fresh_session(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    import datasets

    env = {
        "SANDBOX_RECORDING_DIR": str(tmp_path / "recordings"),
        "SANDBOX_API_KEYS": json.dumps({"alpha": ALPHA, "beta": BETA}),
    }
    server = start_server(tmp_path, env=env)
    with checked(docker_client, server):
        with Sandbox(server_url=server.url, api_key=ALPHA, worker_id="exp") as sb:
            assert sb.create_session_sync("bash", {"record": True})["status"] == "success"
            for command in COMMANDS:
                assert sb.execute_sync("bash:run", {"command": command})["code"] == 0
            sb.destroy_session_sync("bash")

        out = tmp_path / "export"
        exported = sandbox_cli(server, ALPHA, "export", str(out), "--worker", "exp")
        assert exported.returncode == 0, exported.stderr
        assert "1 trajectories, 4 steps, 0 images" in exported.stdout
        rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
        assert [json.loads(r["data"])["stdout"] for r in rows] == [
            "",
            "2\n",
            "one\ntwo\n",
            "/tmp\n",
        ]
        parquet = tmp_path / "parquet"
        assert (
            sandbox_cli(server, ALPHA, "export", str(parquet), "--format", "parquet").returncode
            == 0
        )
        loaded = datasets.load_dataset(str(parquet), split="train", cache_dir=str(tmp_path / "hf"))
        assert [json.loads(r["params"])["command"] for r in loaded] == list(COMMANDS)

        for source in (out, parquet / "metadata.parquet"):
            replayed = sandbox_cli(server, ALPHA, "replay", str(source))
            assert replayed.returncode == 0, replayed.stdout + replayed.stderr
            assert replayed.stdout.count(" same\n") == 4, replayed.stdout
            assert "4 steps in 1 sessions: 0 differ" in replayed.stdout

        rows[2]["data"] = json.dumps({**json.loads(rows[2]["data"]), "exit_code": 0})
        tampered = tmp_path / "tampered.jsonl"
        tampered.write_text("".join(json.dumps(row) + "\n" for row in rows))
        replayed = sandbox_cli(server, ALPHA, "replay", str(tampered))
        assert replayed.returncode == 1, replayed.stdout + replayed.stderr
        assert "#3    bash:run               DIFFERS (line 3)" in replayed.stdout
        assert "exit_code: recorded 0, now 3" in replayed.stdout
        assert "1 differ" in replayed.stdout

        # Bad input: a clear message, no traceback.
        cut = tmp_path / "cut.jsonl"
        cut.write_text((out / "metadata.jsonl").read_text()[:-40])
        replayed = sandbox_cli(server, ALPHA, "replay", str(cut))
        assert replayed.returncode == 2
        assert f"{cut}: line 4: not JSON (cut short: a truncated file?)" in replayed.stderr
        refused_config = json.dumps({"bash": {"memory": "1t"}})
        replayed = sandbox_cli(
            server, ALPHA, "replay", str(out), "--session-config", refused_config
        )
        assert replayed.returncode == 2
        assert "could not open a fresh bash session" in replayed.stderr
        assert "1002" in replayed.stderr
        for key, where in ((BETA, ["--worker", "exp"]), (ALPHA, ["--session", "bash_nope_1"])):
            refused = sandbox_cli(server, key, "export", str(tmp_path / "none"), *where)
            assert refused.returncode == 1
            assert "no recorded trajectory matches" in refused.stderr
            assert "Traceback" not in refused.stderr
        refused = sandbox_cli(server, ALPHA, "export", str(tmp_path / "none"), "--worker", "a b")
        assert refused.returncode == 1
        assert "the server answered 1002" in refused.stderr
        assert "Traceback" not in refused.stderr


def test_a_desktop_trajectory_exports_its_screenshots_and_replays(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    import datasets

    env = {
        "SANDBOX_RECORDING": "true",
        "SANDBOX_RECORDING_DIR": str(tmp_path / "recordings"),
        "SANDBOX_API_KEY": ALPHA,
    }
    server = start_server(tmp_path, env=env)
    with checked(docker_client, server):
        with Sandbox(server_url=server.url, api_key=ALPHA, worker_id="desk") as sb:
            created = sb.create_session_sync("vm", {"screen_size": [800, 600]})
            assert created["status"] == "success", created
            assert sb.execute_sync("vm:move", {"x": 100, "y": 120})["code"] == 0
            where = sb.execute_sync("vm:cursor_position", {})
            assert where["data"] == {"x": 100, "y": 120}, where
            assert sb.execute_sync("vm:screenshot", {})["code"] == 0
            ran = sb.execute_sync("vm:run_command", {"command": "echo $DISPLAY"})
            assert ran["data"]["stdout"] == ":0\n", ran
            sb.destroy_session_sync("vm")

        out = tmp_path / "export"
        exported = sandbox_cli(server, ALPHA, "export", str(out), "--resource-type", "vm")
        assert exported.returncode == 0, exported.stderr
        assert "1 trajectories, 4 steps, 1 images" in exported.stdout
        loaded = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf"))
        assert [len(row["images"]) for row in loaded] == [0, 0, 1, 0]
        assert loaded[2]["images"][0].size == (800, 600)

        config = json.dumps({"vm": {"screen_size": [800, 600]}})
        replayed = sandbox_cli(server, ALPHA, "replay", str(out), "--session-config", config)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert "#2    vm:cursor_position     same\n" in replayed.stdout
        assert (
            "#3    vm:screenshot          same code (no replay fields declared)" in replayed.stdout
        )
