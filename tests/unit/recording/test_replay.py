"""`sandbox trajectories replay`: reading files, comparing per tool, reporting differences."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from sandbox.cli import main
from sandbox.recording.export import export_trajectories
from sandbox.recording.replay import (
    RecordedStep,
    ReplayError,
    ReplayReport,
    TrajectoryFileError,
    compare,
    read_steps,
    redacted_fields,
    replay,
    replay_fields,
)

from .conftest import Recording


def _step(tool: str = "bash:run", code: int = 0, data: Any = None, **params: Any) -> RecordedStep:
    return RecordedStep(1, "s1", tool.split(":")[0], 1, tool, params, code, data)


def test_the_declarations_say_which_result_fields_a_replay_compares() -> None:
    fields = replay_fields()
    assert fields["bash:run"] == ("stdout", "stderr", "exit_code", "cwd")
    assert fields["code:execute"] == ("stdout", "stderr", "return_code")
    assert "vm:screenshot" not in fields, "a screenshot is never compared"
    assert "code:execute" in fields
    assert "execution_time_ms" not in fields["code:execute"]


def test_compare_names_each_differing_field() -> None:
    step = _step(data={"stdout": "a\n", "stderr": "", "exit_code": 0, "cwd": "/tmp"})
    same = {"stdout": "a\n", "stderr": "", "exit_code": 0, "cwd": "/tmp", "truncated": False}
    assert compare(step, 0, same) == []
    (difference,) = compare(step, 0, {**same, "stdout": "b\n"}) or []
    assert str(difference) == 'stdout: recorded "a\\n", now "b\\n"'
    (code,) = compare(step, 2002, None) or []
    assert (code.field, code.recorded, code.replayed) == ("code", 0, 2002)


def test_a_tool_without_replay_fields_compares_its_code_only() -> None:
    shot = _step("vm:screenshot", data={"image": {"$image": "ab" * 32, "format": "png"}})
    assert compare(shot, 0, {"image": "other"}) is None
    assert [d.field for d in compare(shot, 2001, None) or []] == ["code"]


def test_redacted_fields_names_where_the_placeholder_stands() -> None:
    params = {
        "env": {"API_TOKEN": "[redacted]", "HOME": "/root"},
        "hdr": [{"password": "[redacted]"}],
    }
    assert redacted_fields(params) == ["params.env.API_TOKEN", "params.hdr[0].password"]
    assert redacted_fields({"command": "echo [redacted] is text"}) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"session_id": "s", "tool": "bash:run", "seq": 1, "code": 0, "params": {}}\n{"sess',
            "line 2: not JSON (cut short: a truncated file?)",
        ),
        ("[1, 2]\n", "line 1: a step is a JSON object, not list"),
        ('{"session_id": "s", "seq": 1, "code": 0, "params": {}}\n', "line 1: `tool` is missing"),
        ('{"session_id": "s", "tool": "t", "seq": "1", "code": 0}\n', "line 1: `seq` is missing"),
        (
            '{"session_id": "s", "tool": "t", "seq": 1, "code": 0, "params": "{nope"}\n',
            "line 1: `params` is not JSON text",
        ),
        (
            '{"session_id": "s", "tool": "t", "seq": 1, "code": 0, "params": [1]}\n',
            "line 1: `params` is not an object",
        ),
        ("\n\n", "no steps in it"),
        ("\x00\xff garbage\n", "line 1: not JSON"),
    ],
)
def test_a_corrupt_file_is_refused_naming_the_line(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(content, encoding="latin-1")
    with pytest.raises(TrajectoryFileError, match="^" + re.escape(f"{path}: {message}")):
        read_steps(path)


def test_a_missing_file_or_a_directory_that_is_no_export_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TrajectoryFileError, match=r"nope\.jsonl: no such file"):
        read_steps(tmp_path / "nope.jsonl")
    with pytest.raises(TrajectoryFileError, match=r"a directory without metadata\.jsonl"):
        read_steps(tmp_path)
    (tmp_path / "metadata.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(TrajectoryFileError, match="not a readable Parquet file"):
        read_steps(tmp_path)


def test_the_cli_reports_a_corrupt_file_with_exit_2_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"session_id": "s", "tool": "bash:run", "seq": 1, "code": 0}\n{"cut')
    assert main(["trajectories", "replay", str(path), "--url", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sandbox: {path}: line 2: not JSON")
    assert "Traceback" not in err


def test_the_cli_refuses_a_session_the_file_does_not_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"session_id": "s", "tool": "bash:run", "seq": 1, "code": 0}\n')
    assert main(["trajectories", "replay", str(path), "--session", "other"]) == 2
    assert capsys.readouterr().err == f"sandbox: {path} has no session 'other'\n"


async def _record_and_export(rec: Recording, out: Path, fmt: Any = "jsonl") -> Path:
    await rec.call("bash:run", {"command": "echo one"})
    await rec.call("bash:run", {"command": "echo two"})
    await rec.call("vm:screenshot", {})
    return (await export_trajectories(rec.clients["alpha"], out, format=fmt)).path


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
async def test_an_export_replays_identically_in_fresh_sessions(
    recording: Recording, tmp_path: Path, fmt: Any
) -> None:
    exported = await _record_and_export(recording, tmp_path / "out", fmt)
    out = io.StringIO()
    report = await replay(recording.clients["alpha"], read_steps(tmp_path / "out"), out)
    assert exported.exists()
    assert (report.steps, report.differing, report.uncompared) == (3, 0, 1)
    assert report.identical
    text = out.getvalue()
    assert "bash:run               same\n" in text
    assert "vm:screenshot          same code (no replay fields declared)" in text
    # Replayed by new workers, whose sessions are gone afterwards.
    assert re.search(r"\) as worker replay-[0-9a-f]{8}\n", text)
    listed = await recording.clients["alpha"].list_sessions(worker_id=None)
    assert not [s for s in listed.data["sessions"] if s["worker_id"].startswith("replay-")]


async def test_a_tampered_result_is_reported_with_the_line(
    recording: Recording, tmp_path: Path
) -> None:
    path = await _record_and_export(recording, tmp_path / "out")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        if row["seq"] == 2 and row["tool"] == "bash:run":
            data = json.loads(row["data"])
            row["data"] = json.dumps({**data, "stdout": "tampered\n"})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = io.StringIO()
    report = await replay(recording.clients["alpha"], read_steps(path), out)
    assert (report.differing, report.identical) == (1, False)
    assert 'stdout: recorded "tampered\\n", now "echo two\\n"' in out.getvalue()
    assert "#2    bash:run               DIFFERS (line " in out.getvalue()


async def test_session_configs_go_to_their_resource_type_and_a_refused_one_stops(
    recording: Recording, tmp_path: Path
) -> None:
    await _record_and_export(recording, tmp_path / "out")
    steps = read_steps(tmp_path / "out")
    configs: dict[str, dict[str, Any]] = {"vm": {"screen_size": [800, 600]}}
    report = await replay(recording.clients["alpha"], steps, io.StringIO(), session_configs=configs)
    assert report.identical
    specs = recording.harness.runtime.specs.values()
    (replayed_vm,) = [
        spec.environment
        for spec in specs
        if spec.labels.get("sandbox.worker", "").startswith("replay-")
        and spec.labels.get("sandbox.resource") == "vm"
    ]
    assert "800x600" in json.dumps(replayed_vm)
    bad: dict[str, dict[str, Any]] = {"bash": {"screen_size": [800, 600]}}
    with pytest.raises(ReplayError, match=r"could not open a fresh bash session .*: 1002 "):
        await replay(recording.clients["alpha"], steps, io.StringIO(), session_configs=bad)


def test_the_cli_refuses_a_session_config_that_is_no_object_of_objects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for value, message in (
        ("{nope", "not JSON (Expecting property name"),
        ('{"screen_size": [800, 600]}', "a JSON object of session configs by resource type"),
    ):
        with pytest.raises(SystemExit) as exited:
            main(["trajectories", "replay", str(tmp_path), "--session-config", value])
        assert exited.value.code == 2
        assert message in capsys.readouterr().err


async def test_the_servers_own_jsonl_replays_too(recording: Recording, tmp_path: Path) -> None:
    first = await recording.call("bash:run", {"command": "echo one"})
    steps = await recording.clients["alpha"].get_trajectory(first["meta"]["session_id"])
    path = tmp_path / "server.jsonl"
    path.write_text("".join(json.dumps(step) + "\n" for step in steps.data["steps"]))
    report = await replay(recording.clients["alpha"], read_steps(path), io.StringIO())
    assert (report.steps, report.differing, report.uncompared) == (1, 0, 0)


async def _record_a_secret(recording: Recording, out: Path) -> Path:
    await recording.call("bash:run", {"command": "echo one"})
    await recording.call("bash:run", {"command": "deploy", "env": {"API_TOKEN": "s3cret"}})
    await recording.call("bash:run", {"command": "echo three"})
    return (await export_trajectories(recording.clients["alpha"], out)).path


async def test_a_step_with_redacted_params_is_not_replayed_and_named(
    recording: Recording, tmp_path: Path
) -> None:
    path = await _record_a_secret(recording, tmp_path / "out")
    assert "s3cret" not in path.read_text()
    sent: list[dict[str, Any]] = []
    run = recording.harness.agents.handlers["bash.run"]

    async def watched(params: dict[str, Any]) -> dict[str, Any]:
        sent.append(params)
        return await run(params)

    recording.harness.agents.handlers["bash.run"] = watched
    out = io.StringIO()
    report = await replay(recording.clients["alpha"], read_steps(path), out)
    # The placeholder never reaches the tool; the steps around it still run.
    assert [params["command"] for params in sent] == ["echo one", "echo three"]
    assert "[redacted]" not in json.dumps(sent)
    assert (report.steps, report.differing, report.not_replayed) == (3, 0, 1)
    assert not report.identical
    text = out.getvalue()
    assert re.search(
        r"#2    bash:run               NOT REPLAYED \(line 2\): params.env.API_TOKEN redacted "
        "when recorded",
        text,
    ), text
    assert text.endswith(
        "3 steps in 1 sessions: 0 differ, 0 compared by code only, "
        "1 not replayed (redacted params)\n"
    )


def test_the_cli_exits_2_when_a_step_could_not_be_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"session_id": "s", "tool": "bash:run", "seq": 1, "code": 0}\n')

    async def replayed(*args: Any, **kwargs: Any) -> ReplayReport:
        return ReplayReport(steps=1, not_replayed=1, sessions=["s"])

    monkeypatch.setattr("sandbox.recording.replay.replay", replayed)
    assert main(["trajectories", "replay", str(path), "--url", "http://127.0.0.1:9"]) == 2
