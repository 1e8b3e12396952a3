"""The server side of `vm`: session config, parameter models, tool listing.

Kept beside the agent's desktop tests so the whole `vm` contract reads in one
place; nothing here needs Docker.
"""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.agent.tools.desktop import TOOLS as DECLARED
from sandbox.backends import RESOURCE_TYPES
from sandbox.backends.desktop import VM, VmConfig
from sandbox.errors import ErrorCode, InvalidParams
from sandbox.sessions.registry import ToolRegistry


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry(RESOURCE_TYPES)


def test_vm_is_offered_with_the_desktop_image(registry: ToolRegistry) -> None:
    assert "vm" in registry.resource_names
    assert VM.image == "desktop"
    assert VM.toolsets == ("desktop",)
    assert VM.default_network is False


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (None, (1280, 800)),
        ([1024, 768], (1024, 768)),
        ((1920, 1080), (1920, 1080)),
        ("800x600", (800, 600)),
        ([320, 240], (320, 240)),
        ([7680, 4320], (7680, 4320)),
        ([1024.0, "768"], (1024, 768)),
    ],
)
def test_screen_size_is_validated(
    registry: ToolRegistry, value: Any, size: tuple[int, int]
) -> None:
    config = registry.validate_config(VM, {} if value is None else {"screen_size": value})
    assert isinstance(config, VmConfig)
    assert config.screen_size == size
    assert VM.environment(config) == {"SANDBOX_SCREEN_SIZE": f"{size[0]}x{size[1]}"}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ([100, 100], "out of bounds"),
        ([8000, 800], "out of bounds"),
        ([1024], "[width, height]"),
        ([1024, 768, 24], "[width, height]"),
        ("big", "[width, height]"),
        (1024, "[width, height]"),
        ([1024.5, 768], "whole numbers"),
        ([True, 768], "whole numbers"),
    ],
)
def test_bad_screen_sizes_are_1002_naming_the_field(
    registry: ToolRegistry, value: Any, words: str
) -> None:
    with pytest.raises(InvalidParams) as caught:
        registry.validate_config(VM, {"screen_size": value})
    assert caught.value.code == ErrorCode.INVALID_PARAMS
    assert caught.value.field == "config.screen_size"
    assert words in caught.value.message


def test_the_common_limits_still_apply(registry: ToolRegistry) -> None:
    config = registry.validate_config(VM, {"memory": "2g", "cpus": 2, "network": True})
    assert (config.memory, config.cpus, config.network) == ("2g", 2, True)
    with pytest.raises(InvalidParams) as caught:
        registry.validate_config(VM, {"screen": [1, 2]})
    assert caught.value.field == "config.screen"


def test_every_vm_tool_is_listed_with_its_schema(registry: ToolRegistry) -> None:
    listed = {tool["name"]: tool for tool in registry.describe() if tool["resource_type"] == "vm"}
    assert list(listed) == [d.full_name for d in DECLARED if not d.internal]
    click = listed["vm:click"]["parameters"]
    assert click["required"] == ["x", "y"]
    assert click["properties"]["button"]["enum"] == ["left", "right", "middle"]
    assert all(tool["description"] for tool in listed.values())
    assert registry.resolve("vm.click").agent_tool == "vm.click"
    assert registry.resolve("screenshot").full_name == "vm:screenshot"


@pytest.mark.parametrize(
    ("tool", "params", "field"),
    [
        ("click", {"x": 10}, "params.y"),
        ("click", {"x": -1, "y": 0}, "params.x"),
        ("click", {"x": 7680, "y": 0}, "params.x"),
        ("click", {"x": 1, "y": 1, "button": "side"}, "params.button"),
        ("drag", {"start_x": 0, "start_y": 0, "end_x": 0}, "params.end_y"),
        ("scroll", {"x": 0, "y": 0, "clicks": 500}, "params.clicks"),
        ("right_click", {"x": 5}, "params"),
        ("type", {"text": ""}, "params.text"),
        ("hotkey", {"keys": []}, "params.keys"),
        ("hotkey", {"keys": "ctrl+c"}, "params.keys"),
        ("wait", {"seconds": 60}, "params.seconds"),
        ("pyautogui", {}, "params"),
        ("pyautogui", {"command": "pyautogui.click()", "commands": ["x"]}, "params"),
        ("launch", {"command": "xterm", "detach": True}, "params.detach"),
    ],
)
def test_bad_parameters_are_1002_before_reaching_the_container(
    registry: ToolRegistry, tool: str, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidParams) as caught:
        registry.validate_params(registry.resolve(f"vm:{tool}"), params)
    assert caught.value.field == field


def test_good_parameters_get_their_defaults(registry: ToolRegistry) -> None:
    assert registry.validate_params(registry.resolve("vm:click"), {"x": 1, "y": 2}) == {
        "x": 1,
        "y": 2,
        "button": "left",
        "clicks": 1,
    }
    assert registry.validate_params(registry.resolve("vm:right_click"), {}) == {}
    assert registry.validate_params(
        registry.resolve("vm:pyautogui"), {"commands": ["pyautogui.click()"]}
    ) == {"commands": ["pyautogui.click()"]}
