"""Getters by OSWorld's names: what an evaluator's ``result`` and ``expected`` fetch.

Each takes the host and its config object (``{"type": "vm_file", "path": ...}``)
and returns a value for the metrics: text, a rules object, or None when what it
looks for is not there (a missing file), which every metric scores 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import InvalidParams, ToolFailed
from .fields import Fields
from .host import TaskHost
from .registry import Registry

MAX_FILE_BYTES = 16 << 20
"""Largest file a getter reads."""
DEFAULT_COMMAND_TIMEOUT_S = 60.0
MAX_COMMAND_TIMEOUT_S = 600.0

Getter = Callable[[TaskHost, Fields], Any]
"""Fetches one value, given the host and the getter's config."""

GETTERS = Registry[Getter]("getter")
"""Every getter, by its ``type``."""


def get(host: TaskHost, config: Fields) -> Any:
    """The value the getter `config` names fetches.

    Raises:
        InvalidParams: An unknown getter or a bad config (naming the field).
    """
    return GETTERS.get(config.raw.get("type"), config.at("type"))(host, config)


def _command_output(host: TaskHost, config: Fields) -> Any:
    timeout = config.number("timeout", DEFAULT_COMMAND_TIMEOUT_S, maximum=MAX_COMMAND_TIMEOUT_S)
    return host.run(config.command(), timeout)


@GETTERS.register("vm_command_line")
def vm_command_line(host: TaskHost, config: Fields) -> str:
    """What ``command`` prints on stdout."""
    output: str = _command_output(host, config).stdout
    return output


@GETTERS.register("vm_command_error")
def vm_command_error(host: TaskHost, config: Fields) -> str:
    """What ``command`` prints on stderr."""
    output: str = _command_output(host, config).stderr
    return output


@GETTERS.register("vm_file")
def vm_file(host: TaskHost, config: Fields) -> str | None:
    """The text of the file at ``path`` (None when there is none)."""
    path = config.string("path")
    data = host.read_file(path, MAX_FILE_BYTES)
    if data is None:
        return None
    if len(data) > MAX_FILE_BYTES:
        raise ToolFailed(f"{path} is larger than the {MAX_FILE_BYTES >> 20} MiB a getter reads")
    return data.decode("utf-8", "replace")


@GETTERS.register("window_title", "active_window")
def window_title(host: TaskHost, config: Fields) -> str | None:
    """The active window's title (None when no window is active)."""
    del config
    return host.active_window_title()


@GETTERS.register("clipboard")
def clipboard(host: TaskHost, config: Fields) -> str:
    """The clipboard's text."""
    del config
    return host.clipboard()


@GETTERS.register("rule")
def rule(host: TaskHost, config: Fields) -> Any:
    """The config's own ``rules`` (what a metric checks the result against)."""
    del host
    if "rules" not in config.raw:
        raise config.refuse("rules", "is required")
    return config.raw["rules"]


@GETTERS.register("literal")
def literal(host: TaskHost, config: Fields) -> Any:
    """The config's own ``value`` (an expected text given inline)."""
    del host
    if "value" not in config.raw:
        raise config.refuse("value", "is required")
    return config.raw["value"]


def _not_yet(host: TaskHost, config: Fields) -> Any:
    del host
    name = config.raw.get("type")
    raise InvalidParams(
        f"{config.at('type')}: the getter {name!r} is not supported yet", field=config.at("type")
    )


# Known OSWorld getters this desktop cannot serve yet: a clear 1002, not "unknown".
GETTERS.register(
    "accessibility_tree",
    "active_tab_info",
    "page_info",
    "open_tabs_info",
    "active_url_from_accessTree",
)(_not_yet)
