"""The ``sandbox trajectories`` commands: ``export`` and ``replay``.

Their logic is in `sandbox.recording.export` and `sandbox.recording.replay`; this
module reads the command line and maps outcomes to exit codes (export: 0 or 1;
replay: 0 all the same, 1 a step differs, 2 it could not run: the file is no
trajectory, no fresh session, no server, or a step's params were redacted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..client import HTTPClientConfig, HTTPServiceClient
from ..client._config import DEFAULT_SERVER_URL


def add_trajectory_commands(commands: Any) -> None:
    """Add ``trajectories export`` and ``trajectories replay`` to `commands` (subparsers)."""
    trajectories = commands.add_parser("trajectories", help="export or replay recorded sessions")
    subcommands = trajectories.add_subparsers(title="trajectory commands")
    export = subcommands.add_parser(
        "export",
        help="write a server's recorded trajectories as a dataset (rows and image files) "
        "that datasets.load_dataset reads",
    )
    export.add_argument("out", type=Path, metavar="DIR", help="directory of the dataset")
    export.add_argument(
        "--format",
        choices=("jsonl", "parquet"),
        default="jsonl",
        help="the rows' file: metadata.jsonl (default) or metadata.parquet (pip install "
        "'sandbox[export]')",
    )
    export.add_argument("--worker", help="only this worker's trajectories")
    export.add_argument("--session", help="only this session's trajectory")
    export.add_argument("--resource-type", help="only sessions of this resource type")
    export.add_argument(
        "--since", type=when, metavar="TIME", help="active at or after (ISO 8601 or epoch s)"
    )
    export.add_argument(
        "--until", type=when, metavar="TIME", help="started at or before (ISO 8601 or epoch s)"
    )
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export")
    _server_arguments(export)
    export.set_defaults(run=_trajectories_export)
    replay = subcommands.add_parser(
        "replay",
        help="run a trajectory's calls in a fresh session and report where results differ "
        "(exit 1 if any does)",
    )
    replay.add_argument(
        "file", type=Path, metavar="FILE", help="an export (directory or file) or a server's JSONL"
    )
    replay.add_argument("--session", help="replay only this recorded session")
    replay.add_argument(
        "--session-config",
        type=_configs,
        metavar="JSON",
        help="config of the fresh sessions by resource type, as JSON "
        '(e.g. \'{"vm": {"screen_size": [800, 600]}}\')',
    )
    _server_arguments(replay)
    replay.set_defaults(run=_trajectories_replay)


def _server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_SERVER_URL, help="the server")
    parser.add_argument("--api-key", help="the server's API key (or SANDBOX_API_KEY)")


def when(value: str) -> float:
    """A time on the command line: epoch seconds or ISO 8601 (UTC unless it says)."""
    from datetime import datetime, timezone

    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is no time: give epoch seconds or ISO 8601 (2026-12-01T10:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _configs(value: str) -> dict[str, dict[str, Any]]:
    """``--session-config``: a JSON object of session configs by resource type."""
    example = '\'{"vm": {"screen_size": [800, 600]}}\''
    try:
        loaded = json.loads(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error}); e.g. {example}") from None
    if not isinstance(loaded, dict) or not all(isinstance(c, dict) for c in loaded.values()):
        raise argparse.ArgumentTypeError(
            f"a JSON object of session configs by resource type, e.g. {example}"
        )
    return loaded


def _client(args: argparse.Namespace) -> HTTPServiceClient:
    api_key = args.api_key or os.environ.get("SANDBOX_API_KEY")
    config = HTTPClientConfig(base_url=args.url, api_key=api_key, auto_heartbeat=False)
    return HTTPServiceClient(config=config)


def _trajectories_export(args: argparse.Namespace) -> int:
    """Exit 0 when exported, 1 when not (the message says why)."""
    from .export import ExportError, ProgressBar, TrajectoryFilter, export_trajectories

    where = TrajectoryFilter(args.worker, args.session, args.resource_type, args.since, args.until)

    async def export() -> int:
        client = _client(args)
        try:
            summary = await export_trajectories(
                client,
                args.out,
                format=args.format,
                where=where,
                overwrite=args.overwrite,
                progress=ProgressBar(),
            )
        except ExportError as error:
            print(f"sandbox: {error}", file=sys.stderr)
            return 1
        finally:
            await client.close()
        print(
            f"{summary.path}: {summary.trajectories} trajectories, {summary.steps} steps, "
            f"{summary.images} images"
        )
        if summary.gone:
            print(
                f"sandbox: {len(summary.gone)} trajectories were deleted on the server "
                "during the export and are left out",
                file=sys.stderr,
            )
        if summary.missing_images:
            print(
                f"sandbox: {len(summary.missing_images)} images are gone from the server "
                "(retention) and left out",
                file=sys.stderr,
            )
        return 0

    return asyncio.run(export())


def _trajectories_replay(args: argparse.Namespace) -> int:
    """Exit 0 when every step gave the same, 1 when one differs, 2 when it could not run
    (or one of its steps: redacted params)."""
    from ..errors import SandboxError
    from .replay import ReplayError, TrajectoryFileError, read_steps, replay

    try:
        steps = read_steps(args.file)
    except TrajectoryFileError as error:
        print(f"sandbox: {error}", file=sys.stderr)
        return 2
    if args.session is not None:
        steps = [step for step in steps if step.session_id == args.session]
        if not steps:
            print(f"sandbox: {args.file} has no session {args.session!r}", file=sys.stderr)
            return 2

    async def run() -> int:
        client = _client(args)
        try:
            report = await replay(client, steps, sys.stdout, session_configs=args.session_config)
        except (ReplayError, SandboxError) as error:  # no session, no server
            print(f"sandbox: {error}", file=sys.stderr)
            return 2
        finally:
            await client.close()
        if report.not_replayed:
            return 2
        return 0 if report.identical else 1

    return asyncio.run(run())
