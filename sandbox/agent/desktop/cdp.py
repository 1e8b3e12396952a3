"""Chromium's page state through its DevTools port (127.0.0.1 inside the container).

The image starts Chromium with ``--remote-debugging-port`` (images/desktop/
chromium-flags). The page list comes from DevTools' HTTP endpoint
(``/json/list``: id, url, title of every tab, most recently used first) and a
page's text from one ``Runtime.evaluate`` over its WebSocket.

Chromium is the session user's program and shows whatever page the session
opened, and anything in the session may listen on the port first: every answer
is hostile input. So this is a small client of its own over a plain socket:
one deadline covers each exchange (a trickling peer cannot stretch it), every
read is capped in bytes, only 127.0.0.1 is dialled (never an address the peer
names), and a target id is used only if it looks like one.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import time
from typing import Any
from urllib.parse import quote

from ..tasks.host import BrowserTab

DEVTOOLS_PORT = 9222
"""Where the image's Chromium serves DevTools (images/desktop/chromium-flags)."""
MAX_LIST_BYTES = 1 << 20
"""Most bytes of the ``/json/list`` answer read."""
MAX_MESSAGE_BYTES = 8 << 20
"""Most bytes of WebSocket frames read for one evaluation."""
MAX_FIELD_CHARS = 4096
"""Most characters of a tab's url and title kept."""
_HEADER_LIMIT = 16 << 10
_CLOSE_POLL_S = 0.1
_TARGET_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_OP_CONTINUATION, _OP_TEXT, _OP_CLOSE = 0x0, 0x1, 0x8


class DevToolsError(Exception):
    """DevTools cannot be reached or answered something unusable (the message says)."""


class NoDevTools(DevToolsError):
    """Nothing listens on the DevTools port: Chromium is not running."""


class _Peer:
    """A TCP connection to 127.0.0.1 whose every read ends by one deadline.

    What is read waits in a `bytearray`: appending to it and taking from its front
    cost what they move, so a peer trickling a message in small pieces costs
    linear time, not the square of the message's size.
    """

    def __init__(self, port: int, deadline: float) -> None:
        self._deadline = deadline
        self._buffer = bytearray()
        try:
            self._sock = socket.create_connection(("127.0.0.1", port), timeout=self._left())
        except OSError as exc:
            raise NoDevTools(
                f"nothing answers on 127.0.0.1:{port} (is Chromium running?): {exc}"
            ) from None

    def __enter__(self) -> _Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    def _left(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DevToolsError("DevTools did not answer in time")
        return left

    def send(self, data: bytes) -> None:
        self._sock.settimeout(self._left())
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise DevToolsError(f"cannot write to DevTools: {exc}") from None

    def _fill(self, want: int) -> bool:
        """Read once more (at most `want` bytes); False at the end of the stream."""
        self._sock.settimeout(self._left())
        try:
            chunk = self._sock.recv(min(want, 1 << 16))
        except TimeoutError:
            raise DevToolsError("DevTools did not answer in time") from None
        except OSError as exc:
            raise DevToolsError(f"cannot read from DevTools: {exc}") from None
        self._buffer += chunk
        return bool(chunk)

    def _take(self, count: int) -> bytes:
        """The first `count` bytes of the buffer, removed from it."""
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def until(self, marker: bytes, limit: int) -> bytes:
        """The bytes up to and including `marker`, which must come within `limit` bytes."""
        searched = 0  # the marker is not in the buffer before this
        while (found := self._buffer.find(marker, searched)) < 0:
            if len(self._buffer) > limit:
                raise DevToolsError(f"DevTools sent more than {limit} bytes of headers")
            searched = max(0, len(self._buffer) - len(marker) + 1)
            if not self._fill(limit + len(marker)):
                raise DevToolsError("DevTools closed the connection early")
        return self._take(found + len(marker))

    def exactly(self, count: int) -> bytes:
        """The next `count` bytes."""
        while len(self._buffer) < count:
            if not self._fill(count - len(self._buffer)):
                raise DevToolsError("DevTools closed the connection early")
        return self._take(count)

    def rest(self, limit: int) -> bytes:
        """Everything until the peer closes, at most `limit` bytes."""
        while len(self._buffer) <= limit:
            if not self._fill(limit + 1 - len(self._buffer)):
                return self._take(len(self._buffer))
        raise DevToolsError(f"DevTools sent more than {limit} bytes")


def _status_and_headers(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise DevToolsError(f"DevTools answered {lines[0][:100]!r}, not HTTP")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _text(value: Any) -> str:
    return value[:MAX_FIELD_CHARS] if isinstance(value, str) else ""


def _request(method: str, path: str, timeout: float, port: int) -> tuple[int, bytes]:
    """One plain HTTP exchange with DevTools: the status and at most `MAX_LIST_BYTES` of body."""
    deadline = time.monotonic() + timeout
    with _Peer(port, deadline) as peer:
        peer.send(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        status, headers = _status_and_headers(peer.until(b"\r\n\r\n", _HEADER_LIMIT))
        length = headers.get("content-length")
        if length is None:
            return status, peer.rest(MAX_LIST_BYTES)
        if length.isdigit() and int(length) <= MAX_LIST_BYTES:
            return status, peer.exactly(int(length))
        raise DevToolsError(
            f"DevTools' answer to {path[:60]} has a Content-Length of {length[:40]!r}: "
            f"it is read only up to {MAX_LIST_BYTES} bytes"
        )


def _json(method: str, path: str, timeout: float, port: int) -> Any:
    status, body = _request(method, path, timeout, port)
    what = path.split("?")[0][:60]
    if status != 200:
        raise DevToolsError(f"DevTools answered HTTP {status} to {what}")
    try:
        return json.loads(body)
    except ValueError:
        raise DevToolsError(f"DevTools' answer to {what} is not JSON") from None


def _tab(target: Any) -> BrowserTab | None:
    """The tab `target` describes; None when it is no page or its id is not an id."""
    if not isinstance(target, dict) or target.get("type") != "page":
        return None
    target_id = target.get("id")
    if not isinstance(target_id, str) or not _TARGET_ID.fullmatch(target_id):
        return None
    return BrowserTab(target_id, _text(target.get("url")), _text(target.get("title")))


def list_tabs(timeout: float, port: int = DEVTOOLS_PORT) -> list[BrowserTab]:
    """Chromium's tabs, most recently used first.

    Raises:
        DevToolsError: DevTools is not there or answered something else than a list.
    """
    targets = _json("GET", "/json/list", timeout, port)
    if not isinstance(targets, list):
        raise DevToolsError("DevTools' answer to /json/list is not a list")
    return [tab for tab in map(_tab, targets) if tab is not None]


def open_tab(url: str, timeout: float, port: int = DEVTOOLS_PORT) -> BrowserTab:
    """A new tab loading `url` (DevTools takes only PUT for this, since Chromium 111).

    Raises:
        DevToolsError: DevTools is not there or did not answer with the new tab.
    """
    # The whole URL percent-encoded: DevTools decodes the query, and nothing in it
    # can end the request line or add a header.
    tab = _tab(_json("PUT", "/json/new?" + quote(url, safe=""), timeout, port))
    if tab is None:
        raise DevToolsError("DevTools' answer to /json/new is not a page with an id")
    return tab


def close_tab(tab_id: str, timeout: float, port: int = DEVTOOLS_PORT) -> None:
    """Close the tab `tab_id`; returns once the tab list no longer has it (DevTools
    answers before the tab is gone, and what runs next must not see it), or at
    `timeout`.

    Raises:
        DevToolsError: DevTools is not there or refused (no such tab: HTTP 404).
    """
    if not _TARGET_ID.fullmatch(tab_id):
        raise DevToolsError(f"{tab_id[:100]!r} is not a DevTools target id")
    deadline = time.monotonic() + timeout
    status, _ = _request("GET", f"/json/close/{tab_id}", timeout, port)
    if status != 200:
        raise DevToolsError(f"DevTools answered HTTP {status} to closing tab {tab_id}")
    while (left := deadline - time.monotonic()) > 0:
        try:
            if all(tab.id != tab_id for tab in list_tabs(left, port)):
                return
        except NoDevTools:
            return  # the last tab closed and Chromium with it
        except DevToolsError:
            return  # out of time, or a list that says nothing: the close was asked
        time.sleep(min(_CLOSE_POLL_S, max(0.0, deadline - time.monotonic())))


def evaluate(
    tab_id: str,
    expression: str,
    timeout: float,
    port: int = DEVTOOLS_PORT,
    limit: int = MAX_MESSAGE_BYTES,
) -> Any:
    """The JSON value of `expression` evaluated in tab `tab_id`.

    Raises:
        DevToolsError: No such tab, a refused handshake, an exception in the page,
            an answer over `limit` bytes or later than `timeout`.
    """
    if not _TARGET_ID.fullmatch(tab_id):
        raise DevToolsError(f"{tab_id[:100]!r} is not a DevTools target id")
    deadline = time.monotonic() + timeout
    key = base64.b64encode(os.urandom(16)).decode()
    with _Peer(port, deadline) as peer:
        # No Origin header: DevTools refuses WebSocket clients that send one it
        # was not told to allow.
        peer.send(
            f"GET /devtools/page/{tab_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        status, _ = _status_and_headers(peer.until(b"\r\n\r\n", _HEADER_LIMIT))
        if status != 101:
            raise DevToolsError(f"DevTools refused the page's WebSocket (HTTP {status})")
        request = {
            "id": 1,
            "method": "Runtime.evaluate",
            "params": {"expression": expression, "returnByValue": True},
        }
        peer.send(_frame(json.dumps(request).encode()))
        budget = limit
        while True:
            message, budget = _message(peer, budget)
            try:
                answer = json.loads(message)
            except ValueError:
                raise DevToolsError("DevTools sent a message that is not JSON") from None
            if isinstance(answer, dict) and answer.get("id") == 1:
                return _result(answer)


def _result(answer: dict[str, Any]) -> Any:
    if "error" in answer:
        raise DevToolsError(f"DevTools refused the evaluation: {str(answer['error'])[:300]}")
    result = answer.get("result")
    if not isinstance(result, dict):
        raise DevToolsError("DevTools' answer has no result")
    if "exceptionDetails" in result:
        details = result["exceptionDetails"]
        text = details.get("text", "") if isinstance(details, dict) else ""
        raise DevToolsError(f"the page threw: {str(text)[:300]}")
    value = result.get("result")
    return value.get("value") if isinstance(value, dict) else None


def _frame(payload: bytes) -> bytes:
    """One masked, final text frame (clients must mask theirs)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | _OP_TEXT, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | _OP_TEXT, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | _OP_TEXT, 0x80 | 127, size)
    return head + mask + _masked(payload, mask)


def _masked(payload: bytes, mask: bytes) -> bytes:
    """`payload` XOR the 4-byte `mask` repeated (RFC 6455 5.3); its own inverse.

    As one big-integer XOR, not a Python loop over the bytes: a peer's 8 MiB
    frame costs milliseconds, not seconds.
    """
    size = len(payload)
    repeated = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(size, "big")


def _message(peer: _Peer, budget: int) -> tuple[bytes, int]:
    """The next whole text message (its frames joined) and the budget left after it."""
    parts: list[bytes] = []
    while True:
        first, second = peer.exactly(2)
        opcode, final = first & 0x0F, bool(first & 0x80)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", peer.exactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", peer.exactly(8))
        mask = peer.exactly(4) if second & 0x80 else b""
        if size > budget:
            raise DevToolsError(f"DevTools sent more than {MAX_MESSAGE_BYTES} bytes")
        budget -= size
        payload = peer.exactly(size)
        if mask:
            payload = _masked(payload, mask)
        if opcode == _OP_CLOSE:
            raise DevToolsError("DevTools closed the page's WebSocket")
        if opcode not in (_OP_TEXT, _OP_CONTINUATION):
            continue  # ping, pong, binary: nothing the evaluation needs
        parts.append(payload)
        if final:
            return b"".join(parts), budget
