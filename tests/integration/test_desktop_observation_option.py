"""A vm session's `observation` on a real desktop: the screen and the tree come with
every action's result, read after the action."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from sandbox import Sandbox

from .support import ServerProcess, worker


@pytest.fixture
def sb(server: ServerProcess) -> Iterator[Sandbox]:
    with worker(server, "observe") as sandbox:
        yield sandbox


def act(sb: Sandbox, tool: str, **params: Any) -> dict[str, Any]:
    envelope = sb.execute_sync(tool, params)
    assert envelope["code"] == 0, envelope
    return dict(envelope["data"])


def test_every_action_returns_the_screen_and_the_tree_after_it(sb: Sandbox) -> None:
    created = sb.create_session_sync("vm", {"screen_size": [800, 600], "observation": "both"})
    assert created["status"] == "success", created
    launched = act(sb, "vm:launch", command="mousepad", wait_for_window=True)
    assert launched["window"], launched
    screen = Image.open(io.BytesIO(base64.b64decode(launched["screenshot"])))
    assert screen.size == (800, 600)
    # The editor registers with AT-SPI shortly after its window opens.
    deadline = time.monotonic() + 10
    typed = act(sb, "vm:type", text="observed")
    while "observed" not in typed["accessibility_tree"] and time.monotonic() < deadline:
        typed = act(sb, "vm:wait", seconds=0.2)
    assert typed["accessibility_tree"].startswith("role\tname\ttext"), typed
    assert "observed" in typed["accessibility_tree"]
    shot = act(sb, "vm:screenshot")
    assert "accessibility_tree" not in shot
    assert "screenshot" not in shot
    # computer_use's screenshot is vm.screenshot: its image, and no second one.
    used = act(sb, "vm:computer_use", action="screenshot")
    assert Image.open(io.BytesIO(base64.b64decode(used["image"]))).size == (800, 600)
    assert "screenshot" not in used
    assert "accessibility_tree" not in used
    moved = act(sb, "vm:computer_use", action="mouse_move", coordinate=[20, 20])
    assert "screenshot" in moved
    assert "accessibility_tree" in moved


def test_a_session_without_observation_answers_as_before(sb: Sandbox) -> None:
    sb.create_session_sync("vm", {"screen_size": [800, 600]})
    clicked = act(sb, "vm:click", x=10, y=10)
    assert clicked == {"x": 10, "y": 10, "button": "left"}
