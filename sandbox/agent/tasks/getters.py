"""Getters by OSWorld's names: what an evaluator's ``result`` and ``expected`` fetch.

Each takes the host and its config object (``{"type": "vm_file", "path": ...}``)
and returns a value for the metrics: text, a rules object, or None when what it
looks for is not there (a missing file), which every metric scores 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ToolFailed
from ..tools import desktop_a11y as a11y_tool
from . import browser
from .fields import Fields
from .host import BrowserTab, TaskHost
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


TREE_TIMEOUT_S = 30.0
"""Longest the ``accessibility_tree`` getter reads."""
# The caps the getter takes: (default, maximum) as ``vm.accessibility_tree`` has them.
_TREE_CAPS = {
    "max_depth": (a11y_tool.DEFAULT_MAX_DEPTH, a11y_tool.MAX_DEPTH),
    "max_nodes": (a11y_tool.DEFAULT_MAX_NODES, a11y_tool.MAX_NODES),
    "max_children": (a11y_tool.DEFAULT_MAX_CHILDREN, a11y_tool.MAX_CHILDREN),
}


@GETTERS.register("accessibility_tree")
def accessibility_tree(host: TaskHost, config: Fields) -> str:
    """The desktop's AT-SPI tree as text: OSWorld's ``xml`` unless ``format`` is
    ``linear``; ``max_depth``, ``max_nodes``, ``max_children``, ``showing_only``
    (true) and ``timeout`` as ``vm.accessibility_tree`` takes them."""
    options: dict[str, Any] = {"format": config.string("format", "xml")}
    if options["format"] not in a11y_tool.A11Y_FORMATS:
        raise config.refuse("format", f"must be one of {', '.join(a11y_tool.A11Y_FORMATS)}")
    for name, (default, maximum) in _TREE_CAPS.items():
        value = float(config.number(name, default, maximum=maximum))
        if not value.is_integer() or value < 1:
            raise config.refuse(name, f"must be a whole number from 1 to {maximum}")
        options[name] = int(value)
    options["showing_only"] = config.boolean("showing_only", True)
    options["timeout"] = config.number("timeout", TREE_TIMEOUT_S, maximum=TREE_TIMEOUT_S)
    return host.accessibility_tree(options)


def _tabs(host: TaskHost) -> list[BrowserTab] | None:
    """Chromium's tabs; None when no Chromium runs or it has no tab."""
    tabs = host.browser_tabs()
    return tabs or None


_PAGE_FIELDS = ("url", "title", "text")


@GETTERS.register("chromium_page", "active_tab_info")
def chromium_page(host: TaskHost, config: Fields) -> Any:
    """The active Chromium tab (the one used last): ``{url, title, text}`` (OSWorld's
    ``active_tab_info`` calls the text ``content`` and has both), or only the
    ``field`` asked (``url``, ``title``, ``text``). None when Chromium is not running."""
    field = config.string("field", "")
    if field not in ("", *_PAGE_FIELDS):
        raise config.refuse("field", f"must be one of {', '.join(_PAGE_FIELDS)}")
    tabs = _tabs(host)
    if tabs is None:
        return None
    tab = tabs[0]
    if field in ("url", "title"):
        return tab.url if field == "url" else tab.title
    text = host.page_text(tab)
    if field == "text":
        return text
    page = {"url": tab.url, "title": tab.title, "text": text}
    if config.raw.get("type") == "active_tab_info":
        page["content"] = text
    return page


@GETTERS.register("open_tabs_info")
def open_tabs_info(host: TaskHost, config: Fields) -> list[dict[str, str]] | None:
    """Every Chromium tab as ``{title, url}``, most recently used first."""
    del config
    tabs = _tabs(host)
    return None if tabs is None else [{"title": tab.title, "url": tab.url} for tab in tabs]


PAGE_TIMEOUT_S = 30.0
"""Longest ``page_info`` waits for its page (its ``timeout``, at most this)."""


@GETTERS.register("page_info")
def page_info(host: TaskHost, config: Fields) -> dict[str, str] | None:
    """``url`` loaded in a new Chromium tab, closed after: ``{title, url, content}``
    (``content`` is the page's HTML, at most 1 MiB); ``timeout`` (30) bounds the wait
    for the page to load, after which it is read as it is. None when Chromium is
    not running."""
    url = config.string("url")
    if not url.strip():
        raise config.refuse("url", "must not be empty")
    timeout = config.number("timeout", PAGE_TIMEOUT_S, maximum=PAGE_TIMEOUT_S)
    return host.open_page(url, timeout)


@GETTERS.register("active_url_from_accessTree")
def active_url_from_access_tree(host: TaskHost, config: Fields) -> str | None:
    """The URL in Chromium's address bar, read from the accessibility tree (the active
    window's when there are several): the bar hides ``https://`` and ``file://``, so
    ``goto_prefix`` (default ``https://``) goes in front of a URL shown without a
    scheme. None when no Chromium window shows one."""
    prefix = config.string("goto_prefix", "https://")
    tree = host.accessibility_tree(
        {
            "format": "xml",
            "max_depth": a11y_tool.MAX_DEPTH,
            "max_nodes": a11y_tool.MAX_NODES,
            "max_children": a11y_tool.DEFAULT_MAX_CHILDREN,
            "showing_only": True,
            "timeout": TREE_TIMEOUT_S,
        }
    )
    try:
        text = browser.address_bar_text(tree)
    except ValueError as exc:
        raise ToolFailed(str(exc)) from None
    return None if text is None else browser.with_scheme(text, prefix)
