"""Screen videos of ``vm`` sessions, kept after the session ends.

Each recording is two files in one directory: ``<recording id>.mp4`` and
``<recording id>.json`` (who made it: tenant, worker, session; when; its size).
A video is written to a temporary file and renamed into place once complete,
so a listed video is never half written. The ids are the server's own
(``<session id>.<n>``), never a caller's path. Past `total_max_bytes` the
oldest videos are deleted, and so is a video older than `max_age_s` (checked
whenever a video is kept or the videos are listed). Files that hold no kept
video (a copy under way, or what a failed or killed copy left: a ``.partial-``
file, an id reserved as ``{}``, unreadable metadata, a video without any) count
towards the total, and are deleted once `abandoned_after_s` has passed since
they last changed. Methods do blocking file I/O: call them in a thread;
`writing`, used on the event loop while a video is copied, moves its own file
I/O to a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

RECORDING_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$"
_RECORDING_ID = re.compile(RECORDING_ID_PATTERN)
_PARTIAL_PREFIX = ".partial-"


@dataclass(frozen=True)
class Video:
    """One kept recording."""

    recording_id: str
    session_id: str
    worker_id: str
    tenant: str
    started_at: float
    stopped_at: float
    size: int
    fps: float
    complete: bool
    """All of the video was copied (not cut by the size or time bound of the copy)."""
    truncated: bool
    """The recording itself was ended by its size or time cap."""

    def as_dict(self) -> dict[str, Any]:
        """The video as the API lists it (without the tenant)."""
        data = asdict(self)
        del data["tenant"]
        return data


@dataclass(frozen=True)
class _Leftover:
    """Files that hold no kept video: a copy under way, or what one left behind."""

    paths: tuple[Path, ...]
    size: int
    changed_at: float


class VideoStore:
    """The kept videos, under one directory.

    Args:
        root: Their directory (made with the first video).
        total_max_bytes: Most bytes of videos kept; the oldest go first.
        max_age_s: Videos stopped longer ago are deleted.
        abandoned_after_s: Files of no kept video unchanged this long are deleted:
            longer than any copy may take, so only a dead copy's files go.
        clock: The wall clock (tests pass their own).
    """

    def __init__(
        self,
        root: Path,
        total_max_bytes: int,
        max_age_s: float = float("inf"),
        abandoned_after_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self._total_max_bytes = total_max_bytes
        self._max_age_s = max_age_s
        self._abandoned_after_s = abandoned_after_s
        self._clock = clock
        self._lock = threading.Lock()

    @contextlib.asynccontextmanager
    async def writing(self, session_id: str) -> AsyncIterator[tuple[str, BinaryIO]]:
        """A new recording id of `session_id` and a file to write its video to.

        The file is the recording's once `keep` is called for the id; it is
        removed if the block raises or the video is never kept. The caller is on
        the event loop: reserving, placing and removing the files run in a
        thread here, and the caller writes to the file in a thread too.
        """
        recording_id, temp, file = await asyncio.to_thread(self._reserve, session_id)
        try:
            yield recording_id, file
            await asyncio.to_thread(self._place, recording_id, temp, file)
        except BaseException:
            await asyncio.to_thread(self._abandon, recording_id, temp, file)
            raise

    def _reserve(self, session_id: str) -> tuple[str, Path, BinaryIO]:
        """A new recording id, its metadata file taken, and a temporary file open."""
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            recording_id = self._next_id(session_id)
            # Reserve the id: the next one of this session is another.
            (self.root / f"{recording_id}.json").write_text("{}")
        fd, temp = tempfile.mkstemp(prefix=_PARTIAL_PREFIX, suffix=".mp4", dir=self.root)
        return recording_id, Path(temp), os.fdopen(fd, "wb")

    def _place(self, recording_id: str, temp: Path, file: BinaryIO) -> None:
        file.close()
        os.replace(temp, self.root / f"{recording_id}.mp4")

    def _abandon(self, recording_id: str, temp: Path, file: BinaryIO) -> None:
        file.close()
        temp.unlink(missing_ok=True)
        (self.root / f"{recording_id}.json").unlink(missing_ok=True)

    def keep(self, video: Video) -> None:
        """Record `video`'s metadata (its file is in place), then enforce the total."""
        path = self.root / f"{video.recording_id}.json"
        path.write_text(json.dumps(asdict(video)))
        self._enforce_retention()

    def find(
        self, tenant: str, *, worker_id: str | None = None, session_id: str | None = None
    ) -> list[Video]:
        """The tenant's videos, newest first, of one worker or session when given."""
        self._enforce_retention()
        videos = [
            video
            for video in self._scan()[0]
            if video.tenant == tenant
            and (worker_id is None or video.worker_id == worker_id)
            and (session_id is None or video.session_id == session_id)
        ]
        return sorted(videos, key=lambda video: video.stopped_at, reverse=True)

    def get(self, tenant: str, recording_id: str) -> tuple[Video, Path] | None:
        """The tenant's video `recording_id` (or the latest of session `recording_id`)."""
        if _RECORDING_ID.fullmatch(recording_id) is None:
            return None
        video = self._load(self.root / f"{recording_id}.json")
        if video is None or video.tenant != tenant:
            latest = self.find(tenant, session_id=recording_id)
            if not latest:
                return None
            video = latest[0]
        return video, self.root / f"{video.recording_id}.mp4"

    def delete(self, tenant: str, recording_id: str) -> bool:
        """Delete the tenant's video `recording_id`; False if it has none such."""
        found = self.get(tenant, recording_id)
        if found is None or found[0].recording_id != recording_id:
            return False
        self._remove(recording_id)
        return True

    def _next_id(self, session_id: str) -> str:
        n = 1
        while (self.root / f"{session_id}.{n}.json").exists():
            n += 1
        return f"{session_id}.{n}"

    def _load(self, path: Path) -> Video | None:
        try:
            video = Video(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None  # missing, an id reserved while its video is copied, or damaged
        well_formed = isinstance(video.size, int) and isinstance(video.stopped_at, (int, float))
        return video if well_formed and video.recording_id == path.stem else None

    def _scan(self) -> tuple[list[Video], list[_Leftover]]:
        """The kept videos, and the files that hold none."""
        try:
            entries = {entry.name: Path(entry.path) for entry in os.scandir(self.root)}
        except FileNotFoundError:
            return [], []
        videos: list[Video] = []
        leftovers: list[_Leftover] = []
        for name, path in entries.items():
            if name.startswith(_PARTIAL_PREFIX):
                files = [path]
            elif path.suffix == ".json":
                video = self._load(path)
                if video is not None:
                    videos.append(video)
                    continue
                files = [path]
                if f"{path.stem}.mp4" in entries:
                    files.append(entries[f"{path.stem}.mp4"])
            elif path.suffix == ".mp4" and f"{path.stem}.json" not in entries:
                files = [path]
            else:
                continue
            leftover = _leftover(files)
            if leftover is not None:
                leftovers.append(leftover)
        return videos, leftovers

    def _remove(self, recording_id: str) -> None:
        (self.root / f"{recording_id}.mp4").unlink(missing_ok=True)
        (self.root / f"{recording_id}.json").unlink(missing_ok=True)

    def _enforce_retention(self) -> None:
        """Delete abandoned files and the videos past the age bound, then the
        oldest videos past the total (in which the files of copies under way count)."""
        with self._lock:
            videos, leftovers = self._scan()
            now = self._clock()
            total = 0
            for leftover in leftovers:
                if leftover.changed_at < now - self._abandoned_after_s:
                    for path in leftover.paths:
                        path.unlink(missing_ok=True)
                else:
                    total += leftover.size
            videos.sort(key=lambda video: video.stopped_at)
            too_old = now - self._max_age_s
            total += sum(video.size for video in videos)
            while videos and (total > self._total_max_bytes or videos[0].stopped_at < too_old):
                oldest = videos.pop(0)
                self._remove(oldest.recording_id)
                total -= oldest.size


def _leftover(paths: Iterable[Path]) -> _Leftover | None:
    """The files' total size and latest change (None if all of them are gone)."""
    found: list[tuple[Path, os.stat_result]] = []
    for path in paths:
        try:
            found.append((path, path.stat()))
        except FileNotFoundError:
            continue  # a copy just placed or removed it
    if not found:
        return None
    return _Leftover(
        paths=tuple(path for path, _ in found),
        size=sum(stat.st_size for _, stat in found),
        changed_at=max(stat.st_mtime for _, stat in found),
    )
