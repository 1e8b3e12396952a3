"""The /ui page in a real browser (Debian's headless chromium through Selenium and
its chromedriver) against a real server with two tenants and real desktops.

Set SANDBOX_UI_SCREENSHOTS to a directory to keep the page's screenshots there
(docs/ui.png is one, taken by `test_the_page_shows_a_tenant_its_own_data_only`).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from .support import ServerProcess, checked, start_server

KEYS = {"alpha": "alpha-ui-key-0123456789", "beta": "beta-ui-key-9876543210"}
SCREEN = (800, 600)
RED = (255, 0, 0)
T = TypeVar("T")


# -- fixtures: server, browser ------------------------------------------


@pytest.fixture(scope="module")
def server(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server with two tenants (alpha an operator) that records every session."""
    tmp = tmp_path_factory.mktemp("ui")
    env = {
        "SANDBOX_API_KEYS": json.dumps(KEYS),
        "SANDBOX_RECORDING": "true",
        "SANDBOX_ADMIN_TENANTS": json.dumps(["alpha"]),
        "SANDBOX_RECORDING_DIR": str(tmp / "recordings"),
        # The screenshots view (noVNC's is tests/integration/test_ui_vnc.py's).
        "SANDBOX_LIVE_VIEW__VNC": "false",
    }
    with checked(docker_client, start_server(tmp, env=env)) as proc:
        yield proc


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """Headless chromium driven by Debian's chromedriver; Selenium fetches nothing."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("chromium and chromium-driver are missing: scripts/setup.sh installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(argument)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")  # never let Selenium Manager download a driver
        chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield chrome
    finally:
        chrome.quit()


# -- helpers ------------------------------------------------------------------------


def api(server: ServerProcess, tenant: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {KEYS[tenant]}"},
        timeout=120,
    )


def ok(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    envelope: dict[str, Any] = client.post(path, json=body).json()
    assert envelope["code"] == 0, envelope
    return dict(envelope["data"])


def execute(client: httpx.Client, worker: str, action: str, **params: Any) -> dict[str, Any]:
    """`action` run as `worker`; its data (any other code fails the test)."""
    return ok(client, "/execute", {"worker_id": worker, "action": action, "params": params})


def new_desktop(client: httpx.Client, worker: str) -> str:
    """A new desktop of `worker`, `SCREEN` in size; its session id."""
    config = {"screen_size": list(SCREEN)}
    body = {"worker_id": worker, "resource_type": "vm", "config": config}
    return str(ok(client, "/session/create", body)["session_id"])


def until(what: str, check: Callable[[], T | None], timeout: float = 20) -> T:
    """`check()` once it is truthy, polled until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def log_in(browser: webdriver.Chrome, server: ServerProcess, tenant: str) -> None:
    browser.get(f"{server.url}/ui")
    browser.delete_all_cookies()  # whoever was logged in before
    browser.refresh()
    WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "login-key").is_displayed())
    browser.find_element(By.ID, "login-key").send_keys(KEYS[tenant])
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    WebDriverWait(browser, 10).until(
        lambda b: b.find_element(By.ID, "tenant").text == f"tenant: {tenant}"
    )


def visit(browser: webdriver.Chrome, server: ServerProcess, fragment: str) -> None:
    browser.get(f"{server.url}/ui#{fragment}")


def text_of(browser: webdriver.Chrome, element_id: str) -> str:
    return str(browser.find_element(By.ID, element_id).text)


def live_pixel(browser: webdriver.Chrome, x: int, y: int) -> tuple[int, int, int] | None:
    """The live view's pixel at (x, y) of the screen, read back through a canvas."""
    found = browser.execute_script(
        """
        const img = document.getElementById("live-screen");
        if (!img.complete || img.naturalWidth === 0) return null;
        const canvas = document.createElement("canvas");
        canvas.width = img.naturalWidth;
        canvas.height = img.naturalHeight;
        const context = canvas.getContext("2d");
        context.drawImage(img, 0, 0);
        const scale = img.naturalWidth / arguments[2];
        const pixel = context.getImageData(arguments[0] * scale, arguments[1] * scale, 1, 1).data;
        return [pixel[0], pixel[1], pixel[2]];
        """,
        x,
        y,
        SCREEN[0],
    )
    return None if found is None else (found[0], found[1], found[2])


def near(color: tuple[int, int, int] | None, target: tuple[int, int, int]) -> bool:
    """JPEG moves colours a little."""
    return color is not None and all(abs(a - b) <= 40 for a, b in zip(color, target, strict=True))


def shoot(browser: webdriver.Chrome, tmp_path: Path, name: str) -> Path:
    """Save the page as PNG under SANDBOX_UI_SCREENSHOTS (else `tmp_path`)."""
    directory = Path(os.environ.get("SANDBOX_UI_SCREENSHOTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    assert browser.save_screenshot(str(path))
    assert path.read_bytes().startswith(b"\x89PNG")
    return path


def steps_of(client: httpx.Client, session_id: str) -> int:
    listed = client.get("/trajectories", params={"session_id": session_id}).json()["data"]
    return sum(t["steps"] for t in listed["trajectories"])


def expiry_of(client: httpx.Client, session_id: str) -> float:
    sessions = client.get("/ui/sessions").json()["data"]["sessions"]
    return float(next(s["expires_at"] for s in sessions if s["session_id"] == session_id))


# -- the tests --------------------------------------------------------------------


def test_the_page_shows_a_tenant_its_own_data_only(
    server: ServerProcess, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    with api(server, "alpha") as alpha, api(server, "beta") as beta:
        # A warm desktop pool (alpha is an operator), and a session claimed from it.
        warmed = ok(alpha, "/warmup", {"resources": ["vm"], "pool_size": {"vm": 1}, "wait": True})
        assert warmed["resources"]["vm"]["pools"][0]["ready"] == 1, warmed
        try:
            desk = ok(alpha, "/session/create", {"worker_id": "ui-alpha", "resource_type": "vm"})
        finally:
            ok(alpha, "/warmup", {"resources": ["vm"], "pool_size": {"vm": 0}})
        execute(alpha, "ui-alpha", "vm:launch", command="xterm", wait_for_window=True)
        execute(alpha, "ui-alpha", "vm:screenshot")
        execute(alpha, "ui-alpha", "vm:cursor_position")
        shell = execute(beta, "ui-beta-secret", "bash:run", command="echo beta-only")
        beta_session = client_session(beta, "ui-beta-secret")

        log_in(browser, server, "alpha")
        WebDriverWait(browser, 15).until(
            lambda b: b.find_elements(By.CSS_SELECTOR, f'tr[data-session="{desk["session_id"]}"]')
        )
        WebDriverWait(browser, 15).until(
            lambda b: b.find_elements(
                By.CSS_SELECTOR, f'tr[data-trajectory="{desk["session_id"]}"]'
            )
        )
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-session="{desk["session_id"]}"]')
        assert "ui-alpha" in row.text
        assert "vm" in row.text
        assert "pool" in row.text.split()
        (pool,) = [
            [cell.text for cell in tr.find_elements(By.TAG_NAME, "td")]
            for tr in browser.find_elements(By.CSS_SELECTOR, "#pools tbody tr")
            if tr.text.startswith("vm ")
        ]
        assert pool[1] == "ready", pool
        assert pool[6] == "1", f"one hit: {pool}"
        assert "live view" in row.text
        page = browser.page_source
        assert "ui-beta-secret" not in page, "beta's worker shown to alpha"
        assert beta_session not in page
        assert "beta-only" not in page
        assert shell["stdout"] == "beta-only\n"
        assert browser.execute_script("return document.cookie") == "", "the cookie is HttpOnly"
        shoot(browser, tmp_path, "ui.png")

        # beta sees its own shell, and neither alpha's desktop nor its trajectory.
        log_in(browser, server, "beta")
        WebDriverWait(browser, 15).until(
            lambda b: b.find_elements(By.CSS_SELECTOR, f'tr[data-session="{beta_session}"]')
        )
        assert desk["session_id"] not in browser.page_source
        assert "ui-alpha" not in browser.page_source
        visit(browser, server, f"/trajectory/{desk['session_id']}")
        until("the refusal", lambda: "could not load" in text_of(browser, "trajectory-status"))
        assert not browser.find_elements(By.CSS_SELECTOR, "#steps li")
        visit(browser, server, f"/live/{desk['session_id']}")
        until("the refusal", lambda: "no live session" in text_of(browser, "live-status"))
        assert (
            browser.execute_script("return document.getElementById('live-screen').naturalWidth")
            == 0
        )


def client_session(client: httpx.Client, worker: str) -> str:
    (session,) = ok(client, "/session/list", {"worker_id": worker})["sessions"]
    assert session["worker_id"] == worker
    return str(session["session_id"])


def test_a_trajectory_is_a_step_list_with_screenshots_walked_by_keyboard(
    server: ServerProcess, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    with api(server, "alpha") as alpha:
        session_id = new_desktop(alpha, "ui-steps")
        launch = {"command": "xterm -geometry 60x12+60+60", "wait_for_window": True}
        execute(alpha, "ui-steps", "vm:launch", **launch)
        shot = execute(alpha, "ui-steps", "vm:screenshot")
        moved = execute(alpha, "ui-steps", "vm:move", x=10, y=20)
        execute(alpha, "ui-steps", "vm:screenshot", format="jpeg", max_width=400)

        log_in(browser, server, "alpha")
        visit(browser, server, f"/trajectory/{session_id}")
        until("four steps", lambda: len(browser.find_elements(By.CSS_SELECTOR, "#steps li")) == 4)

        def current() -> str:
            return str(
                browser.find_element(By.CSS_SELECTOR, "#steps li.current").get_attribute("data-seq")
            )

        def loaded_width() -> int:
            img = browser.find_element(By.CSS_SELECTOR, "#step img")
            return int(
                until(
                    "the image",
                    lambda: browser.execute_script(
                        "return arguments[0].complete && arguments[0].naturalWidth", img
                    ),
                )
            )

        assert current() == "1"
        assert json.loads(text_of(browser, "step-params")) == launch
        assert not browser.find_elements(By.CSS_SELECTOR, "#step img")
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys("j")
        assert current() == "2"
        assert "vm:screenshot" in text_of(browser, "step")
        assert loaded_width() == SCREEN[0]
        # What the page shows is what the worker got: recording changed no result.
        src = browser.find_element(By.CSS_SELECTOR, "#step img").get_attribute("src")
        assert alpha.get(str(src)).content == base64.b64decode(shot["image"])
        assert json.loads(text_of(browser, "step-result"))["size"] == shot["size"]
        browser.set_window_size(1280, 1400)
        shoot(browser, tmp_path, "ui-trajectory.png")
        browser.set_window_size(1280, 1000)
        body.send_keys("j")
        assert current() == "3"
        assert json.loads(text_of(browser, "step-params")) == {"x": 10, "y": 20}
        assert json.loads(text_of(browser, "step-result")) == moved
        assert not browser.find_elements(By.CSS_SELECTOR, "#step img")
        body.send_keys(Keys.ARROW_DOWN)
        assert current() == "4"
        assert loaded_width() == 400
        body.send_keys(Keys.ARROW_DOWN)
        assert current() == "4", "past the last step it stays"
        body.send_keys("k")
        body.send_keys(Keys.ARROW_UP)
        assert current() == "2"


def test_the_live_view_follows_the_screen_and_is_neither_input_nor_a_call(
    server: ServerProcess, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    with api(server, "alpha") as alpha:
        session_id = new_desktop(alpha, "ui-live")
        log_in(browser, server, "alpha")
        visit(browser, server, f"/live/{session_id}")
        before = until("the first screen", lambda: live_pixel(browser, 400, 300))
        assert not near(before, RED), before

        # A vm: call changes the screen: a red xterm over the middle of it.
        execute(
            alpha,
            "ui-live",
            "vm:launch",
            command="xterm -bg red -geometry 200x80+0+0",
            wait_for_window=True,
        )
        try:
            until("red in the live view", lambda: near(live_pixel(browser, 400, 300), RED))
        except AssertionError:
            shoot(browser, tmp_path, "ui-live-failed.png")
            raise
        shoot(browser, tmp_path, "ui-live.png")

        # Watching is not the worker's call: nothing recorded, the expiry stays.
        steps, expires = steps_of(alpha, session_id), expiry_of(alpha, session_id)
        assert steps == 1, "only the launch is a step"
        shown = browser.execute_script("return document.getElementById('live-screen').src")
        until(
            "more refreshes",
            lambda: (
                browser.execute_script("return document.getElementById('live-screen').src") != shown
            ),
        )
        time.sleep(2)
        assert steps_of(alpha, session_id) == 1, "the live view was recorded"
        assert expiry_of(alpha, session_id) == expires, "the live view kept the session alive"

        # View only: the page's credentials cannot send input, nor can the page.
        refused = browser.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            fetch("/execute", {method: "POST", credentials: "same-origin",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({worker_id: "ui-live", action: "vm:key",
                                      params: {key: "Return"}})})
              .then((r) => done(r.status));
            """
        )
        assert refused == 401
        screen = browser.find_element(By.ID, "live-screen")
        ActionChains(browser).click(screen).send_keys("exit\n").perform()
        time.sleep(1)
        assert steps_of(alpha, session_id) == 1
        windows = execute(
            alpha, "ui-live", "vm:run_command", command="xdotool search --class xterm"
        )
        assert windows["stdout"].strip(), "the xterm is still open: no input reached it"
        until("the red xterm still", lambda: near(live_pixel(browser, 400, 300), RED), 5)

        # A session that ends is said so, and logging out ends the page's access.
        ok(alpha, "/session/destroy", {"worker_id": "ui-live"})
        until("the end", lambda: "no live session" in text_of(browser, "live-status"))
        browser.find_element(By.ID, "logout").click()
        until("the login form", lambda: browser.find_element(By.ID, "login-key").is_displayed())
        status = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/ui/sessions', {credentials: 'same-origin'}).then((r) => done(r.status));"
        )
        assert status == 401
