"""What a resource type is: its image, its session config and its tools.

Backends declare; they never touch HTTP or Docker. The session manager turns a
`ResourceType` and a validated config into a container, and the tool registry
turns a `ToolSpec` into validation and a JSON schema. A resource type's tools are
the agent's declarations (`sandbox.agent.tools`) of its toolsets, in its
namespace: `served_tools`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..agent.tools import TOOLSETS, ToolDeclaration
from ..agent.tools.spec import WhenParam
from ..config import MIN_CPUS, Ceilings, ResourceLimits, Settings, parse_memory
from ..errors import InvalidParams
from .declared import ToolParams, params_model

SERVER_SIDE_OPTIONS = frozenset({"record", "observation", "recording"})
"""Session options the server acts on itself: they never reach the container, so
sessions that differ only in them claim from the same warm pool."""


@dataclass(frozen=True)
class Observation:
    """An agent call the server makes after a tool, whose answer joins the result.

    Attributes:
        agent_tool: The agent's tool (``vm.accessibility_tree``).
        params: Its parameters.
        field: The answer's field to take (``tree``).
        key: Where it goes in the tool's result (``accessibility_tree``).
    """

    agent_tool: str
    params: Mapping[str, Any]
    field: str
    key: str


class SessionConfig(BaseModel):
    """Options every session accepts in `config`; resource types may add more."""

    model_config = ConfigDict(extra="forbid")

    memory: str | int | None = Field(
        default=None, description="Memory limit, e.g. '512m' or '2g' (default from settings)."
    )
    # No upper bounds here: the operator's ceilings (settings) are the bound, and
    # their error names the ceiling and the setting that raises it.
    cpus: float | None = Field(
        default=None, ge=MIN_CPUS, description="CPU cores, e.g. 0.5 (at least 0.01)."
    )
    pids: int | None = Field(default=None, ge=16, description="Process limit.")
    network: bool | None = Field(
        default=None, description="Give the container network access (default per resource)."
    )
    disk: str | int | None = Field(
        default=None, description="Disk quota of the session, e.g. '512m' (default from settings)."
    )
    record: bool | None = Field(
        default=None,
        description="Record every tool call of this session server-side "
        "(default: the server's setting `recording`).",
    )

    @field_validator("memory", "disk")
    @classmethod
    def _is_a_size(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_memory(value)
        return value

    def limits(self, defaults: ResourceLimits) -> ResourceLimits:
        """The session's effective limits: its own values over the server's defaults."""
        return ResourceLimits(
            memory=str(self.memory) if self.memory is not None else defaults.memory,
            cpus=self.cpus if self.cpus is not None else defaults.cpus,
            pids=self.pids if self.pids is not None else defaults.pids,
            disk=str(self.disk) if self.disk is not None else defaults.disk,
        )

    def enforce_ceilings(
        self, ceilings: Ceilings, defaults: ResourceLimits, default_network: bool
    ) -> None:
        """Refuse a config asking for more than the operator allows.

        Checked before anything reaches Docker, so an absurd ask is a 1002 naming
        the field rather than Docker's error text or a host-sized container.

        Raises:
            InvalidParams: Naming ``config.<field>`` and the ceiling it passes.
        """
        # Not `limits()`: an absurd ask must reach the ceiling check, not trip the
        # bounds ResourceLimits itself validates.
        asked = ResourceLimits.model_construct(
            memory=self.memory if self.memory is not None else defaults.memory,
            cpus=self.cpus if self.cpus is not None else defaults.cpus,
            pids=self.pids if self.pids is not None else defaults.pids,
            disk=self.disk if self.disk is not None else defaults.disk,
        )
        violation = ceilings.violation(asked)
        if violation is not None:
            name, message = violation
            raise InvalidParams(f"config.{name}: {message}", field=f"config.{name}")
        network = default_network if self.network is None else self.network
        if network and not ceilings.allow_network:
            raise InvalidParams(
                "config.network: this server does not give sessions network access; the "
                "operator allows it with the setting ceilings.allow_network "
                "(SANDBOX_CEILINGS__ALLOW_NETWORK=true)",
                field="config.network",
            )


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name, its parameters and the agent call that runs it."""

    resource_type: str
    name: str
    params: type[ToolParams]
    description: str
    agent_tool: str
    """Name of the tool in the in-container agent (``bash.run``)."""
    timeout_param: bool = False
    """Whether the tool takes a ``timeout`` parameter the agent enforces."""
    observes: bool | WhenParam = False
    """Whether its result is an observation itself (`ToolDeclaration.observes`)."""

    @classmethod
    def declared(cls, declaration: ToolDeclaration) -> ToolSpec:
        """The server's side of a tool the agent declares."""
        return cls(
            declaration.namespace,
            declaration.name,
            params_model(declaration),
            declaration.description,
            agent_tool=declaration.agent_name,
            timeout_param=declaration.takes_timeout,
            observes=declaration.observes,
        )

    def observes_in(self, args: Mapping[str, Any]) -> bool:
        """Whether the call with `args` is an observation itself."""
        return self.observes if isinstance(self.observes, bool) else self.observes.holds(args)

    @property
    def full_name(self) -> str:
        """The canonical ``resource:tool`` name."""
        return f"{self.resource_type}:{self.name}"


def served_tools(resource_type: str, toolsets: tuple[str, ...]) -> tuple[ToolSpec, ...]:
    """The tools a resource type offers: its toolsets' declarations in its namespace.

    Internal tools (the server's own plumbing, such as ``rag.open_session``) are
    not offered to callers.
    """
    return tuple(
        ToolSpec.declared(declaration)
        for toolset in toolsets
        for declaration in TOOLSETS[toolset]
        if declaration.namespace == resource_type and not declaration.internal
    )


@dataclass(frozen=True)
class ResourceType:
    """A kind of session: one image, one agent toolset, a set of tools."""

    name: str
    image: str
    """Image short name: ``images/<image>/Dockerfile``, tagged ``<namespace>/<image>``."""
    description: str
    toolsets: tuple[str, ...]
    """Agent toolsets the container enables (``SANDBOX_AGENT_TOOLSETS``)."""
    config_model: type[SessionConfig] = SessionConfig
    default_network: bool = False
    shared: bool = False
    """Sessions share one service container per server instead of owning one; the
    session id reaches every tool call as its ``session`` parameter."""
    extra_environment: dict[str, str] = field(default_factory=dict)
    optional_images: dict[str, str] = field(default_factory=dict)
    """Larger images sessions may ask for, built only on request: the name
    ``sandbox images build`` takes (``vm-full``) -> the image (``desktop-full``)."""
    tools: tuple[ToolSpec, ...] = field(init=False, repr=False, compare=False)
    """What callers may run: the toolsets' declarations in this type's namespace."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tools", served_tools(self.name, self.toolsets))

    def image_for(self, config: SessionConfig) -> str:
        """The image a session with `config` runs (`image`, or one of `optional_images`)."""
        del config  # resource types with optional images override this
        return self.image

    def environment(self, config: SessionConfig) -> dict[str, str]:
        """Environment a container of this type gets besides the agent's basics."""
        del config  # resource types with per-session environment override this
        return dict(self.extra_environment)

    def observations(
        self, tool: ToolSpec, args: Mapping[str, Any], config: Mapping[str, Any]
    ) -> tuple[Observation, ...]:
        """What the server reads from the session after `tool` ran, for its result.

        Args:
            tool: The tool that ran.
            args: Its call's parameters.
            config: The session's applied config.
        """
        del tool, args, config  # resource types with observations override this
        return ()

    def service_setup(self, settings: Settings) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        """Environment and volumes of this type's shared service container."""
        del settings  # shared resource types override this
        return {}, {}

    def service_limits(self, settings: Settings) -> ResourceLimits:
        """Limits of this type's shared service container."""
        return settings.limits

    def describe(self) -> dict[str, Any]:
        """Summary for status endpoints."""
        return {"image": self.image, "tools": [tool.full_name for tool in self.tools]}
