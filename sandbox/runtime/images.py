"""Session images: build contexts, builds with progress, and their state.

Every image builds ``FROM debian:bookworm-slim``. Where that base is neither
present nor pullable (no registry), ``scripts/bootstrap-base-image.sh`` creates it
with debootstrap and ``docker import``; the same script serves the CLI, the
server's warmup and CI.

Python packages an image needs beyond Debian's come as wheels: an image whose
directory holds ``wheels.txt`` (exact pins, ``name==version``) gets those wheels
in its build context at ``images/<name>/wheels/``. They are made on the host,
where PyPI is reachable (inside containers its TLS is not trusted), with
``pip wheel --no-deps``: it downloads a published wheel as is and builds one from
the source release of pure-Python packages that publish none (pyautogui and most
of its helpers). The wheels are cached (``~/.cache/sandbox/wheels/<name>``) and
nothing is fetched while every pin is there, so rebuilds work offline.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BackendError
from .base import BuildContext, Runtime

log = logging.getLogger(__name__)

BASE_IMAGE = "debian:bookworm-slim"
_AGENT_DIR = Path(__file__).resolve().parent.parent / "agent"
WHEELS_FILE = "wheels.txt"
NAMESPACE_ARG = "NAMESPACE"
"""Build argument every image gets: the namespace its sibling images are tagged in.
An image built on another (``FROM ${NAMESPACE}/desktop:latest``) names it so, and
that image is built first."""
_PARENT = re.compile(r"^FROM\s+\$\{?" + NAMESPACE_ARG + r"\}?/([a-z0-9-]+):latest\b", re.MULTILINE)
_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.!+_-]+)")

Progress = Callable[[str], None]


class ImageState(str, enum.Enum):
    """Where an image stands."""

    UNKNOWN = "unknown"
    MISSING = "missing"
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"


@dataclass
class ImageStatus:
    """One image's state as `/warmup/status` reports it."""

    tag: str
    state: ImageState = ImageState.UNKNOWN
    progress: str = ""
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "image": self.tag,
            "state": self.state.value,
            "progress": self.progress,
            "error": self.error,
            "build_seconds": (
                round(self.finished_at - self.started_at, 1)
                if self.started_at and self.finished_at
                else None
            ),
        }


class ImageService:
    """Finds and builds the images of the resource types.

    Args:
        runtime: Where images are inspected and built.
        images_dir: Directory holding ``<name>/Dockerfile``.
        namespace: Images are tagged ``<namespace>/<name>:latest``.
    """

    def __init__(
        self,
        runtime: Runtime,
        images_dir: Path,
        namespace: str,
        wheel_cache: Path | None = None,
    ) -> None:
        self._runtime = runtime
        self._images_dir = images_dir
        self._namespace = namespace
        self._wheel_cache = wheel_cache or _default_wheel_cache()
        self._status: dict[str, ImageStatus] = {}
        self._builds: dict[str, asyncio.Task[None]] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._base_lock = asyncio.Lock()

    def tag(self, name: str) -> str:
        """The tag of image `name` (``sandbox/shell:latest``)."""
        return f"{self._namespace}/{name}:latest"

    def status(self, name: str) -> ImageStatus:
        """The last known state of image `name`."""
        return self._status.setdefault(name, ImageStatus(self.tag(name)))

    def context(self, name: str) -> BuildContext:
        """Build context of image `name`: its directory plus the agent package.

        Raises:
            BackendError: There is no ``<images_dir>/<name>/Dockerfile``.
        """
        image_dir = self._images_dir / name
        if not (image_dir / "Dockerfile").is_file():
            raise BackendError(
                f"no Dockerfile for image {name!r} in {image_dir}: set SANDBOX_IMAGES_DIR "
                "to the images/ directory of a sandbox checkout"
            )
        # The pinned wheels come from the cache below; a wheels/ folder in the tree
        # (scripts/fetch-wheels.sh fills it for compose) must not change the context.
        files = {
            f"images/{name}/{p.relative_to(image_dir)}": p
            for p in _files(image_dir)
            if p.relative_to(image_dir).parts[0] != "wheels"
        }
        files.update({f"sandbox/agent/{p.relative_to(_AGENT_DIR)}": p for p in _files(_AGENT_DIR)})
        pins = self.pinned_wheels(name)
        if pins:
            cached, missing = self._cached_wheels(name, pins)
            if missing:
                raise BackendError(
                    f"wheels {', '.join(missing)} of image {name!r} are not in "
                    f"{self.wheel_dir(name)}: building the image fetches them"
                )
            files.update({f"images/{name}/wheels/{wheel.name}": wheel for wheel in cached})
        return BuildContext(
            dockerfile=f"images/{name}/Dockerfile",
            files=files,
            buildargs={NAMESPACE_ARG: self._namespace},
        )

    def parent(self, name: str) -> str | None:
        """The image of this namespace that image `name` is built on, if any."""
        dockerfile = self._images_dir / name / "Dockerfile"
        match = _PARENT.search(dockerfile.read_text()) if dockerfile.is_file() else None
        return match[1] if match else None

    def wheel_dir(self, name: str) -> Path:
        """Where the wheels of image `name` are cached."""
        return self._wheel_cache / name

    def pinned_wheels(self, name: str) -> list[tuple[str, str]]:
        """The ``(name, version)`` pins of ``images/<name>/wheels.txt`` (none: no file).

        Raises:
            BackendError: A line is not an exact ``name==version`` pin.
        """
        path = self._images_dir / name / WHEELS_FILE
        if not path.is_file():
            return []
        pins = []
        for number, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            match = _PIN.fullmatch(line)
            if match is None:
                raise BackendError(f"{path}:{number}: {line!r} is not an exact name==version pin")
            pins.append((match[1], match[2]))
        return pins

    def _cached_wheels(
        self, name: str, pins: list[tuple[str, str]]
    ) -> tuple[list[Path], list[str]]:
        """The cached wheel of each pin, and the pins that have none."""
        directory = self.wheel_dir(name)
        available: dict[tuple[str, str], Path] = {}
        if directory.is_dir():
            for wheel in sorted(directory.glob("*.whl")):
                parts = wheel.name.split("-")
                if len(parts) >= 5:
                    available[(_normalized(parts[0]), parts[1].lower())] = wheel
        cached: list[Path] = []
        missing: list[str] = []
        for project, version in pins:
            found = available.get((_normalized(project), version.lower()))
            if found is None:
                missing.append(f"{project}=={version}")
            else:
                cached.append(found)
        return cached, missing

    async def fetch_wheels(self, name: str, on_progress: Progress | None = None) -> None:
        """Put the wheels ``images/<name>/wheels.txt`` pins into the cache, if missing.

        Raises:
            BackendError: pip failed (PyPI unreachable and the cache incomplete).
        """
        pins = self.pinned_wheels(name)
        if not pins:
            return
        _, missing = self._cached_wheels(name, pins)
        if not missing:
            return
        directory = self.wheel_dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        if on_progress is not None:
            on_progress(f"fetching wheels {', '.join(missing)} into {directory}")
        status, tail = await _run_streaming(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--disable-pip-version-check",
                "--wheel-dir",
                str(directory),
                *missing,
            ],
            on_progress,
        )
        _, still_missing = self._cached_wheels(name, pins)
        if status != 0 or still_missing:
            raise BackendError(
                f"fetching the wheels of image {name!r} failed (pip status {status}); PyPI "
                "must be reachable from this host once, or copy the wheels into "
                f"{directory}:\n" + "\n".join(tail)
            )

    async def is_present(self, name: str) -> bool:
        """Whether image `name` exists locally (and record it)."""
        present = await self._runtime.image_exists(self.tag(name))
        status = self.status(name)
        if status.state is not ImageState.BUILDING:
            status.state = ImageState.READY if present else ImageState.MISSING
        return present

    async def ensure(self, name: str, on_progress: Progress | None = None) -> None:
        """Build image `name` unless it is present; concurrent callers share one build."""
        if await self.is_present(name):
            return
        await self.build(name, on_progress)

    def ensure_in_background(self, name: str) -> asyncio.Task[None]:
        """Start `ensure(name)` without waiting; its failure is kept in `status(name)`."""
        task = asyncio.create_task(self.ensure(name))
        self._pending.add(task)
        task.add_done_callback(self._settle)
        return task

    def _settle(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("image build failed: %s", task.exception())

    async def build(self, name: str, on_progress: Progress | None = None) -> None:
        """Build image `name` (reusing Docker's layer cache); one build per image at a time.

        Raises:
            BackendError: The base image could not be made or the build failed.
        """
        task = self._builds.get(name)
        if task is None or task.done():
            task = asyncio.create_task(self._build(name, on_progress))
            self._builds[name] = task
        await asyncio.shield(task)

    async def _build(self, name: str, on_progress: Progress | None) -> None:
        status = self.status(name)
        status.state, status.error, status.progress = ImageState.BUILDING, None, "starting"
        status.started_at, status.finished_at = time.time(), None

        def progress(line: str) -> None:
            status.progress = line[:200]
            if on_progress is not None:
                on_progress(line)

        try:
            await self.ensure_base(progress)
            parent = self.parent(name)
            if parent is not None:
                await self.ensure(parent, progress)
            await self.fetch_wheels(name, progress)
            await self._runtime.build_image(self.tag(name), self.context(name), progress)
        except BackendError as exc:
            status.state, status.error = ImageState.FAILED, exc.message
            raise
        finally:
            status.finished_at = time.time()
        status.state, status.progress = ImageState.READY, "built"
        log.info("built image %s in %.1fs", status.tag, status.finished_at - status.started_at)

    async def ensure_base(self, on_progress: Progress | None = None) -> None:
        """Make sure ``debian:bookworm-slim`` exists, creating it when it cannot be pulled."""
        async with self._base_lock:
            if await self._runtime.image_exists(BASE_IMAGE):
                return
            script = self._images_dir.parent / "scripts" / "bootstrap-base-image.sh"
            if not script.is_file():
                raise BackendError(
                    f"base image {BASE_IMAGE} is missing and {script} is not there to create "
                    "it: pull it, or run scripts/bootstrap-base-image.sh from a checkout"
                )
            status, tail = await _run_streaming(["bash", str(script), BASE_IMAGE], on_progress)
            if status != 0:
                raise BackendError(f"creating base image {BASE_IMAGE} failed:\n" + "\n".join(tail))


async def _run_streaming(argv: list[str], on_progress: Progress | None) -> tuple[int, list[str]]:
    """Run `argv`, passing each output line to `on_progress`; its status and last lines."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert process.stdout is not None
    tail: list[str] = []
    async for raw in process.stdout:
        line = raw.decode("utf-8", "replace").rstrip()
        tail = [*tail[-19:], line]
        if on_progress is not None and line:
            on_progress(line)
    return await process.wait(), tail


def _default_wheel_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sandbox" / "wheels"


def _normalized(project: str) -> str:
    """A project name as wheel file names spell it (PEP 427: lower case, ``_``)."""
    return re.sub(r"[-_.]+", "_", project).lower()


def _files(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
