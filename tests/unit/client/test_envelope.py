"""`Envelope`: a dict as before, plus typed views and `raise_for_code`."""

from __future__ import annotations

import json

import httpx
import pytest

from sandbox.client import Envelope, HTTPServiceClient
from sandbox.errors import (
    BackendError,
    InvalidParams,
    SandboxError,
    SandboxTimeout,
    SessionError,
    ToolNotFound,
)
from tests.unit.client.conftest import FakeServer, Invoke, envelope


def test_a_success_stays_a_plain_mapping_with_typed_views() -> None:
    raw = envelope(data={"stdout": "hi\n"})
    result = Envelope(raw)

    assert result == raw
    assert json.loads(json.dumps(result)) == raw
    assert result["data"]["stdout"] == "hi\n"
    assert (result.code, result.message, result.ok) == (0, "success", True)
    assert result.data == {"stdout": "hi\n"}
    assert result.meta == {"trace_id": "t-1"}
    assert result.raise_for_code() is result


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (1001, ToolNotFound),
        (1002, InvalidParams),
        (1003, SessionError),
        (2001, BackendError),
        (2002, SandboxTimeout),
        (5000, SandboxError),
    ],
)
def test_raise_for_code_raises_the_matching_error(code: int, error: type[SandboxError]) -> None:
    failed = Envelope(envelope(code, data={"field": "command"}, message="it went wrong"))
    failed["meta"] = {"tool": "bash:run", "session_id": "s-1"}

    with pytest.raises(error, match="it went wrong") as caught:
        failed.raise_for_code()

    assert not failed.ok
    assert caught.value.code == code
    assert (caught.value.tool, caught.value.session_id) == ("bash:run", "s-1")


def test_raise_for_code_names_the_field_of_a_parameter_error() -> None:
    failed = Envelope(envelope(1002, data={"field": "timeout"}, message="timeout must be > 0"))

    with pytest.raises(InvalidParams) as caught:
        failed.raise_for_code()

    assert caught.value.field == "timeout"


async def test_every_call_returns_an_envelope_even_for_an_error_status(
    server: FakeServer, client: HTTPServiceClient, call: Invoke
) -> None:
    server.replies.append(httpx.Response(504, json=envelope(2002, message="tool timed out")))

    failed = await call(client, "execute", "bash:run", {"command": "sleep 9"}, 1)
    done = await call(client, "health")

    assert isinstance(failed, Envelope)
    assert failed["code"] == 2002
    with pytest.raises(SandboxTimeout, match="tool timed out"):
        failed.raise_for_code()
    assert done.raise_for_code().data == {"path": "/health"}
