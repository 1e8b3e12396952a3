"""``sandbox trajectories export``: recorded trajectories as a dataset on disk.

Decision (issue 14): the export reads the server over its HTTP API
(``GET /trajectories``, ``/trajectories/{id}``, ``/trajectories/images/{sha}``),
never the store's files, so it works from any machine that reaches the server and
sees exactly what the API key's tenant may see. (To export a stopped server's
recordings, start a server on its ``recording_dir``.)

The layout is the Hugging Face ``imagefolder`` one, so ``datasets.load_dataset(OUT)``
reads it as it is (an export without images, as plain JSON or Parquet rows)::

    OUT/metadata.jsonl          (or metadata.parquet with --format parquet)
    OUT/images/ab/ab12....png   each image once, named by the SHA-256 of its bytes

One row per step. Its ``params`` and ``data`` are JSON text: tools return
objects of different shapes, which no one column type holds. An image in ``data``
stays a reference ``{"$image": "<sha256>", "format": "png"}``, and the row's
``images_file_names`` lists the step's image files (relative to OUT), which the loader
turns into the column ``images``, a list of decoded images.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from ..client import Envelope, HTTPServiceClient
from ..errors import ErrorCode
from .images import IMAGE_KEY, is_sha256

ExportFormat = Literal["jsonl", "parquet"]
METADATA_FILES: dict[str, str] = {"jsonl": "metadata.jsonl", "parquet": "metadata.parquet"}
"""The file of the rows, per format (the names the ``imagefolder`` loader looks for)."""
IMAGE_FORMATS = ("png", "jpeg")
COLUMNS = (
    "session_id",
    "worker_id",
    "resource_type",
    "seq",
    "time",
    "action",
    "tool",
    "params",
    "code",
    "message",
    "data",
    "execution_time_ms",
    "trace_id",
    "images_file_names",
)
"""A row's columns, in order."""
_LIST_LIMIT = 10_000
"""Most trajectories one listing returns (the server's bound on ``limit``)."""
_PARQUET_ROWS = 1000
"""Rows per Parquet row group (a group is written as soon as it is full)."""


class ExportError(Exception):
    """The export cannot go on: nothing matches, a refusal by the server, a bad output.

    Not a `SandboxError`: it is no answer of the server and carries no code of the API.
    """


@dataclass(frozen=True)
class TrajectoryFilter:
    """Which trajectories to export; None matches all."""

    worker_id: str | None = None
    session_id: str | None = None
    resource_type: str | None = None
    since: float | None = None
    """Active at or after this time (epoch seconds)."""
    until: float | None = None
    """Started at or before this time (epoch seconds)."""

    def described(self) -> str:
        """The filter in words (``worker w1, resource type vm``); empty when none."""
        given = {
            "worker": self.worker_id,
            "session": self.session_id,
            "resource type": self.resource_type,
            "since": self.since,
            "until": self.until,
        }
        return ", ".join(f"{name} {value}" for name, value in given.items() if value is not None)


@dataclass
class ExportSummary:
    """What an export wrote."""

    path: Path
    """The rows' file."""
    trajectories: int = 0
    steps: int = 0
    image_files: set[str] = field(default_factory=set)
    """The image files the rows reference, relative to the export (each image once,
    written now or by an earlier export)."""
    missing_images: set[str] = field(default_factory=set)
    """Images the server no longer has (retention ran meanwhile): left out of the rows."""
    gone: list[str] = field(default_factory=list)
    """Trajectories listed but deleted before they were read: left out."""

    @property
    def images(self) -> int:
        """How many distinct images the rows reference."""
        return len(self.image_files)


class Progress(Protocol):
    """What the export reports as it goes (`ProgressBar`, or a test's recorder)."""

    def update(self, done: int, total: int, steps: int, images: int) -> None: ...

    def close(self) -> None: ...


class ProgressBar:
    """A one-line progress bar redrawn in place on a terminal, silent elsewhere.

    Args:
        stream: Where to draw (standard error by default).
        min_interval_s: Least time between two redraws.
    """

    def __init__(self, stream: IO[str] | None = None, min_interval_s: float = 0.1) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.min_interval_s = min_interval_s
        self._drawn_at = 0.0
        self._width = 0
        self._live = self.stream.isatty()

    def update(self, done: int, total: int, steps: int, images: int) -> None:
        now = time.monotonic()
        if not self._live or (done < total and now - self._drawn_at < self.min_interval_s):
            return
        self._drawn_at = now
        filled = 30 * done // total if total else 30
        line = (
            f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} trajectories, "
            f"{steps} steps, {images} images"
        )
        self.stream.write("\r" + line.ljust(self._width))
        self._width = len(line)
        self.stream.flush()

    def close(self) -> None:
        if self._live and self._width:
            self.stream.write("\n")
            self.stream.flush()


async def export_trajectories(
    client: HTTPServiceClient,
    out: Path,
    *,
    format: ExportFormat = "jsonl",
    where: TrajectoryFilter | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> ExportSummary:
    """Write the trajectories `where` selects, with their images, under `out`.

    The rows' file is written under a temporary name and renamed when complete,
    so an interrupted export never leaves a truncated one; image files already in
    `out` (an earlier export) are kept, not fetched again.

    Raises:
        ExportError: Nothing matches, the server refused a request (its code and
            message), `out` already holds an export and `overwrite` is off, or
            `out` cannot be written.
    """
    where = where or TrajectoryFilter()
    target = out / METADATA_FILES[format]
    if target.exists() and not overwrite:
        raise ExportError(f"{target} exists: pass --overwrite to replace it")
    listed = await _listing(client, where)
    if not listed:
        raise ExportError(
            "no recorded trajectory matches"
            + (f" ({where.described()})" if where.described() else "")
            + " for this API key: `GET /trajectories` lists what it may export"
        )
    try:
        return await _write(client, out, format, listed, progress)
    except OSError as error:  # a file where the directory goes, no space, no permission
        raise ExportError(f"{out}: cannot write the export: {error}") from None


async def _write(
    client: HTTPServiceClient,
    out: Path,
    format: ExportFormat,
    listed: list[dict[str, Any]],
    progress: Progress | None,
) -> ExportSummary:
    out.mkdir(parents=True, exist_ok=True)
    summary = ExportSummary(path=out / METADATA_FILES[format])
    partial = summary.path.with_name(f".{summary.path.name}.{os.getpid()}.part")
    writer = _ParquetRows(partial) if format == "parquet" else _JsonRows(partial)
    try:
        for done, trajectory in enumerate(listed, 1):
            steps = await _steps(client, trajectory["session_id"])
            if steps is None:
                summary.gone.append(trajectory["session_id"])
                continue
            for line in steps:
                row = dataset_row(line)
                row["images_file_names"] = await _image_files(
                    client, out, line.get("data"), summary
                )
                writer.add(row)
            summary.trajectories += 1
            summary.steps += len(steps)
            if progress is not None:
                progress.update(done, len(listed), summary.steps, summary.images)
        writer.close()
        partial.replace(summary.path)
    finally:
        writer.close()
        partial.unlink(missing_ok=True)
        if progress is not None:
            progress.close()
    return summary


async def _listing(client: HTTPServiceClient, where: TrajectoryFilter) -> list[dict[str, Any]]:
    """The matching trajectories, oldest first (so the rows read in time order)."""
    envelope = await client.list_trajectories(
        worker_id=where.worker_id,
        session_id=where.session_id,
        since=where.since,
        until=where.until,
        limit=_LIST_LIMIT,
    )
    data = _checked(envelope, "listing the trajectories")
    found = [t for t in data.get("trajectories", []) if isinstance(t, dict)]
    if len(found) >= _LIST_LIMIT:  # the most one listing returns: there may be more
        raise ExportError(
            f"{_LIST_LIMIT} or more trajectories match: export them in parts, "
            "by time (--since/--until) or by --worker"
        )
    if where.resource_type is not None:
        found = [t for t in found if t.get("resource_type") == where.resource_type]
    return sorted(found, key=lambda t: (t.get("started_at", 0), str(t.get("session_id"))))


async def _steps(client: HTTPServiceClient, session_id: str) -> list[dict[str, Any]] | None:
    """The trajectory's steps; None when it is gone since the listing (deleted, retention)."""
    envelope = await client.get_trajectory(session_id)
    if envelope.code == ErrorCode.TOOL_NOT_FOUND:
        return None
    data = _checked(envelope, f"fetching trajectory {session_id}")
    return [step for step in data.get("steps", []) if isinstance(step, dict)]


def _checked(envelope: Envelope, doing: str) -> dict[str, Any]:
    if envelope.code != 0:
        raise ExportError(f"{doing}: the server answered {envelope.code}: {envelope.message}")
    data = envelope.data
    return data if isinstance(data, dict) else {}


def dataset_row(line: Mapping[str, Any]) -> dict[str, Any]:
    """One step of the server's JSONL as a dataset row (``file_names`` left empty)."""
    row = {name: line.get(name) for name in COLUMNS}
    row["params"] = json.dumps(line.get("params") or {}, separators=(",", ":"))
    row["data"] = json.dumps(line.get("data"), separators=(",", ":"))
    row["images_file_names"] = []
    return row


def image_references(value: Any) -> Iterator[tuple[str, str]]:
    """Each well-formed image reference in `value`: (sha256, format), in order."""
    if isinstance(value, dict):
        sha256, fmt = value.get(IMAGE_KEY), value.get("format")
        if isinstance(sha256, str) and isinstance(fmt, str):
            if is_sha256(sha256) and fmt in IMAGE_FORMATS:
                yield sha256, fmt
            return
        for item in value.values():
            yield from image_references(item)
    elif isinstance(value, list):
        for item in value:
            yield from image_references(item)


def image_path(sha256: str, fmt: str) -> str:
    """Where an export keeps image `sha256`, relative to its directory."""
    return f"images/{sha256[:2]}/{sha256}.{fmt}"


async def _image_files(
    client: HTTPServiceClient, out: Path, data: Any, summary: ExportSummary
) -> list[str]:
    """The step's image files (fetched unless already there), relative to `out`."""
    names: list[str] = []
    for sha256, fmt in image_references(data):
        name = image_path(sha256, fmt)
        if name in names or sha256 in summary.missing_images:
            continue
        path = out / name
        if name not in summary.image_files and not path.exists():
            envelope = await client.get_trajectory_image(sha256)
            content = envelope.data.get("content") if envelope.code == 0 else None
            # A content address is a promise: bytes that do not hash to it are not kept.
            if not isinstance(content, bytes) or hashlib.sha256(content).hexdigest() != sha256:
                summary.missing_images.add(sha256)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}.part")
            partial.write_bytes(content)
            partial.replace(path)
        names.append(name)
        summary.image_files.add(name)
    return names


class _JsonRows:
    def __init__(self, path: Path) -> None:
        self._file: IO[str] | None = path.open("w", encoding="utf-8")

    def add(self, row: dict[str, Any]) -> None:
        assert self._file is not None
        self._file.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _ParquetRows:
    """Rows into one Parquet file, a row group at a time (pyarrow: ``sandbox[export]``)."""

    def __init__(self, path: Path) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ExportError(
                "--format parquet needs pyarrow: pip install 'sandbox[export]'"
            ) from None
        self._pa = pa
        self._schema = pa.schema(
            [
                ("session_id", pa.string()),
                ("worker_id", pa.string()),
                ("resource_type", pa.string()),
                ("seq", pa.int64()),
                ("time", pa.float64()),
                ("action", pa.string()),
                ("tool", pa.string()),
                ("params", pa.string()),
                ("code", pa.int64()),
                ("message", pa.string()),
                ("data", pa.string()),
                ("execution_time_ms", pa.float64()),
                ("trace_id", pa.string()),
                ("images_file_names", pa.list_(pa.string())),
            ]
        )
        self._writer: Any = pq.ParquetWriter(path, self._schema)
        self._rows: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= _PARQUET_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            table = self._pa.Table.from_pylist(self._rows, schema=self._schema)
            self._writer.write_table(table)
            self._rows = []

    def close(self) -> None:
        if self._writer is not None:
            self._flush()
            self._writer.close()
            self._writer = None
