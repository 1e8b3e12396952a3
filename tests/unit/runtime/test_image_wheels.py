"""The desktop image's wheels: pins, the host cache and the build context.

`ImageService` puts the wheels ``images/<name>/wheels.txt`` pins into the build
context; these tests use a fake images directory and cache, and no Docker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.errors import BackendError
from sandbox.runtime.docker import DockerRuntime
from sandbox.runtime.images import ImageService

REPO_IMAGES = Path(__file__).resolve().parents[3] / "images"


@pytest.fixture
def runtime() -> Iterator[DockerRuntime]:
    runtime = DockerRuntime(threads=1)
    yield runtime
    runtime.close()


def _service(runtime: DockerRuntime, images: Path, cache: Path) -> ImageService:
    return ImageService(runtime, images, "sandbox", wheel_cache=cache)


def _image(images: Path, pins: str) -> None:
    (images / "desk").mkdir(parents=True)
    (images / "desk" / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    (images / "desk" / "wheels.txt").write_text(pins)


def test_the_desktop_pins_exact_versions(runtime: DockerRuntime, tmp_path: Path) -> None:
    pins = _service(runtime, REPO_IMAGES, tmp_path).pinned_wheels("desktop")
    assert ("pyautogui", "0.9.54") in pins
    assert {name for name, _ in pins} >= {"pyautogui", "pytweening", "pymsgbox", "pyscreeze"}


def test_an_image_without_wheels_has_none(runtime: DockerRuntime, tmp_path: Path) -> None:
    assert _service(runtime, REPO_IMAGES, tmp_path).pinned_wheels("shell") == []


def test_cached_wheels_go_into_the_build_context(runtime: DockerRuntime, tmp_path: Path) -> None:
    images, cache = tmp_path / "images", tmp_path / "cache"
    _image(images, "# comment\nPyAutoGUI==0.9.54  # the one we need\n\npy.Tweening==1.2.0\n")
    (cache / "desk").mkdir(parents=True)
    for name in (
        "pyautogui-0.9.54-py3-none-any.whl",
        "py_tweening-1.2.0-py3-none-any.whl",
        "pyautogui-0.9.53-py3-none-any.whl",  # another version: not pinned, left out
    ):
        (cache / "desk" / name).write_bytes(b"PK")
    service = _service(runtime, images, cache)

    context = service.context("desk")
    asyncio.run(service.fetch_wheels("desk"))  # all there: nothing to fetch, no pip

    wheels = sorted(path for path in context.files if path.startswith("images/desk/wheels/"))
    assert wheels == [
        "images/desk/wheels/py_tweening-1.2.0-py3-none-any.whl",
        "images/desk/wheels/pyautogui-0.9.54-py3-none-any.whl",
    ]


def test_a_missing_wheel_stops_the_context(runtime: DockerRuntime, tmp_path: Path) -> None:
    images = tmp_path / "images"
    _image(images, "pyautogui==0.9.54\n")
    with pytest.raises(BackendError, match=r"pyautogui==0\.9\.54 .* not in"):
        _service(runtime, images, tmp_path / "cache").context("desk")


@pytest.mark.parametrize("line", ["pyautogui", "pyautogui>=0.9", "pyautogui==0.9.*"])
def test_pins_must_be_exact(runtime: DockerRuntime, tmp_path: Path, line: str) -> None:
    images = tmp_path / "images"
    _image(images, f"{line}\n")
    with pytest.raises(BackendError, match="not an exact name==version pin"):
        _service(runtime, images, tmp_path / "cache").pinned_wheels("desk")
