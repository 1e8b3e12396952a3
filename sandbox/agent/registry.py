"""Tools, the toolsets that provide them, and the registry the server dispatches on.

A toolset is a module in the `toolsets` package that defines
``create_toolset(context: AgentContext) -> Toolset``. The agent loads the ones
named in ``SANDBOX_AGENT_TOOLSETS``, so an image for another purpose (say, an X11
desktop) ships the same agent with one more module and enables it by name.
"""

from __future__ import annotations

import abc
import importlib
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import ConfigError, ToolNotFound
from .identity import SessionUser
from .params import Params

ToolHandler = Callable[[Params], dict[str, Any]]
"""Runs one call: takes its parameters, returns the response's ``data`` object."""


class Stream(Protocol):
    """One byte stream over an upgraded agent connection (``GET /stream/<name>``)."""

    def run(self, connection: socket.socket) -> None:
        """Serve the upgraded connection (a blocking socket) until the stream ends."""

    def release(self) -> None:
        """Free what the stream holds; called once after `run`, or instead of it
        when the upgrade failed."""


StreamOpener = Callable[[Mapping[str, str]], Stream]
"""Takes a stream's query and reserves what the stream needs, before the
connection is upgraded; raises `ToolError` (e.g. `Unavailable`) to refuse it
with an ordinary answer."""

_TOOLSET_NAME = re.compile(r"[a-z][a-z0-9_]*")
ALWAYS_ENABLED = "agent"


@dataclass(frozen=True)
class Tool:
    """One callable tool, e.g. ``bash.run``.

    Attributes:
        name: The name callers use in ``POST /call/<name>``.
        handler: Runs a call; raises `ToolError` for errors the caller should see.
        description: One line on what the tool does.
    """

    name: str
    handler: ToolHandler
    description: str = ""


@dataclass(frozen=True)
class AgentContext:
    """What every toolset may rely on.

    Attributes:
        home: The sandbox user's home: the first working directory.
        state_dir: A private (0700) directory for the agent's own files.
        output_limit: Most bytes of each output stream (or file) returned to a caller.
        child_env: The environment for processes the agent starts, without the token.
        user: Who those processes run as, and whose file rights file tools use;
            None: the agent's own user (an agent not started as root).
    """

    home: str
    state_dir: str
    output_limit: int
    child_env: Mapping[str, str]
    user: SessionUser | None = None


class Toolset(abc.ABC):
    """A group of tools enabled together, possibly holding processes (a shell)."""

    name: str

    @abc.abstractmethod
    def tools(self) -> Sequence[Tool]:
        """The tools this toolset provides."""

    def streams(self) -> Mapping[str, StreamOpener]:
        """Byte streams the toolset serves on an upgraded connection, by name (few have any)."""
        return {}

    def close(self) -> None:  # noqa: B027 -- most toolsets hold nothing to release
        """Release what the toolset holds (processes, files); called once at shutdown."""


class ToolRegistry:
    """The tools of the enabled toolsets, by name."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._streams: dict[str, StreamOpener] = {}
        self._toolsets: list[Toolset] = []

    def add_toolset(self, toolset: Toolset) -> None:
        """Register every tool of `toolset`.

        Raises:
            ConfigError: A tool name is already taken by another toolset.
        """
        tools = list(toolset.tools())
        streams = dict(toolset.streams())
        for tool in tools:
            if tool.name in self._tools:
                raise ConfigError(f"toolset {toolset.name!r} redefines tool {tool.name!r}")
        for name in streams:
            if name in self._streams:
                raise ConfigError(f"toolset {toolset.name!r} redefines stream {name!r}")
        self._toolsets.append(toolset)
        for tool in tools:
            self._tools[tool.name] = tool
        self._streams.update(streams)

    def get(self, name: str) -> Tool:
        """The tool called `name`.

        Raises:
            ToolNotFound: No enabled toolset has it.
        """
        try:
            return self._tools[name]
        except KeyError:
            raise ToolNotFound(f"no tool named {name!r}") from None

    def stream(self, name: str) -> StreamOpener:
        """The opener of the stream called `name`.

        Raises:
            ToolNotFound: No enabled toolset serves it.
        """
        try:
            return self._streams[name]
        except KeyError:
            raise ToolNotFound(f"no stream named {name!r}") from None

    @property
    def tool_names(self) -> list[str]:
        """The names of all registered tools, sorted."""
        return sorted(self._tools)

    @property
    def toolset_names(self) -> list[str]:
        """The names of the enabled toolsets, in the order they were added."""
        return [toolset.name for toolset in self._toolsets]

    def close(self) -> None:
        """Close every toolset, last added first."""
        for toolset in reversed(self._toolsets):
            toolset.close()
        self._toolsets.clear()
        self._tools.clear()
        self._streams.clear()


def load_toolset(name: str, context: AgentContext) -> Toolset:
    """Import ``toolsets/<name>.py`` and create its toolset.

    Raises:
        ConfigError: No toolset module has that name or it defines no factory.
    """
    if not _TOOLSET_NAME.fullmatch(name):
        raise ConfigError(f"invalid toolset name {name!r}")
    # Relative to this package so it works as `sandbox.agent` and as `sandbox_agent`.
    module_name = f"{__package__}.toolsets.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the toolset exists but something it imports does not
        raise ConfigError(f"unknown toolset {name!r}") from None
    factory = getattr(module, "create_toolset", None)
    if not callable(factory):
        raise ConfigError(f"toolset module {module_name} defines no create_toolset()")
    toolset = factory(context)
    if not isinstance(toolset, Toolset):
        raise ConfigError(f"{module_name}.create_toolset() did not return a Toolset")
    return toolset


def build_registry(names: Iterable[str], context: AgentContext) -> ToolRegistry:
    """A registry holding the toolsets called `names`, closed again if one fails."""
    registry = ToolRegistry()
    # Every agent has the `agent` toolset, whatever else it was told to enable.
    names = [ALWAYS_ENABLED, *(name for name in names if name != ALWAYS_ENABLED)]
    try:
        for name in names:
            toolset = load_toolset(name, context)
            try:
                registry.add_toolset(toolset)
            except BaseException:
                toolset.close()
                raise
    except BaseException:
        registry.close()
        raise
    return registry
