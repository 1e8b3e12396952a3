"""The /ui live view over noVNC: noVNC's files, grants of control, viewer caps, the bridge."""

from __future__ import annotations

import asyncio
import base64
import socket
import struct
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from sandbox.runtime.agent import AgentStream, AgentUnreachable
from sandbox.server.live_view import SCREENSHOTS_AT_ONCE, LiveViewers
from sandbox.server.rfb import ClientFilter
from sandbox.server.routes.ui_vnc import bridge
from sandbox.server.ui_auth import grant_valid, issue_grant

from .conftest import Harness, make_settings, open_harness

KEYS = {"alpha": "alpha-key-123", "beta": "beta-key-456"}
HANDSHAKE = b"RFB 003.008\n\x01\x01"
POINTER = struct.pack(">BBHH", 5, 1, 10, 10)
UPDATE_REQUEST = struct.pack(">BBHHHH", 3, 1, 0, 0, 64, 48)


def auth(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[Harness]:
    novnc = tmp_path / "novnc"
    (novnc / "core").mkdir(parents=True)
    (novnc / "core" / "rfb.js").write_text("export default class RFB {}\n")
    (novnc / "app").mkdir()
    (novnc / "app" / "ui.js").write_text("// noVNC's own page: not served\n")
    settings = make_settings(api_keys=KEYS, live_view={"novnc_dir": novnc})
    h = await open_harness(settings)
    h.runtime.images.add("sandbox/desktop:latest")
    async with h.app.router.lifespan_context(h.app), h.client:
        yield h


async def test_novncs_modules_are_served_and_nothing_else(keyed: Harness) -> None:
    module = await keyed.client.get("/ui/novnc/core/rfb.js")
    assert module.status_code == 200
    assert module.headers["content-type"].startswith("text/javascript")
    assert module.text.startswith("export default")
    for path in ("app/ui.js", "core/missing.js", "core/..%2F..%2Fapp/ui.js", "core/.hidden.js"):
        assert (await keyed.client.get(f"/ui/novnc/{path}")).status_code == 404, path


async def test_without_vnc_the_page_finds_no_novnc(tmp_path: Path) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "rfb.js").write_text("export default 1;\n")
    settings = make_settings(live_view={"vnc": False, "novnc_dir": tmp_path})
    h = await open_harness(settings)
    async with h.app.router.lifespan_context(h.app), h.client:
        assert (await h.client.get("/ui/novnc/core/rfb.js")).status_code == 404


async def test_control_is_granted_to_the_sessions_own_key_only(keyed: Harness) -> None:
    created = await keyed.post(
        "/session/create", {"worker_id": "w1", "resource_type": "vm"}, headers=auth("alpha")
    )
    session_id = created["data"]["session_id"]
    login = await keyed.client.post("/ui/login", json={"key": KEYS["alpha"]})
    cookie = {"Cookie": f"sandbox_ui={login.cookies['sandbox_ui']}"}
    keyed.client.cookies.clear()
    by_cookie = await keyed.client.post(f"/ui/control/{session_id}", headers=cookie)
    assert by_cookie.status_code == 401, "the read-only cookie grants no control"
    foreign = await keyed.post(f"/ui/control/{session_id}", headers=auth("beta"))
    assert (foreign["_status"], foreign["code"]) == (409, 1003)
    granted = await keyed.post(f"/ui/control/{session_id}", headers=auth("alpha"))
    assert granted["code"] == 0, granted
    assert granted["data"]["expires_in_s"] == 60
    secret = keyed.app.state.services.live_views.grant_secret
    grant = granted["data"]["grant"]
    assert grant_valid(secret, grant, "alpha", session_id)
    assert not grant_valid(secret, grant, "beta", session_id)
    assert not grant_valid(secret, grant, "alpha", "vm_other_001_00000000")


def test_a_grant_expires_and_cannot_be_forged() -> None:
    secret = b"s" * 32
    grant = issue_grant(secret, "alpha", "vm_w1", 60, now=1000.0)
    assert grant_valid(secret, grant, "alpha", "vm_w1", now=1059.0)
    assert not grant_valid(secret, grant, "alpha", "vm_w1", now=1060.0)
    assert not grant_valid(b"t" * 32, grant, "alpha", "vm_w1", now=1000.0), "another server's"
    expires, signature = grant.split(".")
    assert not grant_valid(secret, f"{int(expires) + 60}.{signature}", "alpha", "vm_w1", now=0)
    for junk in ("", ".", "12", "x.y", "9" * 40 + ".ab"):
        assert not grant_valid(secret, junk, "alpha", "vm_w1", now=0)


def test_viewers_are_capped_per_session_and_in_all() -> None:
    viewers = LiveViewers(per_session=2, total=3)
    with viewers.claim("a") as one, viewers.claim("a") as two, viewers.claim("a") as three:
        assert (one, two, three) == (True, True, False)
        with viewers.claim("b") as four, viewers.claim("c") as five:
            assert (four, five) == (True, False)
    with viewers.claim("a") as again:
        assert again, "places are given back"


class FakeWebSocket:
    """What `bridge` uses of a WebSocket: messages in, bytes out."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent = bytearray()

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send_bytes(self, data: bytes) -> None:
        self.sent += data

    def give(self, data: bytes | None = None, text: str | None = None) -> None:
        if data is None and text is None:
            self.incoming.put_nowait({"type": "websocket.disconnect"})
        else:
            self.incoming.put_nowait({"type": "websocket.receive", "bytes": data, "text": text})


async def _stream_pair() -> tuple[AgentStream, socket.socket]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    theirs.setblocking(False)
    return AgentStream(reader, writer), theirs


async def _read(peer: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        chunk = await asyncio.wait_for(loop.sock_recv(peer, size - len(data)), 5)
        assert chunk, "closed"
        data += chunk
    return data


async def test_the_bridge_drops_a_view_only_viewers_input() -> None:
    stream, vnc_server = await _stream_pair()
    websocket = FakeWebSocket()
    task = asyncio.ensure_future(
        bridge(websocket, stream, ClientFilter(view_only=True), 30)  # type: ignore[arg-type]
    )
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(vnc_server, b"RFB 003.008\n")
    websocket.give(HANDSHAKE + POINTER)
    websocket.give(POINTER + UPDATE_REQUEST)
    assert await _read(vnc_server, len(HANDSHAKE + UPDATE_REQUEST)) == HANDSHAKE + UPDATE_REQUEST
    websocket.give()  # the viewer leaves
    assert await asyncio.wait_for(task, 5) == (None, "")
    assert websocket.sent == b"RFB 003.008\n"
    await stream.aclose()
    vnc_server.close()


async def test_the_bridge_ends_a_view_that_breaks_the_protocol() -> None:
    stream, vnc_server = await _stream_pair()
    websocket = FakeWebSocket()
    websocket.give(HANDSHAKE + b"\x09")
    code, reason = await asyncio.wait_for(
        bridge(websocket, stream, ClientFilter(view_only=False), 30),  # type: ignore[arg-type]
        5,
    )
    assert code == 1008
    assert "unknown client message type 9" in reason
    websocket.give(text="RFB 003.008\n")
    code, reason = await asyncio.wait_for(
        bridge(websocket, stream, ClientFilter(view_only=True), 30),  # type: ignore[arg-type]
        5,
    )
    assert (code, "binary" in reason) == (1008, True)
    await stream.aclose()
    vnc_server.close()


async def test_the_bridge_ends_with_the_server_or_the_time_limit() -> None:
    stream, vnc_server = await _stream_pair()
    websocket = FakeWebSocket()
    timed = await bridge(websocket, stream, ClientFilter(view_only=True), 0.2)  # type: ignore[arg-type]
    assert timed == (1000, "the view reached its time limit (setting live_view.max_seconds)")
    vnc_server.close()  # the session's VNC server ends
    ended = await asyncio.wait_for(
        bridge(websocket, stream, ClientFilter(view_only=True), 30),  # type: ignore[arg-type]
        5,
    )
    assert ended == (1000, "the session's VNC server ended the view")
    await stream.aclose()


async def _websocket(
    h: Harness, path: str, headers: dict[str, str], subprotocols: list[str] | None = None
) -> list[dict[str, Any]]:
    """What the app sends a WebSocket client that connects to `path` and then waits."""
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"sandbox")]
        + [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "subprotocols": subprotocols or [],
        "server": ("sandbox", 80),
        "client": ("127.0.0.1", 5000),
    }
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    incoming.put_nowait({"type": "websocket.connect"})
    sent: list[dict[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))
        if message["type"] == "websocket.close":
            incoming.put_nowait({"type": "websocket.disconnect", "code": message.get("code")})

    await asyncio.wait_for(h.app(scope, incoming.get, send), 5)
    return sent


async def test_the_websocket_opens_only_for_the_sessions_tenant_from_this_site(
    keyed: Harness,
) -> None:
    created = await keyed.post(
        "/session/create", {"worker_id": "w1", "resource_type": "vm"}, headers=auth("alpha")
    )
    path = f"/ui/vnc/{created['data']['session_id']}"
    login = await keyed.client.post("/ui/login", json={"key": KEYS["beta"]})
    beta_cookie = {"Cookie": f"sandbox_ui={login.cookies['sandbox_ui']}"}
    keyed.client.cookies.clear()

    for refused in ({}, {"Authorization": "Bearer guess"}, {"Cookie": "sandbox_ui=1.2.alpha"}):
        sent = await _websocket(keyed, path, refused)
        assert [m["type"] for m in sent] == ["websocket.close"], refused  # before accept: 403
    evil = {**auth("alpha"), "Origin": "http://evil.example"}
    assert [m["type"] for m in await _websocket(keyed, path, evil)] == ["websocket.close"]

    foreign = await _websocket(keyed, path, beta_cookie)
    assert [m["type"] for m in foreign] == ["websocket.accept", "websocket.close"]
    assert foreign[1]["code"] == 4404
    assert "no live vm session" in foreign[1]["reason"]

    forged = await _websocket(
        keyed, path, auth("alpha"), subprotocols=["binary", "sandbox-control.99999999999.00"]
    )
    assert forged[0]["subprotocol"] == "binary", "noVNC's protocol is the one picked"
    assert forged[1]["code"] == 1008
    assert "grant" in forged[1]["reason"]

    # Alpha's own view gets as far as the agent, view-only, not the worker's call.
    asked: list[tuple[str, dict[str, str]]] = []

    async def unreachable(
        url: str, token: str, name: str, query: dict[str, str], timeout: float
    ) -> AgentStream:
        asked.append((name, query))
        raise AgentUnreachable("the fake agent streams nothing")

    keyed.agents.open_stream = unreachable  # type: ignore[method-assign]
    own = await _websocket(keyed, path, {**auth("alpha"), "Origin": "http://sandbox"})
    assert [m["type"] for m in own] == ["websocket.accept", "websocket.close"]
    assert (own[1]["code"], own[1]["reason"]) == (4502, "the fake agent streams nothing")
    assert asked == [("vnc", {"view_only": "1", "max_seconds": "3600"})]

    # Under a grant from alpha's key, and for alpha only, the view sends input.
    granted = await keyed.post(f"/ui/control/{path.rsplit('/', 1)[1]}", headers=auth("alpha"))
    offer = ["binary", f"sandbox-control.{granted['data']['grant']}"]
    await _websocket(keyed, path, auth("alpha"), subprotocols=offer)
    assert asked[-1] == ("vnc", {"view_only": "0", "max_seconds": "3600"})
    stolen = await _websocket(keyed, path, beta_cookie, subprotocols=offer)
    assert stolen[1]["code"] == 1008, "another tenant cannot use alpha's grant"
    assert len(asked) == 2


async def test_the_live_views_state_is_made_at_each_start_not_on_first_use(
    tmp_path: Path,
) -> None:
    settings = make_settings(api_keys=KEYS, live_view={"viewers_per_session": 1, "viewers": 3})
    h = await open_harness(settings)
    h.runtime.images.add("sandbox/desktop:latest")
    async with h.app.router.lifespan_context(h.app), h.client:
        first = h.app.state.services.live_views
        # There before any page asked, bounded by the settings.
        assert isinstance(first.screenshots, asyncio.Semaphore)
        with first.viewers.claim("s") as one, first.viewers.claim("s") as two:
            assert (one, two) == (True, False)
        created = await h.post(
            "/session/create", {"worker_id": "w1", "resource_type": "vm"}, headers=auth("alpha")
        )
        session_id = created["data"]["session_id"]
        granted = await h.post(f"/ui/control/{session_id}", headers=auth("alpha"))
        grant = granted["data"]["grant"]
        assert grant_valid(first.grant_secret, grant, "alpha", session_id)
    async with h.app.router.lifespan_context(h.app):
        again = h.app.state.services.live_views
        assert again is not first
        # A grant of control does not outlive the run of the server that issued it.
        assert not grant_valid(again.grant_secret, grant, "alpha", session_id)


async def test_the_refreshed_views_take_at_most_four_screenshots_at_once(
    tmp_path: Path,
) -> None:
    h = await open_harness(make_settings())
    h.runtime.images.add("sandbox/desktop:latest")
    inside, most, go = 0, 0, asyncio.Event()

    async def screenshot(params: dict[str, Any]) -> dict[str, Any]:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await go.wait()
        inside -= 1
        return {"image": base64.b64encode(b"\xff\xd8\xff\xe0jpeg").decode(), "format": "jpeg"}

    h.agents.handlers["vm.screenshot"] = screenshot
    async with h.app.router.lifespan_context(h.app), h.client:
        created = await h.post("/session/create", {"worker_id": "w1", "resource_type": "vm"})
        session_id = created["data"]["session_id"]
        views = [asyncio.ensure_future(h.client.get(f"/ui/screen/{session_id}")) for _ in range(6)]
        for _ in range(100):
            if inside == SCREENSHOTS_AT_ONCE:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # time for a fifth to get in, were it let
        assert (inside, most) == (SCREENSHOTS_AT_ONCE, SCREENSHOTS_AT_ONCE)
        go.set()
        answers = await asyncio.gather(*views)
        assert [answer.status_code for answer in answers] == [200] * 6
