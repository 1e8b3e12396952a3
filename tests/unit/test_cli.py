"""The ``sandbox`` command: refusing an open bind without an API key."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.cli import main, refuse_open_bind
from sandbox.config import Settings


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "sandbox.example.com"])
def test_serving_beyond_loopback_without_a_key_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="--insecure") as refused:
        refuse_open_bind(Settings(server_id="x", host=host))
    assert "SANDBOX_API_KEY" in str(refused.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_key(host: str) -> None:
    refuse_open_bind(Settings(server_id="x", host=host))


@pytest.mark.parametrize(
    "overrides",
    [{"api_key": "k-123"}, {"api_keys": {"team": "k-456"}}, {"insecure": True}],
)
def test_a_key_or_an_explicit_insecure_allows_an_open_bind(overrides: dict[str, Any]) -> None:
    refuse_open_bind(Settings(server_id="x", host="0.0.0.0", **overrides))


def test_serve_exits_with_the_reason_before_listening(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SANDBOX_API_KEY", raising=False)
    monkeypatch.delenv("SANDBOX_INSECURE", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 1
    assert "--insecure" in capsys.readouterr().err
