"""`sandbox trajectories export`: rows and image files over the API, read back by `datasets`."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from sandbox import Envelope
from sandbox.cli import main
from sandbox.recording.commands import when
from sandbox.recording.export import (
    ExportError,
    ProgressBar,
    TrajectoryFilter,
    export_trajectories,
    image_path,
)

from .conftest import SCREEN, Recording


async def _record_some(rec: Recording) -> dict[str, str]:
    """Two bash calls and a screenshot of worker w1, a bash call of w2; the session ids."""
    first = await rec.call("bash:run", {"command": "echo one"})
    await rec.call("bash:run", {"command": "echo two", "env": {"API_TOKEN": "s3"}})
    shot = await rec.call("vm:screenshot", {})
    other = await rec.call("bash:run", {"command": "echo other"}, worker="w2")
    return {
        "bash": first["meta"]["session_id"],
        "vm": shot["meta"]["session_id"],
        "other": other["meta"]["session_id"],
    }


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_jsonl_export_has_one_row_per_step_and_the_images_beside_it(
    recording: Recording, tmp_path: Path
) -> None:
    ids = await _record_some(recording)
    out = tmp_path / "out"
    summary = await export_trajectories(recording.clients["alpha"], out)
    assert (summary.trajectories, summary.steps, summary.images) == (3, 4, 1)
    rows = _jsonl(out / "metadata.jsonl")
    assert summary.path == out / "metadata.jsonl"
    by_session: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_session.setdefault(row["session_id"], []).append(row)
    bash = by_session[ids["bash"]]
    assert [r["seq"] for r in bash] == [1, 2]
    assert json.loads(bash[0]["params"]) == {"command": "echo one"}
    assert json.loads(bash[1]["params"])["env"] == {"API_TOKEN": "[redacted]"}
    assert json.loads(bash[0]["data"])["stdout"] == "echo one\n"
    assert (bash[0]["tool"], bash[0]["worker_id"], bash[0]["images_file_names"]) == (
        "bash:run",
        "w1",
        [],
    )
    (shot,) = by_session[ids["vm"]]
    reference = json.loads(shot["data"])["image"]
    assert shot["images_file_names"] == [image_path(reference["$image"], "png")]
    assert (out / shot["images_file_names"][0]).read_bytes() == SCREEN
    assert sorted(p.name for p in out.iterdir()) == ["images", "metadata.jsonl"]


async def test_an_image_shown_by_many_steps_is_one_file(
    recording: Recording, tmp_path: Path
) -> None:
    for _ in range(3):
        await recording.call("vm:screenshot", {})
    out = tmp_path / "out"
    summary = await export_trajectories(recording.clients["alpha"], out)
    assert (summary.steps, summary.images) == (3, 1)
    names = {tuple(row["images_file_names"]) for row in _jsonl(summary.path)}
    (only,) = names
    assert [p.relative_to(out).as_posix() for p in out.rglob("*.png")] == list(only)


async def test_parquet_export_holds_the_same_rows(recording: Recording, tmp_path: Path) -> None:
    await _record_some(recording)
    await export_trajectories(recording.clients["alpha"], tmp_path / "j")
    summary = await export_trajectories(
        recording.clients["alpha"], tmp_path / "p", format="parquet"
    )
    assert summary.path == tmp_path / "p" / "metadata.parquet"
    table = pq.read_table(summary.path)
    assert table.to_pylist() == _jsonl(tmp_path / "j" / "metadata.jsonl")
    assert table.schema.field("images_file_names").type.value_type == "string"


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
async def test_datasets_load_dataset_reads_the_export_with_its_images(
    recording: Recording, tmp_path: Path, fmt: Any
) -> None:
    import datasets

    ids = await _record_some(recording)
    out = tmp_path / "out"
    await export_trajectories(recording.clients["alpha"], out, format=fmt)
    loaded = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(loaded) == 4
    assert "images" in loaded.column_names
    assert "images_file_names" not in loaded.column_names
    (shot,) = [row for row in loaded if row["session_id"] == ids["vm"]]
    (image,) = shot["images"]
    assert image.size == (64, 48)
    assert json.loads(shot["data"])["width"] == 64
    bash = [row for row in loaded if row["session_id"] == ids["bash"]]
    assert [json.loads(row["params"])["command"] for row in bash] == ["echo one", "echo two"]
    assert bash[0]["images"] == []


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
async def test_datasets_load_dataset_reads_an_export_without_images(
    recording: Recording, tmp_path: Path, fmt: Any
) -> None:
    import datasets

    await recording.call("bash:run", {"command": "echo one"})
    out = tmp_path / "out"
    await export_trajectories(recording.clients["alpha"], out, format=fmt)
    loaded = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))
    (row,) = loaded
    assert json.loads(row["data"])["stdout"] == "echo one\n"


async def test_filters_pick_worker_session_resource_type_and_time(
    recording: Recording, tmp_path: Path
) -> None:
    ids = await _record_some(recording)
    client = recording.clients["alpha"]

    async def exported(where: TrajectoryFilter) -> set[str]:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        await export_trajectories(client, out, where=where)
        return {row["session_id"] for row in _jsonl(out / "metadata.jsonl")}

    assert await exported(TrajectoryFilter(worker_id="w2")) == {ids["other"]}
    assert await exported(TrajectoryFilter(session_id=ids["vm"])) == {ids["vm"]}
    assert await exported(TrajectoryFilter(resource_type="bash")) == {ids["bash"], ids["other"]}
    assert await exported(TrajectoryFilter(worker_id="w1", resource_type="vm")) == {ids["vm"]}
    assert await exported(TrajectoryFilter(since=0, until=4e9)) == set(ids.values())
    with pytest.raises(ExportError, match=r"no recorded trajectory matches \(since 4000000000"):
        await exported(TrajectoryFilter(since=4e9))


async def test_another_tenants_worker_is_no_match_not_an_error_of_the_server(
    recording: Recording, tmp_path: Path
) -> None:
    await _record_some(recording)
    beta = recording.clients["beta"]
    with pytest.raises(ExportError, match="no recorded trajectory matches \\(worker w1\\)"):
        await export_trajectories(beta, tmp_path / "out", where=TrajectoryFilter(worker_id="w1"))
    assert not (tmp_path / "out").exists()


async def test_a_refused_filter_is_the_servers_clear_error(
    recording: Recording, tmp_path: Path
) -> None:
    await _record_some(recording)
    with pytest.raises(ExportError, match="listing the trajectories: the server answered 1002"):
        await export_trajectories(
            recording.clients["alpha"], tmp_path / "o", where=TrajectoryFilter(worker_id="a b")
        )


async def test_an_earlier_export_is_kept_unless_overwritten(
    recording: Recording, tmp_path: Path
) -> None:
    await _record_some(recording)
    client = recording.clients["alpha"]
    await export_trajectories(client, tmp_path)
    before = (tmp_path / "metadata.jsonl").read_text()
    with pytest.raises(ExportError, match=r"metadata\.jsonl exists: pass --overwrite"):
        await export_trajectories(client, tmp_path)
    await recording.call("bash:run", {"command": "echo three"})
    summary = await export_trajectories(client, tmp_path, overwrite=True)
    assert summary.steps == 5
    assert (tmp_path / "metadata.jsonl").read_text() != before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no partial files"


async def test_an_unwritable_output_or_a_missing_pyarrow_is_a_clear_error(
    recording: Recording, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _record_some(recording)
    client = recording.clients["alpha"]
    (tmp_path / "file").write_text("")
    with pytest.raises(ExportError, match=r"file: cannot write the export: .*File exists"):
        await export_trajectories(client, tmp_path / "file")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ExportError, match=r"needs pyarrow: pip install 'sandbox\[export\]'"):
        await export_trajectories(client, tmp_path / "p", format="parquet")


async def test_an_image_gone_from_the_server_is_left_out_and_counted(
    recording: Recording, tmp_path: Path
) -> None:
    ids = await _record_some(recording)
    await recording.clients["alpha"].list_trajectories()  # every step (and image) stored
    store = recording.harness.settings.recording_dir / "images"
    for image in store.rglob("*.png"):
        image.unlink()
    summary = await export_trajectories(recording.clients["alpha"], tmp_path / "out")
    assert len(summary.missing_images) == 1
    (shot,) = [r for r in _jsonl(summary.path) if r["session_id"] == ids["vm"]]
    assert shot["images_file_names"] == []


async def test_a_trajectory_deleted_during_the_export_is_left_out(
    recording: Recording, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _record_some(recording)
    client = recording.clients["alpha"]
    fetch = client.get_trajectory

    async def deleted_first(session_id: str, **kw: Any) -> Envelope:
        if session_id == ids["vm"]:  # retention, or another user, between list and read
            assert (await client.delete_trajectory(session_id)).code == 0
        return await fetch(session_id, **kw)

    monkeypatch.setattr(client, "get_trajectory", deleted_first)
    summary = await export_trajectories(client, tmp_path / "out")
    assert (summary.gone, summary.trajectories, summary.steps) == ([ids["vm"]], 2, 3)
    assert ids["vm"] not in summary.path.read_text()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_the_progress_bar_counts_trajectories_on_a_terminal_only(
    recording: Recording, tmp_path: Path
) -> None:
    await _record_some(recording)
    terminal, pipe = _Terminal(), io.StringIO()
    await export_trajectories(
        recording.clients["alpha"], tmp_path / "a", progress=ProgressBar(terminal, 0)
    )
    await export_trajectories(
        recording.clients["alpha"], tmp_path / "b", progress=ProgressBar(pipe)
    )
    drawn = terminal.getvalue()
    assert "\r[" + "#" * 10 + "." * 20 + "] 1/3 trajectories" in drawn
    assert drawn.endswith("] 3/3 trajectories, 4 steps, 1 images\n")
    assert pipe.getvalue() == ""


def test_the_cli_reads_times_as_iso_8601_or_epoch_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert when("1700000000.5") == 1700000000.5
    assert when("2026-12-01T10:00") == when("2026-12-01T10:00:00+00:00") == 1796119200.0
    with pytest.raises(SystemExit) as exited:
        main(["trajectories", "export", str(tmp_path), "--since", "yesterday"])
    assert exited.value.code == 2
    assert "'yesterday' is no time: give epoch seconds or ISO 8601" in capsys.readouterr().err
