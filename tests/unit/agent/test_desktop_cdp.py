"""The DevTools client against a real local socket server playing Chromium (or a liar).

Every answer is hostile input: oversized lists and frames, a peer that trickles
or never answers, and one that is not HTTP are refused within the deadline.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from sandbox.agent.desktop import cdp, cdp_page

Serve = Callable[[socket.socket], None]


@pytest.fixture
def devtools() -> Iterator[Callable[[Serve], int]]:
    """Starts a one-connection-at-a-time server on 127.0.0.1 running `serve`; its port."""
    servers: list[socket.socket] = []

    def start(serve: Serve) -> int:
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def loop() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn, contextlib.suppress(OSError):
                    serve(conn)

        threading.Thread(target=loop, daemon=True).start()
        port: int = server.getsockname()[1]
        return port

    yield start
    for server in servers:
        server.close()


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _http(body: bytes, status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    return head + body


def _frame(payload: bytes, opcode: int = 1, final: bool = True) -> bytes:
    first = (0x80 if final else 0) | opcode
    if len(payload) < 126:
        return struct.pack("!BB", first, len(payload)) + payload
    if len(payload) < 1 << 16:
        return struct.pack("!BBH", first, 126, len(payload)) + payload
    return struct.pack("!BBQ", first, 127, len(payload)) + payload


def _read_frame(conn: socket.socket) -> dict[str, object]:
    head = conn.recv(2)
    size = head[1] & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", conn.recv(2))
    mask = conn.recv(4)
    payload = b""
    while len(payload) < size:
        payload += conn.recv(size - len(payload))
    message: dict[str, object] = json.loads(
        bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    )
    return message


def _tabs_server(targets: object) -> Serve:
    def serve(conn: socket.socket) -> None:
        request = _read_request(conn)
        assert request.startswith(b"GET /json/list HTTP/1.1\r\n")
        conn.sendall(_http(json.dumps(targets).encode()))

    return serve


def _page_server(*answers: bytes, seen: list[dict[str, object]] | None = None) -> Serve:
    """Accepts the WebSocket handshake, reads the request, sends `answers` as they are."""

    def serve(conn: socket.socket) -> None:
        request = _read_request(conn)
        assert request.startswith(b"GET /devtools/page/ABC HTTP/1.1\r\n")
        assert b"Upgrade: websocket" in request
        assert b"Origin" not in request
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
        message = _read_frame(conn)
        if seen is not None:
            seen.append(message)
        for answer in answers:
            conn.sendall(answer)
        time.sleep(0.5)

    return serve


def _answer(value: object) -> bytes:
    return json.dumps({"id": 1, "result": {"result": {"type": "string", "value": value}}}).encode()


def test_tabs_are_the_page_targets_in_order_with_bad_ids_dropped(
    devtools: Callable[[Serve], int],
) -> None:
    port = devtools(
        _tabs_server(
            [
                {"type": "page", "id": "A1", "url": "file:///a.html", "title": "A"},
                {"type": "service_worker", "id": "W", "url": "x", "title": "worker"},
                {"type": "page", "id": "../../json/new", "url": "evil", "title": "evil"},
                {"type": "page", "id": "B2", "url": "u" * 10_000, "title": 7},
                "junk",
            ]
        )
    )
    tabs = cdp.list_tabs(5, port=port)
    assert [tab.id for tab in tabs] == ["A1", "B2"]
    assert tabs[0].url == "file:///a.html"
    assert tabs[0].title == "A"
    assert len(tabs[1].url) == cdp.MAX_FIELD_CHARS
    assert tabs[1].title == ""


def test_no_listener_is_no_devtools(devtools: Callable[[Serve], int]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(cdp.NoDevTools, match="is Chromium running"):
        cdp.list_tabs(2, port=port)


def test_an_oversized_tab_list_is_refused(devtools: Callable[[Serve], int]) -> None:
    def serve(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(
            f"HTTP/1.1 200 OK\r\nContent-Length: {cdp.MAX_LIST_BYTES + 1}\r\n\r\n".encode()
        )

    with pytest.raises(cdp.DevToolsError, match="Content-Length of '1048577'"):
        cdp.list_tabs(5, port=devtools(serve))


def test_an_endless_unlengthed_tab_list_is_cut_at_the_cap(devtools: Callable[[Serve], int]) -> None:
    def serve(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
        for _ in range(40):
            conn.sendall(b"[" * 65536)

    with pytest.raises(cdp.DevToolsError, match="more than"):
        cdp.list_tabs(10, port=devtools(serve))


def test_a_peer_that_is_not_http_is_refused(devtools: Callable[[Serve], int]) -> None:
    def serve(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")

    with pytest.raises(cdp.DevToolsError, match="not HTTP"):
        cdp.list_tabs(5, port=devtools(serve))


def test_a_trickling_peer_cannot_stretch_the_deadline(devtools: Callable[[Serve], int]) -> None:
    def serve(conn: socket.socket) -> None:
        _read_request(conn)
        for byte in b"HTTP/1.1 200 OK\r\nX: " + b"y" * 100:
            conn.sendall(bytes([byte]))
            time.sleep(0.05)

    started = time.monotonic()
    with pytest.raises(cdp.DevToolsError, match="in time"):
        cdp.list_tabs(0.5, port=devtools(serve))
    assert time.monotonic() - started < 1.5


def test_evaluate_sends_one_masked_request_and_joins_fragmented_answers(
    devtools: Callable[[Serve], int],
) -> None:
    seen: list[dict[str, object]] = []
    answer = _answer("Hello sandbox " * 20)
    port = devtools(
        _page_server(
            _frame(json.dumps({"method": "Page.frameNavigated"}).encode()),
            _frame(b"", opcode=0x9),  # a ping between messages
            _frame(answer[:50], final=False),
            _frame(answer[50:], opcode=0),
            seen=seen,
        )
    )
    assert cdp.evaluate("ABC", "document.title", 5, port=port) == "Hello sandbox " * 20
    assert seen[0]["method"] == "Runtime.evaluate"
    assert seen[0]["params"] == {"expression": "document.title", "returnByValue": True}


def test_an_exception_in_the_page_is_an_error(devtools: Callable[[Serve], int]) -> None:
    thrown = {"id": 1, "result": {"result": {}, "exceptionDetails": {"text": "Uncaught boom"}}}
    port = devtools(_page_server(_frame(json.dumps(thrown).encode())))
    with pytest.raises(cdp.DevToolsError, match="Uncaught boom"):
        cdp.evaluate("ABC", "boom()", 5, port=port)


def test_an_oversized_frame_is_refused_before_it_is_read(devtools: Callable[[Serve], int]) -> None:
    port = devtools(_page_server(struct.pack("!BBQ", 0x81, 127, 1 << 40)))
    with pytest.raises(cdp.DevToolsError, match="more than"):
        cdp.evaluate("ABC", "x", 5, port=port)


def test_many_unasked_messages_exhaust_the_budget(devtools: Callable[[Serve], int]) -> None:
    noise = _frame(b"{}" + b" " * 60_000)
    port = devtools(_page_server(*[noise] * 20))
    with pytest.raises(cdp.DevToolsError, match="more than"):
        cdp.evaluate("ABC", "x", 5, port=port, limit=1 << 20)


def test_a_refused_handshake_and_a_bad_target_id_are_errors(
    devtools: Callable[[Serve], int],
) -> None:
    def serve(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(_http(b"no such target", "404 Not Found"))

    with pytest.raises(cdp.DevToolsError, match="HTTP 404"):
        cdp.evaluate("ABC", "x", 5, port=devtools(serve))
    with pytest.raises(cdp.DevToolsError, match="not a DevTools target id"):
        cdp.evaluate("../browser", "x", 5, port=1)


# -- tabs opened and closed; a page read once loaded (page_info) ----------------------------


def test_open_tab_puts_the_url_percent_encoded_and_close_tab_closes_it(
    devtools: Callable[[Serve], int],
) -> None:
    requests: list[bytes] = []

    listed = [{"type": "page", "id": "N1", "url": "http://x/", "title": ""}]

    def serve(conn: socket.socket) -> None:
        request = _read_request(conn)
        requests.append(request.split(b"\r\n")[0])
        if request.startswith(b"PUT /json/new?"):
            conn.sendall(_http(json.dumps(listed[0]).encode()))
        elif request.startswith(b"GET /json/list "):
            # Gone only on the second look: the close waits for it.
            answer = json.dumps(listed if requests.count(requests[-1]) == 1 else [])
            conn.sendall(_http(answer.encode()))
        else:
            conn.sendall(_http(b"Target is closing"))

    port = devtools(serve)
    tab = cdp.open_tab("http://x/?a=1 b#top\r\nEvil: 1", 5, port=port)
    assert tab.id == "N1"
    cdp.close_tab("N1", 5, port=port)
    assert requests == [
        b"PUT /json/new?http%3A%2F%2Fx%2F%3Fa%3D1%20b%23top%0D%0AEvil%3A%201 HTTP/1.1",
        b"GET /json/close/N1 HTTP/1.1",
        b"GET /json/list HTTP/1.1",
        b"GET /json/list HTTP/1.1",
    ]
    with pytest.raises(cdp.DevToolsError, match="not a DevTools target id"):
        cdp.close_tab("../json/new", 5, port=port)


def test_open_tab_refuses_an_answer_that_is_no_page(devtools: Callable[[Serve], int]) -> None:
    def serve(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(_http(json.dumps({"type": "page", "id": "../../x"}).encode()))

    with pytest.raises(cdp.DevToolsError, match="not a page with an id"):
        cdp.open_tab("about:blank", 5, port=devtools(serve))


def _browser(pages: list[object], closed: list[bytes], tab_id: str = "P1") -> Serve:
    """DevTools with one new tab whose evaluations answer `pages` in turn."""

    def serve(conn: socket.socket) -> None:
        request = _read_request(conn)
        if request.startswith(b"PUT /json/new?"):
            target = {"type": "page", "id": tab_id, "url": "", "title": ""}
            conn.sendall(_http(json.dumps(target).encode()))
        elif request.startswith(b"GET /json/close/"):
            closed.append(request.split(b" ")[1])
            conn.sendall(_http(b"Target is closing"))
        elif request.startswith(b"GET /json/list "):
            conn.sendall(_http(b"[]"))
        else:
            assert request.startswith(f"GET /devtools/page/{tab_id} ".encode())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
            _read_frame(conn)
            value = pages.pop(0) if pages else None
            answer = {"id": 1, "result": {"result": {"type": "object", "value": value}}}
            conn.sendall(_frame(json.dumps(answer).encode()))

    return serve


def test_read_page_waits_for_the_load_then_closes_its_tab(
    devtools: Callable[[Serve], int],
) -> None:
    closed: list[bytes] = []
    page = {"title": "Target", "url": "file:///t.html", "content": "<html>You made it</html>"}
    port = devtools(_browser([None, None, page], closed))
    assert cdp_page.read_page("file:///t.html", 5, port=port) == page
    assert closed == [b"/json/close/P1"]


def test_read_page_cuts_what_the_page_wrote_and_closes_the_tab_on_failure(
    devtools: Callable[[Serve], int],
) -> None:
    closed: list[bytes] = []
    huge = {"title": "t" * 10_000, "url": "u", "content": "c" * (cdp_page.MAX_CONTENT_CHARS + 9)}
    port = devtools(_browser([huge], closed))
    page = cdp_page.read_page("http://x/", 5, port=port)
    assert len(page["title"]) == cdp.MAX_FIELD_CHARS
    assert len(page["content"]) == cdp_page.MAX_CONTENT_CHARS

    # A page whose scripts answer nonsense until the time is up: an error, tab closed.
    port = devtools(_browser([{"title": 1}] * 100, closed, tab_id="P2"))
    started = time.monotonic()
    with pytest.raises(cdp.DevToolsError, match="gave no title"):
        cdp_page.read_page("http://x/", 1, port=port)
    assert time.monotonic() - started < 3
    assert closed[-1] == b"/json/close/P2"


def test_the_load_check_waits_past_the_blank_first_document() -> None:
    assert 'location.href !== "about:blank"' in cdp_page._expression("http://x/", True)
    assert "'complete' && true" in cdp_page._expression("about:blank", True)
    assert "readyState" not in cdp_page._expression("http://x/", False)


class TricklingPeer:
    """A DevTools peer whose every answer arrives in pieces of `piece` bytes."""

    def __init__(self, answer: bytes, piece: int) -> None:
        self.answer = memoryview(answer)
        self.piece = piece
        self.sent = b""

    def settimeout(self, timeout: float) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def recv(self, most: int) -> bytes:
        piece = bytes(self.answer[: min(most, self.piece)])
        self.answer = self.answer[len(piece) :]
        return piece

    def close(self) -> None:
        pass


def _masked_frame(payload: bytes, mask: bytes) -> bytes:
    head = struct.pack("!BBQ", 0x81, 0x80 | 127, len(payload)) + mask
    return head + bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


def test_a_large_answer_trickled_in_small_pieces_is_read_in_linear_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = "0123456789abcdef" * (4 << 16)  # 4 MiB, in 16,384 pieces of 256 bytes
    # A masked frame too (peers need not mask theirs; a liar may, at the largest size).
    answer = _masked_frame(_answer(text), b"\x01\x02\x03\x04")
    peer = TricklingPeer(b"HTTP/1.1 101 Switching Protocols\r\n\r\n" + answer, piece=256)
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: peer)
    started = time.monotonic()
    assert cdp.evaluate("ABC", "document.body.innerText", 30) == text
    # Copying the whole buffer on every piece took seconds here; reading it once, ms.
    assert time.monotonic() - started < 1.0
    assert peer.sent.startswith(b"GET /devtools/page/ABC HTTP/1.1\r\n")
