"""``sandbox trajectories replay``: run recorded calls again and say where results differ.

Each recorded session is replayed in a fresh session of its resource type, under
a new worker, its steps in order; the session is destroyed afterwards. Every step
compares the result's code; a tool that declares `ToolDeclaration.replay_fields`
(``bash:run``: stdout, stderr, exit_code, cwd) also compares those fields, since
it gives them again for the same calls. What a tool cannot give again (a
screenshot, a timing) is never compared: the declaration is the one place that
says which is which. A step whose params were redacted when recorded (a secret
stored as ``[redacted]``) is not run: the placeholder is no value to send a
tool. It is reported as not replayed, naming the fields, and the replay goes on.

The input is an export (its directory, ``metadata.jsonl`` or ``metadata.parquet``)
or the server's own JSONL (``GET /trajectories/{id}``). A file that is not one (a
line that is no JSON object, one cut short, a step without its tool) is refused
before anything runs, naming the file and the line.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import IO, Any

from ..agent.tools import TOOLSETS
from ..client import HTTPServiceClient
from .export import METADATA_FILES
from .recorder import REDACTED

_SHOWN_CHARS = 80
"""A differing value is shown cut to this many characters."""


class TrajectoryFileError(ValueError):
    """The file is no trajectory: names the file and, where one is at fault, the line."""


class ReplayError(Exception):
    """The replay could not go on: no fresh session could be opened (the server's
    code and message say why)."""


@dataclass(frozen=True)
class RecordedStep:
    """One step as the file recorded it."""

    line: int
    """Where the step is in the file (from 1; the row for Parquet)."""
    session_id: str
    resource_type: str
    seq: int
    tool: str
    params: dict[str, Any]
    code: int
    data: Any


@dataclass(frozen=True)
class Difference:
    """One field whose value the replay did not give again."""

    field: str
    recorded: Any
    replayed: Any

    def __str__(self) -> str:
        return f"{self.field}: recorded {_shown(self.recorded)}, now {_shown(self.replayed)}"


@dataclass
class ReplayReport:
    """How a replay went."""

    steps: int = 0
    differing: int = 0
    """Steps whose code or a compared field differs."""
    uncompared: int = 0
    """Steps whose fields were not compared (their tool declares no replay fields)."""
    not_replayed: int = 0
    """Steps not run: their params were redacted when recorded."""
    sessions: list[str] = field(default_factory=list)
    """The recorded sessions replayed."""

    @property
    def identical(self) -> bool:
        """Every step ran and gave the same."""
        return self.differing == 0 and self.not_replayed == 0


@cache
def replay_fields() -> dict[str, tuple[str, ...]]:
    """Each tool's compared result fields (``bash:run`` -> stdout, ...), from its declaration."""
    return {
        declaration.full_name: declaration.replay_fields
        for declarations in TOOLSETS.values()
        for declaration in declarations
        if declaration.replay_fields
    }


# -- reading ------------------------------------------------------------------------


def read_steps(path: Path) -> list[RecordedStep]:
    """The steps of an export (directory, JSONL or Parquet) or of the server's JSONL.

    Raises:
        TrajectoryFileError: The file is missing, unreadable or not a trajectory,
            naming the line at fault.
    """
    if path.is_dir():
        found = [path / name for name in METADATA_FILES.values() if (path / name).is_file()]
        if not found:
            raise TrajectoryFileError(
                f"{path}: a directory without {' or '.join(METADATA_FILES.values())}: "
                "not an export of `sandbox trajectories export`"
            )
        path = found[0]
    if not path.is_file():
        raise TrajectoryFileError(f"{path}: no such file")
    rows = _parquet_rows(path) if path.suffix == ".parquet" else _json_lines(path)
    steps = [_step(path, number, row) for number, row in rows]
    if not steps:
        raise TrajectoryFileError(f"{path}: no steps in it")
    return steps


def _json_lines(path: Path) -> list[tuple[int, Any]]:
    rows = []
    try:
        with path.open("rb") as file:
            for number, raw in enumerate(file, 1):
                if not raw.strip():
                    continue
                try:
                    rows.append((number, json.loads(raw)))
                except ValueError as error:
                    cut = "" if raw.endswith(b"\n") else " (cut short: a truncated file?)"
                    raise TrajectoryFileError(
                        f"{path}: line {number}: not JSON{cut}: {error}"
                    ) from None
    except OSError as error:
        raise TrajectoryFileError(f"{path}: cannot read it: {error.strerror}") from None
    return rows


def _parquet_rows(path: Path) -> list[tuple[int, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TrajectoryFileError(
            f"{path}: reading Parquet needs pyarrow: pip install 'sandbox[export]'"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow's errors share no base but Exception
        raise TrajectoryFileError(f"{path}: not a readable Parquet file: {error}") from None
    return list(enumerate(table.to_pylist(), 1))


def _step(path: Path, number: int, row: Any) -> RecordedStep:
    def bad(what: str) -> TrajectoryFileError:
        return TrajectoryFileError(f"{path}: line {number}: {what}")

    if not isinstance(row, dict):
        raise bad(f"a step is a JSON object, not {type(row).__name__}")
    for name, kind in (("session_id", str), ("tool", str), ("seq", int), ("code", int)):
        value = row.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise bad(f"`{name}` is missing or not {'text' if kind is str else 'an integer'}")
    params, data = row.get("params", {}), row.get("data")
    if isinstance(params, str):  # an export keeps params and data as JSON text
        params = _json_text(params, bad, "params")
    if isinstance(data, str) and "images_file_names" in row:
        data = _json_text(data, bad, "data")
    if not isinstance(params, dict):
        raise bad("`params` is not an object")
    tool = row["tool"]
    resource_type = row.get("resource_type")
    if not isinstance(resource_type, str) or not resource_type:
        resource_type = tool.split(":", 1)[0]
    return RecordedStep(
        number, row["session_id"], resource_type, row["seq"], tool, params, row["code"], data
    )


def _json_text(text: str, bad: Any, name: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise bad(f"`{name}` is not JSON text: {error}") from None


# -- comparing ----------------------------------------------------------------------


def compare(step: RecordedStep, code: int, data: Any) -> list[Difference] | None:
    """What the replayed result (`code`, `data`) gives otherwise than `step`.

    Returns:
        The differences (empty: the same), or None when only the code could be
        compared and it is the same (the tool declares no replay fields).
    """
    if code != step.code:
        return [Difference("code", step.code, code)]
    fields = replay_fields().get(step.tool, ())
    if not fields:
        return None
    recorded = step.data if isinstance(step.data, Mapping) else {}
    replayed = data if isinstance(data, Mapping) else {}
    return [
        Difference(name, recorded.get(name), replayed.get(name))
        for name in fields
        if recorded.get(name) != replayed.get(name)
    ]


def redacted_fields(value: Any, at: str = "params") -> list[str]:
    """Where `value` holds the recorder's placeholder (``params.env.API_TOKEN``)."""
    if isinstance(value, dict):
        return [
            found for key, item in value.items() for found in redacted_fields(item, f"{at}.{key}")
        ]
    if isinstance(value, list):
        return [
            found
            for index, item in enumerate(value)
            for found in redacted_fields(item, f"{at}[{index}]")
        ]
    return [at] if value == REDACTED else []


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


# -- running ------------------------------------------------------------------------


def by_session(steps: Iterable[RecordedStep]) -> dict[str, list[RecordedStep]]:
    """The steps of each recorded session, in recorded order (sessions as first met)."""
    sessions: dict[str, list[RecordedStep]] = {}
    for step in steps:
        sessions.setdefault(step.session_id, []).append(step)
    for session in sessions.values():
        session.sort(key=lambda step: step.seq)
    return sessions


async def replay(
    client: HTTPServiceClient,
    steps: Iterable[RecordedStep],
    out: IO[str],
    *,
    session_configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> ReplayReport:
    """Run each recorded session's steps in a fresh session; report to `out`, step by step.

    Args:
        client: The server to replay on.
        steps: The recorded steps (`read_steps`).
        out: Where the report goes.
        session_configs: The fresh sessions' config, by resource type
            (``{"vm": {"screen_size": [800, 600]}}``); none for the others.

    Raises:
        ReplayError: A fresh session could not be opened.
        SandboxError: The server could not be reached.
    """
    report = ReplayReport()
    for session_id, session in by_session(steps).items():
        resource_type = session[0].resource_type
        worker = f"replay-{uuid.uuid4().hex[:8]}"
        config = (session_configs or {}).get(resource_type)
        created = await client.create_session(resource_type, config, worker_id=worker)
        if created.code != 0:
            raise ReplayError(
                f"could not open a fresh {resource_type} session to replay {session_id}: "
                f"{created.code} {created.message}"
            )
        report.sessions.append(session_id)
        out.write(f"{session_id} ({resource_type}, {len(session)} steps) as worker {worker}\n")
        try:
            for step in session:
                redacted = redacted_fields(step.params)
                if redacted:
                    _report_not_replayed(step, redacted, report, out)
                    continue
                result = await client.execute(step.tool, step.params, worker_id=worker)
                _report_step(step, compare(step, result.code, result.data), report, out)
        finally:
            await client.destroy_session(resource_type, worker_id=worker)
    out.write(
        f"{report.steps} steps in {len(report.sessions)} sessions: {report.differing} differ, "
        f"{report.uncompared} compared by code only"
        + (f", {report.not_replayed} not replayed (redacted params)" if report.not_replayed else "")
        + "\n"
    )
    return report


def _report_not_replayed(
    step: RecordedStep, redacted: list[str], report: ReplayReport, out: IO[str]
) -> None:
    report.steps += 1
    report.not_replayed += 1
    out.write(
        f"  #{step.seq:<4} {step.tool:<22} NOT REPLAYED (line {step.line}): "
        f"{', '.join(redacted)} redacted when recorded; the value is not in the file\n"
    )
    out.flush()


def _report_step(
    step: RecordedStep, found: list[Difference] | None, report: ReplayReport, out: IO[str]
) -> None:
    report.steps += 1
    where = f"  #{step.seq:<4} {step.tool:<22}"
    if found:
        report.differing += 1
        out.write(f"{where} DIFFERS (line {step.line})\n")
        for difference in found:
            out.write(f"        {difference}\n")
    elif found is None:
        report.uncompared += 1
        out.write(f"{where} same code (no replay fields declared)\n")
    else:
        out.write(f"{where} same\n")
    out.flush()  # a long replay shows each step as it goes, through a pipe too
