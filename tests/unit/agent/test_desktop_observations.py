"""``vm.screenshot``'s formats, downscaling and pointer, and ``vm.upload_file`` /
``vm.download_file``, over the recording stand-in for the X display."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from sandbox.agent import AgentContext
from sandbox.agent.desktop.observation import fit_within
from sandbox.agent.desktop.session import DesktopSettings
from sandbox.agent.desktop.xlib import Frame
from sandbox.agent.tools.desktop import MAX_FILE_BYTES
from sandbox.agent.toolsets.desktop import DesktopToolset

from .desktop_fakes import FakeDesktop, call, refused

GREY = (90, 90, 90)


@pytest.fixture
def desktop() -> FakeDesktop:
    fake = FakeDesktop()
    # A flat grey screen (BGRX), so a drawn pointer stands out.
    width, height = fake.display.width, fake.display.height
    pixels = bytes((*GREY, 0)) * (width * height)
    fake.display.capture = lambda: Frame(width, height, 4 * width, pixels)  # type: ignore[method-assign]
    return fake


@pytest.fixture
def tools(tmp_path: Path, desktop: FakeDesktop) -> Iterator[DesktopToolset]:
    home = tmp_path / "home"
    home.mkdir()
    context = AgentContext(
        home=str(home), state_dir=str(tmp_path / "state"), output_limit=1 << 20, child_env={}
    )
    toolset = DesktopToolset(context, DesktopSettings(), desktop=desktop)  # type: ignore[arg-type]
    yield toolset
    toolset.close()


def image_of(data: dict[str, Any]) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data["image"])))
    image.load()
    return image


# -- screenshot ---------------------------------------------------------------------


def test_the_default_screenshot_keeps_its_fields(tools: DesktopToolset) -> None:
    data = call(tools, "screenshot")
    assert set(data) == {"image", "size", "format"}
    assert (data["format"], data["size"]) == ("png", [1024, 768])
    assert image_of(data).getpixel((500, 400)) == GREY


def test_a_jpeg_screenshot_decodes_to_the_screen(tools: DesktopToolset) -> None:
    data = call(tools, "screenshot", format="jpeg")
    image = image_of(data)
    assert (image.format, image.size) == ("JPEG", (1024, 768))
    assert (data["format"], data["size"]) == ("jpeg", [1024, 768])
    assert "screen_size" not in data
    pixel = image.getpixel((500, 400))
    assert isinstance(pixel, tuple)
    assert all(abs(a - b) <= 3 for a, b in zip(pixel, GREY, strict=True))


@pytest.mark.parametrize("image_format", ["png", "jpeg"])
@pytest.mark.parametrize(
    ("bounds", "size"),
    [
        ({"max_width": 512}, (512, 384)),  # half: an integral factor
        ({"max_height": 600}, (800, 600)),
        ({"max_width": 640, "max_height": 300}, (400, 300)),  # the tighter bound wins
        ({"max_width": 4000, "max_height": 4000}, (1024, 768)),  # never upscaled
    ],
)
def test_a_bounded_screenshot_keeps_the_aspect_ratio_and_tells_the_screen_size(
    tools: DesktopToolset, image_format: str, bounds: dict[str, int], size: tuple[int, int]
) -> None:
    data = call(tools, "screenshot", format=image_format, **bounds)
    assert image_of(data).size == size
    assert data["size"] == list(size)
    assert data["screen_size"] == [1024, 768]


def test_the_pointer_is_drawn_where_it_is_only_when_asked(
    tools: DesktopToolset, desktop: FakeDesktop
) -> None:
    call(tools, "move", x=300, y=200)
    plain = image_of(call(tools, "screenshot"))
    drawn = image_of(call(tools, "screenshot", cursor=True))
    changed = [
        (x, y)
        for x in range(280, 330)
        for y in range(180, 240)
        if plain.getpixel((x, y)) != drawn.getpixel((x, y))
    ]
    assert changed
    # The arrow's tip is at the pointer; it points up and to the left.
    assert min(changed) == (300, 200)
    assert all(x >= 300 and y >= 200 for x, y in changed)
    far = drawn.crop((600, 500, 700, 600))
    assert far.getcolors() == [(100 * 100, GREY)]


def test_the_pointer_shrinks_with_a_downscaled_screenshot(tools: DesktopToolset) -> None:
    call(tools, "move", x=400, y=400)
    image = image_of(call(tools, "screenshot", cursor=True, max_width=512))
    assert image.getpixel((202, 206)) != GREY  # inside the arrow, at half scale


def test_jpeg_quality_trades_size_for_fidelity(tools: DesktopToolset, desktop: FakeDesktop) -> None:
    width, height = desktop.display.width, desktop.display.height
    noise = os.urandom(4 * width * height)
    desktop.display.capture = lambda: Frame(width, height, 4 * width, noise)  # type: ignore[method-assign]
    low = call(tools, "screenshot", format="jpeg", quality=10)["image"]
    high = call(tools, "screenshot", format="jpeg", quality=95)["image"]
    assert len(low) * 2 < len(high)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"format": "gif"}, "format"),
        ({"quality": 0}, "quality"),
        ({"quality": 96}, "quality"),
        ({"max_width": 0}, "max_width"),
        ({"max_height": 1.5}, "max_height"),
        ({"cursor": "yes"}, "cursor"),
    ],
)
def test_bad_screenshot_parameters_are_refused_naming_the_field(
    tools: DesktopToolset, params: dict[str, Any], field: str
) -> None:
    assert refused(tools, "screenshot", **params).field == field


@pytest.mark.parametrize(
    ("bounds", "size"),
    [
        ((None, None), (1920, 1080)),
        ((1280, None), (1280, 720)),
        ((None, 1), (2, 1)),
        ((1, 1), (1, 1)),  # never below one pixel
    ],
)
def test_fit_within(bounds: tuple[int | None, int | None], size: tuple[int, int]) -> None:
    assert fit_within(1920, 1080, *bounds) == size


# -- files ----------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_an_uploaded_file_downloads_the_same(tools: DesktopToolset, tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    written = call(tools, "upload_file", path="docs/a.bin", content_base64=b64(data))
    home = tmp_path / "home"
    assert written == {"path": str(home / "docs" / "a.bin"), "size": len(data)}
    assert (home / "docs" / "a.bin").read_bytes() == data
    read = call(tools, "download_file", path="~/docs/a.bin")
    assert read == {
        "path": str(home / "docs" / "a.bin"),
        "content_base64": b64(data),
        "size": 256000,
    }


def test_an_empty_file_round_trips(tools: DesktopToolset, tmp_path: Path) -> None:
    target = str(tmp_path / "empty")
    assert call(tools, "upload_file", path=target, content_base64="")["size"] == 0
    assert call(tools, "download_file", path=target)["content_base64"] == ""


def test_an_upload_past_the_limit_is_refused_naming_its_field(
    tools: DesktopToolset, tmp_path: Path
) -> None:
    error = refused(tools, "upload_file", path="big", content_base64="A" * (22_369_624 + 4))
    assert error.field == "content_base64"
    assert not (tmp_path / "home" / "big").exists()


def test_a_download_past_the_limit_is_refused_naming_the_path(
    tools: DesktopToolset, tmp_path: Path
) -> None:
    big = tmp_path / "home" / "big"
    with big.open("wb") as file:
        file.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing really written
    error = refused(tools, "download_file", path="big")
    assert error.field == "path"
    assert "16 MiB" in str(error)
    os.truncate(big, MAX_FILE_BYTES)
    assert call(tools, "download_file", path="big")["size"] == MAX_FILE_BYTES


def test_bad_base64_is_refused_naming_its_field(tools: DesktopToolset) -> None:
    assert refused(tools, "upload_file", path="x", content_base64="not base64!").field == (
        "content_base64"
    )


def test_a_planted_fifo_is_refused_without_hanging(tools: DesktopToolset, tmp_path: Path) -> None:
    fifo = tmp_path / "home" / "pipe"
    os.mkfifo(fifo)
    assert refused(tools, "download_file", path="pipe").field == "path"
    assert refused(tools, "upload_file", path="pipe", content_base64="").field == "path"


@pytest.mark.parametrize("path", ["/proc/self/environ", f"/proc/{os.getpid()}/maps"])
def test_the_agents_own_proc_entries_are_refused(tools: DesktopToolset, path: str) -> None:
    error = refused(tools, "download_file", path=path)
    assert error.field == "path"
    assert "Permission denied" in str(error)


def test_a_directory_or_a_missing_file_is_refused(tools: DesktopToolset, tmp_path: Path) -> None:
    assert "Is a directory" in str(refused(tools, "download_file", path=str(tmp_path)))
    assert "No such file" in str(refused(tools, "download_file", path="missing"))
