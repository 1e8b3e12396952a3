"""Bad input, oversized bodies, trace ids and the API key, with Docker and the agents faked."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sandbox.config import Settings
from sandbox.errors import ErrorCode

from .conftest import Harness, make_settings, open_harness

RUN = {"worker_id": "w1", "action": "bash:run"}


@pytest.fixture
async def limited() -> AsyncIterator[Harness]:
    h = await open_harness(make_settings(max_body_bytes=4096))
    async with h.app.router.lifespan_context(h.app), h.client:
        yield h


def _assert_too_large(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413
    envelope = response.json()
    assert envelope["code"] == ErrorCode.INVALID_PARAMS
    assert envelope["data"] == {"field": "body", "max_body_bytes": limit}
    assert envelope["message"].startswith("body: ")
    assert envelope["meta"]["trace_id"] == response.headers["x-trace-id"]


async def test_a_body_declared_over_the_limit_is_413_before_it_is_read(limited: Harness) -> None:
    received = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal received
        for _ in range(64):
            received += 1
            yield b" " * 1024

    response = await limited.client.post(
        "/execute",
        content=body(),
        headers={"content-type": "application/json", "content-length": str(64 * 1024)},
    )
    _assert_too_large(response, 4096)
    assert received == 0, "not a byte of the body was read"
    assert limited.agents.calls == {}
    assert limited.runtime.containers == {}


async def test_a_streamed_body_is_cut_off_once_it_passes_the_limit(limited: Harness) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield json.dumps({**RUN, "params": {"command": "x"}})[:-1].encode() + b', "pad": "'
        for _ in range(100):
            sent += 1
            yield b"a" * 1024
        yield b'"}'

    response = await limited.client.post(
        "/execute", content=chunks(), headers={"content-type": "application/json"}
    )
    _assert_too_large(response, 4096)
    assert sent < 10, "the rest of the body was not waited for"
    assert limited.agents.calls == {}
    ok = await limited.post("/execute", {**RUN, "params": {"command": "after"}})
    assert ok["code"] == 0, "the refused request left nothing stuck"


async def test_bodies_up_to_the_limit_pass(limited: Harness) -> None:
    command = "x" * 3500
    envelope = await limited.post("/execute", {**RUN, "params": {"command": command}})
    assert envelope["code"] == 0
    assert envelope["data"]["stdout"] == command + "\n"


def test_the_default_body_limit_fits_screenshots_and_index_batches() -> None:
    assert Settings(server_id="x").max_body_bytes == 64 * 1024**2


async def test_a_big_string_under_the_limit_is_handled(harness: Harness) -> None:
    command = "y" * (8 << 20)
    envelope = await harness.post("/execute", {**RUN, "params": {"command": command}})
    assert envelope["code"] == 0
    assert len(envelope["data"]["stdout"]) == len(command) + 1


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"{not json", "body"),
        (b"", "body"),
        (b"[1, 2]", "body"),
        (b'"just a string"', "body"),
        (b"[" * 100_000 + b"]" * 100_000, "body"),
        (b'{"worker_id": "w1", "action": "bash:run", "timeout": NaN}', "timeout"),
        (b'{"worker_id": "w1", "action": "bash:run", "timeout": Infinity}', "timeout"),
        (b'{"worker_id": "w1", "action": "bash:run", "timeout": -Infinity}', "timeout"),
        (b'{"worker_id": "w1", "action": "bash:run", "timeout": 1e400}', "timeout"),
        (b'{"worker_id": "w1", "action": "bash:r\\ud800n"}', "action"),
        (b'{"worker_id": "w1", "action": "bash:run", "params": {"\\udfff": 1}}', "params"),
        (b'{"worker_id": "w1", "action": "bash:run", "\\u0000": 1}', "\x00"),
        (
            b'{"worker_id": "w1", "action": "bash:run", "params": {"command": "ls"}} trailing',
            "body",
        ),
        (b"\xff\xfe{}", "body"),
    ],
)
async def test_malformed_bodies_are_1002_naming_the_field(
    harness: Harness, content: bytes, field: str
) -> None:
    response = await harness.client.post(
        "/execute", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    envelope = response.json()
    assert envelope["code"] == ErrorCode.INVALID_PARAMS
    assert envelope["data"]["field"] == field
    assert harness.agents.calls == {}


_ABSURD_TIMEOUTS = [0, -1, 86_401, 1e308, "soon", "", [], {}, [5], {"s": 5}, "NaN"]


@pytest.mark.parametrize("timeout", _ABSURD_TIMEOUTS)
@pytest.mark.parametrize(("where", "field"), [("request", "timeout"), ("params", "params.timeout")])
async def test_absurd_timeouts_are_1002_naming_the_field(
    harness: Harness, timeout: Any, where: str, field: str
) -> None:
    params: dict[str, Any] = {"command": "true"}
    body: dict[str, Any] = {**RUN, "params": params}
    (body if where == "request" else params)["timeout"] = timeout
    envelope = await harness.post("/execute", body)
    assert (envelope["_status"], envelope["code"]) == (400, ErrorCode.INVALID_PARAMS), envelope
    assert envelope["data"]["field"] == field
    assert harness.runtime.containers == {}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/execute/batch", {"worker_id": "w1", "actions": []}, "actions"),
        ("/execute/batch", {"worker_id": "w1", "actions": [{"action": "x", "oops": 1}]}, None),
        ("/execute/batch", {"worker_id": "w1", "actions": "bash:run"}, "actions"),
        ("/execute/batch", {"worker_id": "w1", "actions": [{}] * 1001}, "actions"),
        ("/session/create", {"worker_id": "w1", "resource_type": "b" * 33}, "resource_type"),
        ("/session/create", {"worker_id": "w1", "resource_type": "bash", "extra": 1}, "extra"),
        ("/session/create", {"worker_id": "w1", "resource_type": "bash", "config": []}, "config"),
        ("/session/create", {"worker_id": "w" * 129, "resource_type": "bash"}, "worker_id"),
        ("/session/list", {"worker_id": 7}, "worker_id"),
        ("/warmup", {"resources": "bash"}, "resources"),
        ("/warmup", {"wait": "later"}, "wait"),
        ("/api/v1/lifecycle/heartbeat", {"worker_id": "w1", "nope": True}, "nope"),
    ],
)
async def test_wrong_types_and_unknown_fields_are_1002(
    harness: Harness, path: str, body: dict[str, Any], field: str | None
) -> None:
    envelope = await harness.post(path, body)
    assert (envelope["_status"], envelope["code"]) == (400, ErrorCode.INVALID_PARAMS), envelope
    if field is None:
        assert envelope["data"]["field"].startswith("actions.0.")
    else:
        assert envelope["data"]["field"] == field
    assert harness.runtime.containers == {}


async def test_a_session_is_never_stuck_after_bad_calls(harness: Harness) -> None:
    await harness.post("/execute", {**RUN, "params": {"command": "first"}})
    for bad in (
        {**RUN, "params": {"command": 1}},
        {**RUN, "params": {"command": "x", "timeout": 0}},
        {**RUN, "params": {"command": "sleep 9"}, "timeout": 1},
        {"worker_id": "w1", "action": "bash:nope"},
        {**RUN, "params": {"command": "boom"}},
    ):
        await harness.post("/execute", bad)
    envelope = await asyncio.wait_for(
        harness.post("/execute", {**RUN, "params": {"command": "still fine"}}), timeout=2
    )
    assert envelope["code"] == 0
    (session,) = harness.app.state.services.sessions.sessions("w1")
    assert session.active_calls == 0


@pytest.mark.parametrize(
    ("given", "echoed"),
    [
        (b"abc-123.x:y_z", True),
        (b"a" * 64, True),
        (b"a" * 65, False),
        (b"has space", False),
        (b"\xff\xfe", False),
        (b"line\x00nul", False),
        (b"", False),
    ],
)
async def test_trace_ids_are_echoed_only_when_harmless(
    harness: Harness, given: bytes, echoed: bool
) -> None:
    response = await harness.client.get("/tools", headers=[(b"x-trace-id", given)])
    trace_id = response.headers["x-trace-id"]
    assert (trace_id == given.decode("latin-1")) is echoed
    assert response.json()["meta"]["trace_id"] == trace_id
    assert trace_id.isascii()


async def test_a_bad_worker_header_is_1002(harness: Harness) -> None:
    response = await harness.client.post(
        "/execute",
        json={"action": "bash:run", "params": {"command": "x"}},
        headers=[(b"x-worker-id", b"\xe9\xff")],
    )
    assert response.status_code == 400
    assert response.json()["data"]["field"] == "worker_id"


async def test_the_api_key_is_401_naming_authorization_with_a_challenge() -> None:
    h = await open_harness(make_settings(api_key="s3cret-key"))
    async with h.app.router.lifespan_context(h.app), h.client:
        for headers in (
            {},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer s3cret-ke"},
            {"Authorization": "Bearer s3cret-key2"},
            {"Authorization": "Basic s3cret-key"},
            {"Authorization": "s3cret-key"},
        ):
            response = await h.client.post("/execute", json=RUN, headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["data"] == {"field": "Authorization"}
            assert "s3cret" not in response.text
        assert h.agents.calls == {}
        for scheme in ("Bearer", "bearer"):
            allowed = await h.client.post(
                "/execute",
                json={**RUN, "params": {"command": "x"}},
                headers={"Authorization": f"{scheme} s3cret-key"},
            )
            assert allowed.json()["code"] == 0
        assert (await h.client.get("/health")).status_code == 200


def test_settings_never_show_the_api_key() -> None:
    settings = Settings.model_validate({"server_id": "x", "api_key": "very-secret-value"})
    for text in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        json.dumps(settings.model_dump(mode="json")),
        repr(settings.model_dump()),
    ):
        assert "very-secret-value" not in text
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "very-secret-value"


async def test_the_openapi_document_describes_bodies_errors_and_auth(harness: Harness) -> None:
    document = (await harness.client.get("/openapi.json")).json()
    execute = document["paths"]["/execute"]["post"]
    body = execute["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/ExecuteRequest"}
    assert body["examples"]["bash"]["value"]["action"] == "bash:run"
    assert set(execute["responses"]) == {"200", "4XX", "5XX"}, "no undocumented 422"
    assert execute["security"] == [{"HTTPBearer": []}]
    request = document["components"]["schemas"]["ExecuteRequest"]
    assert request["additionalProperties"] is False
    assert "security" not in document["paths"]["/health"]["get"]
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]
    assert "text/plain" in metrics["content"]
