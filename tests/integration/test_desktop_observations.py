"""Screenshots as models take them, and file transfer, on a real desktop through a
real server: JPEG and downscaled screenshots, the drawn pointer, upload and
download as the session user."""

from __future__ import annotations

import base64
import io
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image, ImageChops

from sandbox import Sandbox

from .support import ServerProcess, created, ok, refused, worker


@pytest.fixture(scope="module")
def sb(server: ServerProcess) -> Iterator[Sandbox]:
    """A worker with a 1280x800 desktop."""
    with worker(server, "shots") as sandbox:
        created(sandbox.create_session_sync("vm", {"screen_size": [1280, 800]}), "vm")
        yield sandbox


def image_of(data: dict[str, Any]) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data["image"])))
    image.load()
    return image


def test_a_jpeg_screenshot_decodes_to_the_asked_size(sb: Sandbox) -> None:
    data = ok(sb, "vm:screenshot", format="jpeg", quality=60, max_width=640)
    image = image_of(data)
    assert (image.format, image.size) == ("JPEG", (640, 400))
    assert data["size"] == [640, 400]
    assert data["screen_size"] == [1280, 800]
    full = image_of(ok(sb, "vm:screenshot", format="jpeg"))
    assert full.size == (1280, 800)


def test_the_default_screenshot_is_the_full_png(sb: Sandbox) -> None:
    data = ok(sb, "vm:screenshot")
    assert set(data) == {"image", "size", "format"}
    assert (data["format"], data["size"], image_of(data).format) == ("png", [1280, 800], "PNG")


def test_the_drawn_cursor_changes_pixels_at_the_pointer_only(sb: Sandbox) -> None:
    ok(sb, "vm:move", x=600, y=300)
    plain = image_of(ok(sb, "vm:screenshot")).convert("RGB")
    drawn = image_of(ok(sb, "vm:screenshot", cursor=True)).convert("RGB")
    box = ImageChops.difference(plain, drawn).getbbox()
    assert box is not None, "the pointer was not drawn"
    left, top, right, bottom = box
    assert (left, top) == (600, 300)
    assert right <= 620
    assert bottom <= 325


def test_an_uploaded_file_downloads_the_same_and_belongs_to_the_session_user(
    sb: Sandbox,
) -> None:
    data = secrets.token_bytes(300_000)
    written = ok(
        sb, "vm:upload_file", path="in/data.bin", content_base64=base64.b64encode(data).decode()
    )
    assert written["path"].endswith("/in/data.bin")
    assert written["size"] == len(data)
    owner = ok(sb, "vm:run_command", command=f"stat -c %U {written['path']}")["stdout"]
    assert owner.strip() == "sandbox"
    read = ok(sb, "vm:download_file", path="~/in/data.bin")
    assert base64.b64decode(read["content_base64"]) == data
    assert read["size"] == len(data)


def test_oversize_files_are_refused_naming_the_field(sb: Sandbox) -> None:
    too_long = "A" * (4 * (16 << 20) // 3 + 8)
    envelope = refused(sb, "vm:upload_file", path="big", content_base64=too_long)
    assert envelope["data"]["field"] == "params.content_base64", envelope
    ok(sb, "vm:run_command", command="truncate -s 17M ~/big")
    envelope = refused(sb, "vm:download_file", path="big")
    assert envelope["data"]["field"] == "params.path", envelope
    assert "16 MiB" in envelope["message"]


@pytest.mark.parametrize(
    ("action", "params"),
    [
        ("vm:download_file", {"path": "/etc/shadow"}),
        ("vm:download_file", {"path": "/proc/1/environ"}),
        ("vm:upload_file", {"path": "/etc/passwd", "content_base64": ""}),
        ("vm:download_file", {"path": "fifo"}),
        ("vm:download_file", {"path": "shadow-link"}),
        ("vm:upload_file", {"path": "passwd-link", "content_base64": ""}),
    ],
)
def test_files_beyond_the_session_users_rights_are_refused(
    sb: Sandbox, action: str, params: dict[str, Any]
) -> None:
    ok(
        sb,
        "vm:run_command",
        command="cd; test -p fifo || mkfifo fifo; ln -sf /etc/shadow shadow-link; "
        "ln -sf /etc/passwd passwd-link",
    )
    envelope = refused(sb, action, **params)
    assert envelope["data"]["field"] == "params.path", envelope
