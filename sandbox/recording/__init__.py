"""Trajectories: every tool call of a recorded session, stored server-side.

`Recorder` takes finished calls off the request path and stores them through a
`TrajectoryStore` (SQLite in WAL mode by default), with images as
content-addressed files (`ImageFiles`). `export` writes a server's trajectories
as a dataset and `replay` runs one again (``sandbox trajectories``); both are
clients of the HTTP API and are not imported here.
"""

from .images import IMAGE_KEY, ImageFiles
from .recorder import REDACTED, Call, Recorder, redact
from .sqlite import SQLiteStore
from .store import Step, TrajectoryStore, TrajectorySummary

__all__ = [
    "IMAGE_KEY",
    "REDACTED",
    "Call",
    "ImageFiles",
    "Recorder",
    "SQLiteStore",
    "Step",
    "TrajectoryStore",
    "TrajectorySummary",
    "redact",
]
