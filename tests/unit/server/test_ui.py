"""The /ui page's routes: page and assets, the login cookie, tenants, the live view."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.errors import ErrorCode
from sandbox.server.ui_auth import COOKIE_NAME, issue_cookie, tenant_of_cookie

from .conftest import Harness, make_settings, open_harness

KEYS = {"alpha": "alpha-key-123", "beta": "beta-key-456"}
JPEG = b"\xff\xd8\xff\xe0" + b"fake jpeg body"


def auth(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def _open(tmp_path: Path, clock: Clock | None = None, **settings: Any) -> Harness:
    settings.setdefault("recording", True)
    h = await open_harness(
        make_settings(recording_dir=tmp_path, **settings), clock=clock or Clock()
    )
    h.runtime.images.add("sandbox/desktop:latest")
    seen: list[dict[str, Any]] = []

    async def screenshot(params: dict[str, Any]) -> dict[str, Any]:
        seen.append(params)
        return {"image": base64.b64encode(JPEG).decode(), "size": [64, 48], "format": "jpeg"}

    h.agents.handlers["vm.screenshot"] = screenshot
    h.screenshots = seen  # type: ignore[attr-defined]
    return h


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await _open(tmp_path, api_keys=KEYS)
    async with h.app.router.lifespan_context(h.app), h.client:
        yield h


@pytest.fixture
async def open_server(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await _open(tmp_path)
    async with h.app.router.lifespan_context(h.app), h.client:
        yield h


async def login(h: Harness, tenant: str) -> dict[str, str]:
    """Log in as `tenant`; the headers that send its cookie."""
    response = await h.client.post("/ui/login", json={"key": KEYS[tenant]})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["tenant"] == tenant
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    value = response.cookies[COOKIE_NAME]
    assert KEYS[tenant] not in value, "the cookie is not the key"
    h.client.cookies.clear()
    return {"Cookie": f"{COOKIE_NAME}={value}"}


async def test_the_page_and_its_assets_need_no_key(keyed: Harness) -> None:
    page = await keyed.client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/ui/static/ui.js"' in page.text
    script = await keyed.client.get("/ui/static/ui.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text, "container text is only ever set as text"
    assert (await keyed.client.get("/ui/static/ui.css")).status_code == 200
    missing = await keyed.client.get("/ui/static/..%2Fapp.py")
    assert missing.status_code == 404


async def test_the_data_needs_a_key_or_the_login_cookie(keyed: Harness) -> None:
    assert (await keyed.client.get("/ui/sessions")).status_code == 401
    wrong = await keyed.client.post("/ui/login", json={"key": "guess"})
    assert wrong.status_code == 401
    assert COOKIE_NAME not in wrong.cookies
    by_header = await keyed.client.get("/ui/sessions", headers=auth("alpha"))
    assert by_header.json()["data"]["tenant"] == "alpha"

    cookie = await login(keyed, "alpha")
    listed = await keyed.client.get("/ui/sessions", headers=cookie)
    assert listed.status_code == 200
    assert listed.json()["data"]["tenant"] == "alpha"
    assert (await keyed.client.get("/warmup/status", headers=cookie)).status_code == 200
    assert (await keyed.client.get("/trajectories", headers=cookie)).status_code == 200


async def test_the_cookie_never_authorises_a_change(keyed: Harness) -> None:
    cookie = await login(keyed, "alpha")
    body = {"worker_id": "w1", "action": "bash:run", "params": {"command": "id"}}
    ran = await keyed.client.post("/execute", json=body, headers=cookie)
    assert ran.status_code == 401
    created = await keyed.client.post(
        "/session/create", json={"worker_id": "w1", "resource_type": "vm"}, headers=cookie
    )
    assert created.status_code == 401
    assert keyed.runtime.running() == []
    deleted = await keyed.client.delete("/trajectories/anything", headers=cookie)
    assert deleted.status_code == 401


def test_a_forged_stale_or_foreign_cookie_names_no_tenant() -> None:
    settings = make_settings(api_keys=KEYS)
    good = issue_cookie(settings, "alpha", now=100.0)
    assert tenant_of_cookie(settings, good, now=200.0) == "alpha"
    expires, signature, _ = good.split(".", 2)
    assert tenant_of_cookie(settings, f"{expires}.{signature}.beta", now=200.0) is None
    later = str(int(expires) + 3600)
    assert tenant_of_cookie(settings, f"{later}.{signature}.alpha", now=200.0) is None
    assert tenant_of_cookie(settings, good, now=float(expires)) is None, "expired"
    rotated = make_settings(api_keys={"alpha": "a-new-key-789", "beta": KEYS["beta"]})
    assert tenant_of_cookie(rotated, good, now=200.0) is None, "a new key ends old logins"
    for junk in ("", "x", "1.2", "..", "9" * 40 + ".ab.alpha", "12.zz.nobody"):
        assert tenant_of_cookie(settings, junk, now=0.0) is None


async def test_the_sessions_shown_are_the_tenants_own(keyed: Harness) -> None:
    for tenant, worker in [("alpha", "a1"), ("alpha", "shared"), ("beta", "shared")]:
        body = {"worker_id": worker, "resource_type": "vm"}
        created = await keyed.post("/session/create", body, headers=auth(tenant))
        assert created["code"] == 0, created
    beta = await keyed.client.get("/ui/sessions", headers=await login(keyed, "beta"))
    rows = beta.json()["data"]["sessions"]
    assert [(r["worker_id"], r["resource_type"]) for r in rows] == [("shared", "vm")]
    row = rows[0]
    assert row["origin"] == "cold"
    assert row["live_view"] is True
    assert row["age_s"] == 0
    assert row["expires_in_s"] == keyed.settings.session_ttl_s
    alpha = await keyed.client.get("/ui/sessions", headers=auth("alpha"))
    assert sorted(r["worker_id"] for r in alpha.json()["data"]["sessions"]) == ["a1", "shared"]


async def test_the_live_view_is_a_jpeg_that_is_not_the_workers_call(tmp_path: Path) -> None:
    clock = Clock()
    h = await _open(tmp_path, clock=clock, api_keys=KEYS)
    async with h.app.router.lifespan_context(h.app), h.client:
        created = await h.post(
            "/session/create", {"worker_id": "w1", "resource_type": "vm"}, headers=auth("alpha")
        )
        session_id = created["data"]["session_id"]
        before = (await h.client.get("/ui/sessions", headers=auth("alpha"))).json()["data"]
        clock.now += 100

        cookie = await login(h, "alpha")
        shot = await h.client.get(f"/ui/screen/{session_id}", headers=cookie)
        assert shot.status_code == 200, shot.text
        assert shot.headers["content-type"] == "image/jpeg"
        assert shot.headers["cache-control"] == "no-store"
        assert shot.content == JPEG
        assert h.screenshots == [  # type: ignore[attr-defined]
            {"format": "jpeg", "quality": 60, "max_width": 1280, "cursor": False}
        ]

        after = (await h.client.get("/ui/sessions", headers=auth("alpha"))).json()["data"]
        (was,), (now,) = before["sessions"], after["sessions"]
        assert now["expires_at"] == was["expires_at"], "watching does not keep it alive"
        assert now["last_used_at"] == was["last_used_at"]
        assert now["calls"] == 0
        listed = await h.client.get("/trajectories", headers=auth("alpha"))
        assert listed.json()["data"]["count"] == 0, "the live view is never recorded"
        assert h.app.state.services.sessions.calls == {}

        # The worker's own call is recorded and pushes the expiry, as always.
        called = await h.post(
            "/execute", {"worker_id": "w1", "action": "vm:screenshot"}, headers=auth("alpha")
        )
        assert called["code"] == 0
        pushed = (await h.client.get("/ui/sessions", headers=auth("alpha"))).json()["data"]
        assert pushed["sessions"][0]["expires_at"] > was["expires_at"]


async def test_another_tenants_screen_is_no_session(keyed: Harness) -> None:
    created = await keyed.post(
        "/session/create", {"worker_id": "w1", "resource_type": "vm"}, headers=auth("alpha")
    )
    session_id = created["data"]["session_id"]
    cookie = await login(keyed, "beta")
    foreign = await keyed.client.get(f"/ui/screen/{session_id}", headers=cookie)
    assert foreign.status_code == 409
    assert foreign.json()["code"] == ErrorCode.SESSION_ERROR
    assert keyed.screenshots == []  # type: ignore[attr-defined]


async def test_a_screen_of_a_session_without_one_is_a_named_error(open_server: Harness) -> None:
    ran = await open_server.post(
        "/execute", {"worker_id": "w1", "action": "bash:run", "params": {"command": "x"}}
    )
    response = await open_server.client.get(f"/ui/screen/{ran['meta']['session_id']}")
    assert response.status_code == 400
    assert response.json()["data"]["field"] == "session_id"
    bad = await open_server.client.get("/ui/screen/x", params={"max_width": 5})
    assert bad.status_code == 400
    assert "max_width" in bad.json()["message"]


async def test_an_agent_answering_no_jpeg_is_a_backend_error(open_server: Harness) -> None:
    async def hostile(params: dict[str, Any]) -> dict[str, Any]:
        return {"image": base64.b64encode(b"<script>alert(1)</script>").decode()}

    open_server.agents.handlers["vm.screenshot"] = hostile
    created = await open_server.post("/session/create", {"worker_id": "w1", "resource_type": "vm"})
    response = await open_server.client.get(f"/ui/screen/{created['data']['session_id']}")
    assert response.status_code == 502
    assert response.json()["code"] == ErrorCode.BACKEND_ERROR


async def test_without_keys_the_page_is_open(open_server: Harness) -> None:
    listed = await open_server.client.get("/ui/sessions")
    assert listed.status_code == 200
    assert listed.json()["data"]["keys"] is False
    logged = await open_server.client.post("/ui/login", json={"key": ""})
    assert logged.status_code == 200
    assert COOKIE_NAME not in logged.cookies


async def test_each_session_says_where_its_container_came_from(open_server: Harness) -> None:
    warmed = await open_server.post(
        "/warmup", {"resources": ["bash"], "pool_size": 1, "wait": True}
    )
    assert warmed["code"] == 0, warmed
    for worker, resource in [("pooled", "bash"), ("cold", "vm")]:
        body = {"worker_id": worker, "resource_type": resource}
        assert (await open_server.post("/session/create", body))["code"] == 0
    searched = await open_server.post(
        "/execute", {"worker_id": "reader", "action": "rag:search", "params": {"query": "x"}}
    )
    assert searched["code"] == 0, searched
    rows = (await open_server.client.get("/ui/sessions")).json()["data"]["sessions"]
    shown = {row["worker_id"]: (row["origin"], row["live_view"]) for row in rows}
    assert shown == {
        "pooled": ("pool", False),
        "cold": ("cold", True),
        "reader": ("service", False),
    }
