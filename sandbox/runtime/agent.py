"""HTTP client of the in-container agents.

An agent answers at ``http://host:port`` (containers with network) or at
``unix:///path/agent.sock`` (containers without). One `httpx.AsyncClient` serves
every TCP agent, keeping connections alive per address with TCP_NODELAY set
(without it each small response would wait ~40 ms for a delayed ACK); each Unix
socket gets a client of its own, dropped with `forget`. The agent's error kinds
become this package's errors here.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx

from ..errors import BackendError, InvalidParams, SandboxError, SandboxTimeout

# The agent enforces a call's timeout itself and answers with partial output;
# the HTTP timeout only catches an agent that stopped answering altogether.
_HTTP_GRACE_S = 10.0
_UNIX = "unix://"


class AgentUnreachable(BackendError):
    """The agent did not answer: its container may have died."""


class AgentNotReady(BackendError):
    """The agent cannot answer yet (an index still being built); later it will."""


class AgentClient:
    """Calls tools on agents and waits for new agents to come up.

    Args:
        max_connections: Most open connections across all agents.
        transport: Replaces the network transport (tests).
    """

    def __init__(
        self,
        *,
        max_connections: int = 1024,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=60,
        )
        self._unix: dict[str, httpx.AsyncClient] = {}
        self._http = httpx.AsyncClient(
            transport=transport
            or httpx.AsyncHTTPTransport(
                limits=limits,
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            ),
            timeout=httpx.Timeout(30.0, connect=5.0),
        )

    async def aclose(self) -> None:
        """Close every pooled connection."""
        unix, self._unix = list(self._unix.values()), {}
        for client in unix:
            await client.aclose()
        await self._http.aclose()

    async def forget(self, url: str) -> None:
        """Close the connections to an agent that is gone (Unix sockets only)."""
        client = self._unix.pop(url.removeprefix(_UNIX), None)
        if client is not None:
            await client.aclose()

    def _route(self, url: str) -> tuple[httpx.AsyncClient, str]:
        """The client reaching `url` and the base URL to use with it."""
        if not url.startswith(_UNIX):
            return self._http, url
        path = url.removeprefix(_UNIX)
        client = self._unix.get(path)
        if client is None:
            client = httpx.AsyncClient(
                # No TLS on a Unix socket: skip loading a certificate store per agent.
                transport=httpx.AsyncHTTPTransport(uds=path, verify=False),
                timeout=httpx.Timeout(30.0, connect=5.0),
            )
            self._unix[path] = client
        return client, "http://agent"

    async def call(
        self, url: str, token: str, tool: str, params: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Run `tool` on the agent at `url` and return its `data`.

        Raises:
            InvalidParams: The agent rejected a parameter (field is ``params.<name>``).
            SandboxTimeout: The call ran past `timeout`; partial output is in `data`.
            AgentUnreachable: No answer at all (connection refused or reset).
            BackendError: The agent failed or refused the token.
        """
        http, base = self._route(url)
        try:
            response = await http.post(
                f"{base}/call/{tool}",
                json=params,
                headers={"Authorization": f"Bearer {token}"},
                timeout=httpx.Timeout(timeout + _HTTP_GRACE_S, connect=5.0),
            )
        except httpx.TimeoutException as exc:
            raise SandboxTimeout(f"the agent did not answer within {timeout:g}s") from exc
        except httpx.TransportError as exc:
            raise AgentUnreachable(f"the sandbox agent is unreachable ({exc!r})") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise BackendError(
                f"the agent sent a malformed reply (HTTP {response.status_code})"
            ) from exc
        if body.get("ok"):
            return dict(body.get("data") or {})
        raise _agent_error(body.get("error") or {}, tool)

    async def is_ready(self, url: str) -> bool:
        """Whether the agent at `url` answers its health check."""
        http, base = self._route(url)
        try:
            response = await http.get(f"{base}/health", timeout=2.0)
        except httpx.TransportError:
            return False
        return response.status_code == 200


def _agent_error(error: dict[str, Any], tool: str) -> SandboxError:
    kind = error.get("kind")
    message = str(error.get("message") or "the agent reported an error")
    data = error.get("data") if isinstance(error.get("data"), dict) else None
    if kind == "invalid_params":
        field = error.get("field")
        return InvalidParams(message, field=f"params.{field}" if field else "params", data=data)
    if kind == "timeout":
        return SandboxTimeout(message, data=data)
    if kind == "not_found":
        return BackendError(
            f"the container's agent has no tool {tool!r}: its image is older than the "
            "server; rebuild it with `sandbox images build`",
            data=data,
        )
    if kind == "unavailable":  # e.g. an index still being built: the message says how far
        return AgentNotReady(message, data=data)
    if kind == "unauthorized":
        return BackendError("the container's agent refused this session's token", data=data)
    return BackendError(f"the tool failed inside the container: {message}", data=data)
