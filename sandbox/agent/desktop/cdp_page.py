"""A page opened in a tab of its own, read once loaded, and closed: ``page_info``'s.

OSWorld's ``page_info`` getter visits a URL in the running browser and returns
its ``{title, url, content}`` (the HTML). Here DevTools opens the tab
(`cdp.open_tab`), the page is polled until its document is complete and has left
the blank page every new tab starts on, and the tab is closed again whatever
happened, so the desktop the agent left is the desktop that is scored.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from . import cdp

MAX_CONTENT_CHARS = 1 << 20
"""Most characters of a page's HTML read."""
_POLL_S = 0.2
_CLOSE_TIMEOUT_S = 5.0
_BLANK = "about:blank"


def _expression(url: str, wait: bool) -> str:
    """JavaScript giving the page's ``{title, url, content}``; when `wait`, null until
    it has loaded (the first document of a new tab is a blank one, complete at once)."""
    read = (
        "({title: String(document.title), url: String(location.href), content: "
        f"document.documentElement ? String(document.documentElement.outerHTML)"
        f".slice(0, {MAX_CONTENT_CHARS}) : ''}})"
    )
    if not wait:
        return read
    left_blank = "true" if url == _BLANK else f"location.href !== {json.dumps(_BLANK)}"
    return f"(document.readyState === 'complete' && {left_blank}) ? {read} : null"


def _page(value: Any) -> dict[str, str] | None:
    """The page read, its fields checked and cut (the page's scripts wrote them)."""
    if not isinstance(value, dict):
        return None
    title, url, content = (value.get(name) for name in ("title", "url", "content"))
    if not (isinstance(title, str) and isinstance(url, str) and isinstance(content, str)):
        return None
    return {
        "title": title[: cdp.MAX_FIELD_CHARS],
        "url": url[: cdp.MAX_FIELD_CHARS],
        "content": content[:MAX_CONTENT_CHARS],
    }


def read_page(url: str, timeout: float, port: int = cdp.DEVTOOLS_PORT) -> dict[str, str]:
    """``{title, url, content}`` of `url` loaded in a new tab, which is then closed.

    A page still loading when `timeout` runs out is read as it is then.

    Raises:
        NoDevTools: Chromium is not running.
        DevToolsError: DevTools refused the tab or the page could not be read.
    """
    deadline = time.monotonic() + timeout
    tab = cdp.open_tab(url, timeout, port)
    try:
        while True:
            left = deadline - time.monotonic()
            last = left <= _POLL_S
            try:
                value = cdp.evaluate(tab.id, _expression(url, not last), max(left, _POLL_S), port)
            except cdp.NoDevTools:
                raise
            except cdp.DevToolsError:
                # A navigation replaces the page's context under the evaluation: again.
                if last:
                    raise
                value = None
            page = _page(value)
            if page is not None:
                return page
            if last:
                raise cdp.DevToolsError(f"the page at {url[:200]} gave no title, url and content")
            time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
    finally:
        with contextlib.suppress(cdp.DevToolsError):
            cdp.close_tab(tab.id, _CLOSE_TIMEOUT_S, port)
