"""The /ui live view over noVNC in a real browser: Debian's novnc in headless chromium,
the server's RFB bridge, and an x11vnc the agent of a real desktop starts per viewer.

View-only unless the session's owner grants control: input a page sends anyway
(its noVNC told to send it) does not reach the session; after ``Take control``
with the API key it does.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request

from .support import ServerProcess, checked, start_server
from .test_ui import KEYS, api, execute, log_in, new_desktop, ok, shoot, text_of, until, visit
from .test_ui import browser as browser  # the same headless chromium fixture

NOVNC = Path("/usr/share/novnc/core/rfb.js")


@pytest.fixture(scope="module")
def server(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server with two tenants whose live view is noVNC (Debian's novnc on the host)."""
    if not NOVNC.is_file():
        pytest.fail("Debian's novnc is missing: scripts/setup.sh installs it")
    tmp = tmp_path_factory.mktemp("ui-vnc")
    env = {"SANDBOX_API_KEYS": json.dumps(KEYS)}
    with checked(docker_client, start_server(tmp, env=env)) as proc:
        yield proc


def canvas_pixel(browser: webdriver.Chrome, x: int, y: int) -> tuple[int, int, int] | None:
    """noVNC's canvas pixel at screen (x, y) (its canvas holds the screen 1:1)."""
    found = browser.execute_script(
        """
        const canvas = document.querySelector("#live-vnc canvas");
        if (!canvas || canvas.width < arguments[0] || canvas.height < arguments[1]) return null;
        const pixel = canvas.getContext("2d").getImageData(arguments[0], arguments[1], 1, 1).data;
        return [pixel[0], pixel[1], pixel[2]];
        """,
        x,
        y,
    )
    return None if found is None else (found[0], found[1], found[2])


def point_at(browser: webdriver.Chrome, x: int, y: int) -> None:
    """Move the browser's mouse over screen point (x, y) of noVNC's (scaled) canvas."""
    canvas = browser.find_element(By.CSS_SELECTOR, "#live-vnc canvas")
    box = browser.execute_script(
        "const c = arguments[0], r = c.getBoundingClientRect();"
        "return [r.width / c.width, r.height / c.height, r.width, r.height];",
        canvas,
    )
    scale_x, scale_y, width, height = box
    # Selenium 4 offsets from the element's centre.
    offset_x = round(x * scale_x - width / 2)
    offset_y = round(y * scale_y - height / 2)
    ActionChains(browser).move_to_element_with_offset(canvas, offset_x, offset_y).click().perform()


def websocket_answer(server: ServerProcess, path: str, headers: list[tuple[str, str]]) -> int:
    """The HTTP status a WebSocket handshake to `path` gets (101: accepted)."""
    connection = WSConnection(ConnectionType.CLIENT)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        host = f"127.0.0.1:{server.port}"
        extra = [(name.encode(), value.encode()) for name, value in headers]
        sock.sendall(connection.send(Request(host=host, target=path, extra_headers=extra)))
        while True:
            data = sock.recv(65536)
            connection.receive_data(data or None)
            for event in connection.events():
                if isinstance(event, AcceptConnection):
                    return 101
                if isinstance(event, RejectConnection):
                    return int(event.status_code)
            if not data:
                return 0


def test_novnc_shows_the_screen_and_sends_input_only_under_control(
    server: ServerProcess, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    worker = "vnc-alpha"
    with api(server, "alpha") as alpha, api(server, "beta") as beta:

        def call(action: str, **params: object) -> dict[str, object]:
            return execute(alpha, worker, action, **params)

        session_id = new_desktop(alpha, worker)
        log_in(browser, server, "alpha")
        visit(browser, server, f"/live/{session_id}")
        until("noVNC's view", lambda: text_of(browser, "live-status") == "noVNC: view only")
        assert browser.find_element(By.ID, "live-screen").is_displayed() is False

        # A change a vm: call makes shows in the noVNC canvas.
        assert canvas_pixel(browser, 60, 40) != (255, 0, 0)
        call("vm:launch", command="xterm -geometry 30x8+0+0 -bg red", wait_for_window=True)
        until("the red xterm in noVNC", lambda: canvas_pixel(browser, 60, 40) == (255, 0, 0))
        shoot(browser, tmp_path, "ui-vnc.png")

        # View-only: even a page that makes noVNC send input reaches nothing.
        start = call("vm:cursor_position")
        browser.execute_script("liveRfb.viewOnly = false;")
        point_at(browser, 700, 500)
        time.sleep(1.0)
        assert call("vm:cursor_position") == start, "input of a view-only page reached the session"

        # Control needs the API key: the login cookie alone is refused.
        refused = alpha.post(f"/ui/control/{session_id}", headers={"Authorization": ""})
        assert refused.status_code == 401
        assert beta.post(f"/ui/control/{session_id}").json()["code"] == 1003

        browser.find_element(By.ID, "control-take").click()
        browser.find_element(By.ID, "control-key").send_keys(KEYS["alpha"])
        browser.find_element(By.CSS_SELECTOR, "#control-form button").click()
        until(
            "the view under control",
            lambda: "reach this session" in text_of(browser, "live-status"),
        )
        # The view-only view, now closed, had its input dropped by the server's bridge.
        until("the bridge's account", lambda: "'PointerEvent'" in server.log(), timeout=10)
        point_at(browser, 600, 450)

        def moved() -> bool:
            now = call("vm:cursor_position")
            return abs(int(str(now["x"])) - 600) <= 3 and abs(int(str(now["y"])) - 450) <= 3

        until("the pointer to follow the page's mouse", moved, timeout=10)

        # Another tenant opens no view of it (the page falls back and says why).
        log_in(browser, server, "beta")
        visit(browser, server, f"/live/{session_id}")
        until("the refusal", lambda: "no live session" in text_of(browser, "live-status"))
        assert not browser.find_elements(By.CSS_SELECTOR, "#live-vnc canvas")
        ok(alpha, "/session/destroy", {"worker_id": worker})


def test_the_websocket_wants_a_tenant_and_this_site(server: ServerProcess) -> None:
    with api(server, "alpha") as alpha:
        desk = ok(alpha, "/session/create", {"worker_id": "vnc-ws", "resource_type": "vm"})
        try:
            path = f"/ui/vnc/{desk['session_id']}"
            key = [("Authorization", f"Bearer {KEYS['alpha']}")]
            assert websocket_answer(server, path, []) == 403, "no key, no cookie"
            assert websocket_answer(server, path, [("Authorization", "Bearer guess")]) == 403
            evil = [*key, ("Origin", "http://evil.example")]
            assert websocket_answer(server, path, evil) == 403, "another site's page"
            same = [*key, ("Origin", f"http://127.0.0.1:{server.port}")]
            assert websocket_answer(server, path, same) == 101
        finally:
            ok(alpha, "/session/destroy", {"worker_id": "vnc-ws"})
