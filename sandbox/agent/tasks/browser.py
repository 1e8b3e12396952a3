"""What browser tasks read and compare: URLs as OSWorld matches them, and the
address bar as the accessibility tree shows it.

Pure functions over text; the steps and getters that use them fetch the text.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

from ..desktop.a11y import STATE_NS

BROWSER_APPS = ("Chromium", "Google Chrome")
"""The AT-SPI application names whose address bar is read."""
ADDRESS_BAR = "Address and search bar"
"""The accessible name of Chromium's address bar (an ``entry``)."""
# A scheme, unless the colon starts a port: "localhost:8000/x" has none.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:(?!\d)")


def same_url(first: str, second: str) -> bool:
    """Whether two URLs name one page as OSWorld's tab matching has it: the scheme
    defaults to http, case and a leading ``www.`` of the host do not count, nor
    does a path of just ``/``."""
    return _normal(first) == _normal(second)


def _normal(url: str) -> tuple[str, ...]:
    text = url.strip()
    if not _SCHEME.match(text):
        text = "http://" + text
    try:
        parts = urlsplit(text)
    except ValueError:  # a malformed host ("http://[") names no page but itself
        return (text,)
    host = parts.netloc.lower()
    host = host.removeprefix("www.")
    path = "" if parts.path == "/" else parts.path
    return (parts.scheme.lower(), host, path, parts.query, parts.fragment)


def with_scheme(text: str, prefix: str) -> str:
    """`text` as a URL: the address bar hides ``https://``, so `prefix` goes in front
    of text that has no scheme of its own (``file:///a``, ``about:blank`` keep theirs)."""
    text = text.strip()
    return text if _SCHEME.match(text) else prefix + text


def address_bar_text(tree_xml: str) -> str | None:
    """The text of the browser's address bar in an XML tree (`a11y.to_xml`'s form);
    the active window's when the browser has several. None when there is none or
    it is empty.

    Raises:
        ValueError: `tree_xml` is not XML.
    """
    try:
        root = ET.fromstring(tree_xml)
    except ET.ParseError as exc:
        raise ValueError(f"the accessibility tree is not XML: {exc}") from None
    active = f"{{{STATE_NS}}}active"
    texts: list[tuple[bool, str]] = []
    for app in root.iter("application"):
        if app.get("name") not in BROWSER_APPS:
            continue
        for window in app:
            for entry in window.iter("entry"):
                if entry.get("name") == ADDRESS_BAR and (entry.text or "").strip():
                    texts.append((window.get(active) == "true", entry.text or ""))
    texts.sort(key=lambda found: not found[0])  # the active window's first, else in order
    return texts[0][1] if texts else None
