"""`vm` sessions: a Linux desktop (Xvfb, openbox, xterm) driven by its tools.

The tools are the ``desktop`` toolset's declarations
(`sandbox/agent/tools/desktop.py`): their models check types and absolute
ranges; the agent in the container knows the session's screen size and refuses
coordinates outside it, naming the parameter (1002 ``params.x``).

A session config's ``setup`` (OSWorld's setup steps) is run by the server with
``vm:setup`` once the container is ready and before the create answers; it is
kept out of the container's environment, its labels and the pool key.

Sessions have no network unless their config asks (``network: true``), as for
``bash``: most desktop tasks need none, and a browser task says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..agent.tools.desktop import MAX_SCREEN_SIZE
from ..agent.tools.desktop_tasks import MAX_STEPS, STEP_TYPES
from .base import Observation, ResourceType, SessionConfig, ToolSpec

FULL_IMAGE = "desktop-full"
"""The vm-full image (images/desktop-full): the desktop plus office, graphics, media
and mail programs, built only on request."""
DEFAULT_SCREEN_SIZE = (1280, 800)
MIN_SCREEN_SIZE = (320, 240)


class SetupStep(BaseModel):
    """One setup step of a session config, as ``vm:setup`` takes it."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="What the step does: " + ", ".join(STEP_TYPES) + ".")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="The step's own parameters (OSWorld's)."
    )

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in STEP_TYPES:
            raise ValueError(f"unknown setup step type {value!r}; known: {', '.join(STEP_TYPES)}")
        return value


class VmConfig(SessionConfig):
    """Session config of `vm`: the common limits, the screen size and setup steps."""

    screen_size: tuple[int, int] = Field(
        default=DEFAULT_SCREEN_SIZE,
        description="Screen [width, height] in pixels, from 320x240 to 7680x4320.",
    )
    apps: Literal["default", "full"] = Field(
        default="default",
        description="`full`: the vm-full image, adding LibreOffice (Writer, Calc, Impress), "
        "GIMP, VLC and Thunderbird; build it first with `sandbox images build vm-full`.",
    )
    observation: Literal["none", "screenshot", "a11y_tree", "both"] = Field(
        default="none",
        description="Observation returned with every action's result: the screen "
        "(`screenshot`, base64 PNG), the accessibility tree (`accessibility_tree`, "
        "linear text) or both.",
    )
    recording: bool | None = Field(
        default=None,
        description="Record the screen (an MP4, from after the setup steps to the session's "
        "end) and keep the video on the server: GET /recordings (AgentFlow's `recording`).",
    )
    recording_path: str | None = Field(
        default=None,
        exclude=True,
        description="Accepted from AgentFlow's configs and ignored: where videos are kept is "
        "the server's setting screen_recording.dir, never a caller's path.",
    )
    # Excluded from dumps: neither the labels, nor the pool key, nor the
    # environment carry it (uploads may be megabytes); the server runs it once.
    setup: list[SetupStep] | None = Field(
        default=None,
        exclude=True,
        max_length=MAX_STEPS,
        description="OSWorld-style setup steps run (by vm:setup) before the create answers.",
    )

    @field_validator("screen_size", mode="before")
    @classmethod
    def _screen_size(cls, value: Any) -> tuple[int, int]:
        if isinstance(value, str) and "x" in value.lower():  # "1280x800" as Xvfb writes it
            value = value.lower().split("x", 1)
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError("screen_size must be [width, height], e.g. [1280, 800]")
        width, height = (_whole_number(item) for item in value)
        if width is None or height is None:
            raise ValueError("screen_size must be two whole numbers, e.g. [1280, 800]")
        if not (
            MIN_SCREEN_SIZE[0] <= width <= MAX_SCREEN_SIZE[0]
            and MIN_SCREEN_SIZE[1] <= height <= MAX_SCREEN_SIZE[1]
        ):
            raise ValueError(
                f"screen_size {width}x{height} is out of bounds: width "
                f"{MIN_SCREEN_SIZE[0]}..{MAX_SCREEN_SIZE[0]}, height "
                f"{MIN_SCREEN_SIZE[1]}..{MAX_SCREEN_SIZE[1]}"
            )
        return width, height


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


_SCREENSHOT = Observation("vm.screenshot", {}, "image", "screenshot")
_TREE = Observation("vm.accessibility_tree", {"timeout": 10.0}, "tree", "accessibility_tree")
_OBSERVED = {"screenshot": (_SCREENSHOT,), "a11y_tree": (_TREE,), "both": (_SCREENSHOT, _TREE)}


class _VmResourceType(ResourceType):
    def observations(
        self, tool: ToolSpec, args: Mapping[str, Any], config: Mapping[str, Any]
    ) -> tuple[Observation, ...]:
        """The session's `observation` after every call but those that are observations
        themselves, or record them (their declarations say which: `observes`)."""
        if tool.observes_in(args):
            return ()
        return _OBSERVED.get(str(config.get("observation", "none")), ())

    def image_for(self, config: SessionConfig) -> str:
        """The vm-full image for ``apps: full``."""
        if isinstance(config, VmConfig) and config.apps == "full":
            return FULL_IMAGE
        return self.image

    def environment(self, config: SessionConfig) -> dict[str, str]:
        """The agent's screen size, which Xvfb is started with."""
        environment = super().environment(config)
        size = config.screen_size if isinstance(config, VmConfig) else DEFAULT_SCREEN_SIZE
        environment["SANDBOX_SCREEN_SIZE"] = f"{size[0]}x{size[1]}"
        return environment


VM = _VmResourceType(
    name="vm",
    image="desktop",
    description="A Linux desktop (Xvfb, openbox, xterm): screenshots, mouse and keyboard.",
    toolsets=("desktop",),
    config_model=VmConfig,
    optional_images={"vm-full": FULL_IMAGE},
)
