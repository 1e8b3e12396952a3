"""Structured logs: one JSON object per line, the request's context on each, no secrets."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from sandbox.config import Settings
from sandbox.server.context import session_var, trace_id_var, worker_var
from sandbox.server.logs import REDACTED, JsonFormatter, TextFormatter, configure_logging

from .conftest import make_settings, open_harness


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging rewires the root and uvicorn loggers: put them back."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "httpx"]
    saved = {
        name: (
            list(logging.getLogger(name).handlers),
            logging.getLogger(name).level,
            logging.getLogger(name).propagate,
        )
        for name in names
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def record(message: str, *args: object, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("sandbox.test", level, __file__, 1, message, args, None)


def test_a_json_line_has_time_level_logger_message() -> None:
    line = JsonFormatter().format(record("started %s in %d ms", "bash_w1", 12))
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "sandbox.test"
    assert entry["message"] == "started bash_w1 in 12 ms"
    assert entry["time"].endswith("+00:00")
    assert "\n" not in line
    assert not {"trace_id", "worker", "session"} & set(entry), "none outside a request"


def test_a_json_line_carries_the_request_context_and_the_traceback() -> None:
    tokens = [trace_id_var.set("t-1"), worker_var.set("w1"), session_var.set("bash_w1_001")]
    try:
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            failed = logging.LogRecord(
                "x",
                logging.ERROR,
                __file__,
                1,
                "it broke",
                (),
                exc_info=sys.exc_info(),
            )
        entry = json.loads(JsonFormatter().format(failed))
    finally:
        for var, token in zip((trace_id_var, worker_var, session_var), tokens, strict=True):
            var.reset(token)
    assert (entry["trace_id"], entry["worker"], entry["session"]) == ("t-1", "w1", "bash_w1_001")
    assert entry["level"] == "error"
    assert "ValueError: bad\nthing" in entry["exception"]


@pytest.mark.parametrize("formatter", [JsonFormatter(['k3y-V@lue\\"']), TextFormatter(["k3y"])])
def test_secrets_and_bearer_tokens_are_redacted(formatter: logging.Formatter) -> None:
    secret = 'k3y-V@lue\\"' if isinstance(formatter, JsonFormatter) else "k3y"
    lines = [
        formatter.format(record("header Authorization: Bearer abc.def-123 sent")),
        formatter.format(record("headers %s", {"authorization": "bearer xyz"})),
        formatter.format(record("key is %s", secret)),
    ]
    text = "\n".join(lines)
    for leaked in ("abc.def-123", "xyz", secret):
        assert leaked not in text
    assert text.count(REDACTED) == 3


def test_text_lines_append_the_context() -> None:
    token = trace_id_var.set("t-9")
    try:
        line = TextFormatter().format(record("hello"))
    finally:
        trace_id_var.reset(token)
    assert line.endswith("INFO sandbox.test: hello [trace_id=t-9]")


def test_configure_logging_routes_uvicorn_through_one_handler(restore_logging: None) -> None:
    stream = io.StringIO()
    settings = Settings.model_validate(
        {"server_id": "x", "api_key": "top-secret", "log_level": "debug"}
    )
    handler = configure_logging(settings, stream)
    assert logging.getLogger().handlers == [handler]
    logging.getLogger("uvicorn.error").info("Uvicorn running on %s", "http://127.0.0.1:1")
    logging.getLogger("uvicorn.access").info('%s - "%s %s" %d', "127.0.0.1", "GET", "/x", 200)
    logging.getLogger("sandbox.anything").debug("with the key top-secret")
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["logger"] for e in entries] == ["uvicorn.error", "uvicorn.access", "sandbox.anything"]
    assert "top-secret" not in stream.getvalue()


def test_text_format_is_a_setting(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(Settings(server_id="x", log_format="text"), stream)
    logging.getLogger("sandbox.anything").info("plain")
    assert stream.getvalue().rstrip().endswith("INFO sandbox.anything: plain")
    assert Settings(server_id="x").log_format == "json"


async def test_lines_logged_during_a_request_carry_trace_worker_and_session(
    restore_logging: None,
) -> None:
    stream = io.StringIO()
    configure_logging(make_settings(log_level="debug", api_key="the-api-key"), stream)
    h = await open_harness(make_settings(api_key="the-api-key"))
    async with h.app.router.lifespan_context(h.app), h.client:
        response = await h.client.post(
            "/execute",
            json={"worker_id": "w1", "action": "bash:run", "params": {"command": "ls"}},
            headers={"Authorization": "Bearer the-api-key", "X-Trace-ID": "trace-abc"},
        )
        session_id = response.json()["meta"]["session_id"]
        await h.client.post(
            "/session/destroy",
            json={"worker_id": "w1"},
            headers={"Authorization": "Bearer the-api-key"},
        )
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    started = next(e for e in entries if "started for worker" in e["message"])
    assert (started["trace_id"], started["worker"]) == ("trace-abc", "w1")
    answered = next(e for e in entries if "answered 0" in e["message"])
    assert answered["logger"] == "sandbox.server.routes.execute"
    assert (answered["trace_id"], answered["worker"], answered["session"]) == (
        "trace-abc",
        "w1",
        session_id,
    )
    destroyed = next(e for e in entries if e["message"].endswith("destroyed"))
    assert destroyed["worker"] == "w1"
    assert destroyed["trace_id"] != "trace-abc", "every request has its own trace id"
    assert "the-api-key" not in stream.getvalue()
    outside = [e for e in entries if "ready (server id" in e["message"]]
    assert outside
    assert "trace_id" not in outside[0]
