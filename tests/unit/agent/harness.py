"""An agent served in-process on 127.0.0.1, and a client that calls its tools over HTTP."""

from __future__ import annotations

import http.client
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sandbox.agent import AgentServer

TOKEN_ENV = "SANDBOX_AGENT_TOKEN"


@dataclass
class Reply:
    """One answer: its HTTP status and decoded JSON body."""

    status: int
    body: dict[str, Any]

    @property
    def data(self) -> dict[str, Any]:
        """The success payload (fails the test on an error answer)."""
        assert self.body["ok"] is True, self.body
        data: dict[str, Any] = self.body["data"]
        return data

    @property
    def error(self) -> dict[str, Any]:
        """The error object (fails the test on a success answer)."""
        assert self.body["ok"] is False, self.body
        error: dict[str, Any] = self.body["error"]
        return error


class AgentClient:
    """Calls one agent over one kept-alive connection, as the server does."""

    def __init__(self, url: str, token: str) -> None:
        parsed = urlsplit(url)
        assert parsed.hostname is not None
        assert parsed.port is not None
        self.connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        self.token = token

    def post(self, path: str, body: bytes, token: str | None = None) -> Reply:
        """POST raw `body` to `path`, with this client's token unless `token` is given."""
        headers = {
            "Authorization": f"Bearer {self.token if token is None else token}",
            "Content-Type": "application/json",
        }
        self.connection.request("POST", path, body=body, headers=headers)
        response = self.connection.getresponse()
        return Reply(response.status, json.loads(response.read()))

    def call(self, tool: str, **params: Any) -> Reply:
        return self.post(f"/call/{tool}", json.dumps(params).encode())

    def run(self, command: str, timeout: float = 10, **params: Any) -> Reply:
        return self.call("bash.run", command=command, timeout=timeout, **params)

    def close(self) -> None:
        self.connection.close()


@dataclass
class Agent:
    """A running agent, its token and home, and a client for it."""

    server: AgentServer
    token: str
    home: Path
    client: AgentClient

    @property
    def url(self) -> str:
        return self.server.url


def start_agent(home: Path, **options: Any) -> Agent:
    """An agent whose environment holds its own token, as in a container."""
    token = secrets.token_hex(16)
    environ = {**os.environ, TOKEN_ENV: token, "SBX_TEST_INHERITED": "inherited"}
    server = AgentServer("127.0.0.1", 0, token=token, home=str(home), environ=environ, **options)
    server.start()
    return Agent(server, token, home, AgentClient(server.url, token))
