"""`HTTPServiceClient`: the wire protocol as async methods and their ``*_sync`` twins."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from sandbox.client._base import NOT_GIVEN, BaseServiceClient, ClientState, NotGiven, _Call
from sandbox.client._config import HTTPClientConfig
from sandbox.client._envelope import Envelope

# Small requests go out at once instead of waiting on the server's delayed ACK.
_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


class HTTPServiceClient(BaseServiceClient):
    """Client of the sandbox server's HTTP API.

    Every method returns the server's `Envelope` (a `dict` ``{"code", "message",
    "data", "meta"}``) for any response that carries one, error statuses included:
    check ``envelope["code"]`` (0 is success) or call ``envelope.raise_for_code()``
    to raise the error it describes. A method raises only when no envelope came
    back at all.

    A new endpoint is a request builder in `BaseServiceClient` plus its two
    methods here; `Sandbox` inherits both, with its lazy start in front.

    Async methods use an `httpx.AsyncClient`, their ``*_sync`` twins an
    `httpx.Client`; each is created on first use and shares the settings, so one
    instance may serve both styles. Transport failures (refused connection, read
    timeout, dropped connection) are retried up to ``config.max_retries`` times with
    exponential backoff, always with the call's one ``X-Request-ID`` so the server
    never runs a tool twice; HTTP error statuses are never retried.

    ``worker_id`` arguments (keyword-only) name the calling worker and default to
    ``config.worker_id``; pass ``None`` to send no worker at all (`list_sessions`
    then lists every worker's sessions).

    Example:
        >>> async with HTTPServiceClient(HTTPClientConfig(worker_id="w1")) as client:
        ...     result = await client.execute("bash:run", {"command": "ls"})

    Args:
        config: Where the server is and how to reach it; defaults to
            `HTTPClientConfig()`.
        transport: Transport of the async client (e.g. `httpx.ASGITransport` or
            `httpx.MockTransport` in tests); default: real sockets.
        sync_transport: Transport of the sync client; default: real sockets.
    """

    def __init__(
        self,
        config: HTTPClientConfig | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sync_transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(config)
        self._transport = transport
        self._sync_transport = sync_transport
        self._async_http: httpx.AsyncClient | None = None
        self._sync_http: httpx.Client | None = None

    # -- hooks for subclasses --------------------------------------------------

    async def _before_send(self) -> None:
        """Runs before every endpoint call; `Sandbox` starts itself here."""

    def _before_send_sync(self) -> None:
        """Blocking twin of `_before_send`."""

    # -- I/O: the only two places requests are sent ---------------------------

    def _async_client(self) -> httpx.AsyncClient:
        self._open()
        if self._async_http is None:
            self._async_http = httpx.AsyncClient(
                base_url=self._config.base_url,
                timeout=self._timeout(),
                transport=self._transport or httpx.AsyncHTTPTransport(socket_options=_NODELAY),
            )
        return self._async_http

    def _sync_client(self) -> httpx.Client:
        self._open()
        if self._sync_http is None:
            self._sync_http = httpx.Client(
                base_url=self._config.base_url,
                timeout=self._timeout(),
                transport=self._sync_transport or httpx.HTTPTransport(socket_options=_NODELAY),
            )
        return self._sync_http

    async def _send(self, call: _Call) -> Envelope:
        await self._before_send()
        return await self._transmit(call)

    def _send_sync(self, call: _Call) -> Envelope:
        self._before_send_sync()
        return self._transmit_sync(call)

    async def _transmit(self, call: _Call) -> Envelope:
        """Send `call`, retrying transport failures; no hook runs first."""
        http = self._async_client()
        request_id = self._new_request_id()
        attempt = 0
        while True:
            try:
                response = await http.request(
                    call.method,
                    call.path,
                    json=call.body,
                    headers=self._headers(call, request_id),
                    timeout=call.timeout,
                )
            except httpx.HTTPError as error:
                await asyncio.sleep(self._retry_delay(call, error, attempt))
                attempt += 1
            else:
                return self._read_envelope(call, response)

    def _transmit_sync(self, call: _Call) -> Envelope:
        """Blocking twin of `_transmit`."""
        http = self._sync_client()
        request_id = self._new_request_id()
        attempt = 0
        while True:
            try:
                response = http.request(
                    call.method,
                    call.path,
                    json=call.body,
                    headers=self._headers(call, request_id),
                    timeout=call.timeout,
                )
            except httpx.HTTPError as error:
                time.sleep(self._retry_delay(call, error, attempt))
                attempt += 1
            else:
                return self._read_envelope(call, response)

    # -- lifecycle -----------------------------------------------------------

    async def aclose(self) -> None:
        """Close both underlying HTTP clients; later calls raise `RuntimeError`."""
        self._state = ClientState.CLOSED
        sync_http, self._sync_http = self._sync_http, None
        async_http, self._async_http = self._async_http, None
        if sync_http is not None:
            sync_http.close()
        if async_http is not None:
            await async_http.aclose()

    def close(self) -> None:
        """Close the sync HTTP client; later calls raise `RuntimeError`.

        An async client cannot be closed without awaiting: if async methods were
        used, call `aclose` (it may follow `close`).
        """
        self._state = ClientState.CLOSED
        sync_http, self._sync_http = self._sync_http, None
        if sync_http is not None:
            sync_http.close()

    async def __aenter__(self) -> HTTPServiceClient:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> HTTPServiceClient:
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- tools ---------------------------------------------------------------

    async def execute(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Run one tool in the worker's session of the tool's resource type.

        The server creates the session if the worker has none.

        Args:
            action: Tool name, e.g. ``"bash:run"`` or ``"vm:screenshot"``.
            params: The tool's parameters.
            timeout: Seconds the tool may run; default: the server's default. The
                HTTP read timeout is raised to at least this plus 15 s.
            worker_id: The calling worker; default ``config.worker_id``.

        Returns:
            The envelope; ``data`` holds the tool's result when ``code`` is 0.

        Raises:
            SandboxConnectionError: No envelope came back.
            RuntimeError: The client is closed.
        """
        return await self._send(self._execute_call(action, params, worker_id, timeout))

    def execute_sync(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Blocking twin of `execute`."""
        return self._send_sync(self._execute_call(action, params, worker_id, timeout))

    async def execute_batch(
        self,
        actions: Sequence[Mapping[str, Any]],
        parallel: bool = False,
        stop_on_error: bool = True,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Run several tools in one request.

        Args:
            actions: Items ``{"action": ..., "params": {...}, "timeout": ...}``;
                ``params`` and ``timeout`` may be left out.
            parallel: Run the items at once instead of in order.
            stop_on_error: In order, stop at the first failing item.
            worker_id: The calling worker; default ``config.worker_id``.

        Returns:
            The envelope; ``data`` is ``{results, total, executed, success_count}``
            with one envelope per executed item.

        Raises:
            SandboxConnectionError: No envelope came back.
            RuntimeError: The client is closed.
        """
        return await self._send(self._batch_call(actions, parallel, stop_on_error, worker_id))

    def execute_batch_sync(
        self,
        actions: Sequence[Mapping[str, Any]],
        parallel: bool = False,
        stop_on_error: bool = True,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Blocking twin of `execute_batch`."""
        return self._send_sync(self._batch_call(actions, parallel, stop_on_error, worker_id))

    async def get_tools(self) -> Envelope:
        """List every tool with its description and JSON-schema parameters (GET /tools)."""
        return await self._send(self._get("/tools"))

    def get_tools_sync(self) -> Envelope:
        """Blocking twin of `get_tools`."""
        return self._send_sync(self._get("/tools"))

    # -- sessions ------------------------------------------------------------

    async def create_session(
        self,
        resource_type: str,
        config: Mapping[str, Any] | None = None,
        custom_name: str | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Open the worker's session of a resource type, or return the existing one.

        Args:
            resource_type: ``"vm"``, ``"bash"``, ``"code"``, ``"rag"``, ...
            config: Session options (``screen_size``, ``memory``, ``network``, ...).
            custom_name: A readable name for the session.
            worker_id: The calling worker; default ``config.worker_id``.

        Returns:
            The envelope; ``data`` holds ``session_id``, ``session_name`` and a
            ``status`` that is ``"exists"`` when the session was already open.

        Raises:
            SandboxConnectionError: No envelope came back.
            RuntimeError: The client is closed.
        """
        call = self._create_session_call(resource_type, config, custom_name, worker_id)
        return await self._send(call)

    def create_session_sync(
        self,
        resource_type: str,
        config: Mapping[str, Any] | None = None,
        custom_name: str | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Blocking twin of `create_session`."""
        call = self._create_session_call(resource_type, config, custom_name, worker_id)
        return self._send_sync(call)

    async def destroy_session(
        self,
        resource_type: str | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Destroy the worker's session of `resource_type`, or all of them when ``None``.

        Args:
            resource_type: The session's resource type; ``None`` for every session.
            worker_id: The calling worker; default ``config.worker_id``.
        """
        return await self._send(self._session_call("/session/destroy", resource_type, worker_id))

    def destroy_session_sync(
        self,
        resource_type: str | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Blocking twin of `destroy_session`."""
        return self._send_sync(self._session_call("/session/destroy", resource_type, worker_id))

    async def list_sessions(self, *, worker_id: str | NotGiven | None = NOT_GIVEN) -> Envelope:
        """List the worker's sessions (every worker's when `worker_id` is ``None``).

        Args:
            worker_id: The worker; default ``config.worker_id``.

        Returns:
            The envelope; ``data`` is ``{sessions, count}``.
        """
        return await self._send(self._worker_call("/session/list", worker_id))

    def list_sessions_sync(self, *, worker_id: str | NotGiven | None = NOT_GIVEN) -> Envelope:
        """Blocking twin of `list_sessions`."""
        return self._send_sync(self._worker_call("/session/list", worker_id))

    async def refresh_sessions(
        self,
        resource_type: str | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Push the expiry of the worker's session of `resource_type` (all when ``None``).

        Args:
            resource_type: The session's resource type; ``None`` for every session.
            worker_id: The calling worker; default ``config.worker_id``.

        Returns:
            The envelope; ``data`` holds the new ``expires_at``.
        """
        return await self._send(self._session_call("/session/refresh", resource_type, worker_id))

    def refresh_sessions_sync(
        self,
        resource_type: str | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Blocking twin of `refresh_sessions`."""
        return self._send_sync(self._session_call("/session/refresh", resource_type, worker_id))

    # -- server --------------------------------------------------------------

    async def health(self) -> Envelope:
        """Ask whether the server and Docker are up (GET /health).

        Returns:
            The envelope; ``data`` is ``{status, docker, version, uptime_s}``.
        """
        return await self._send(self._get("/health"))

    def health_sync(self) -> Envelope:
        """Blocking twin of `health`."""
        return self._send_sync(self._get("/health"))

    async def warmup(
        self,
        resources: str | Sequence[str] | None = None,
        wait: bool = False,
        pool_size: int | Mapping[str, int] | None = None,
    ) -> Envelope:
        """Build the images of resource types, start shared services, fill warm pools.

        Args:
            resources: Resource types to warm (one name or several); ``None`` for all.
            wait: Answer only when warmup is done rather than at once.
            pool_size: Ready containers to keep: one number for every named type that
                has pools, or ``{resource: number}``.

        Returns:
            The envelope; ``data.resources`` is the warmup status.
        """
        return await self._send(self._warmup_call(resources, pool_size, wait))

    def warmup_sync(
        self,
        resources: str | Sequence[str] | None = None,
        wait: bool = False,
        pool_size: int | Mapping[str, int] | None = None,
    ) -> Envelope:
        """Blocking twin of `warmup`."""
        return self._send_sync(self._warmup_call(resources, pool_size, wait))

    async def get_warmup_status(self) -> Envelope:
        """Report per resource type: image ready, pool size and target, errors."""
        return await self._send(self._get("/warmup/status"))

    def get_warmup_status_sync(self) -> Envelope:
        """Blocking twin of `get_warmup_status`."""
        return self._send_sync(self._get("/warmup/status"))

    async def get_status(self, *, worker_id: str | NotGiven | None = NOT_GIVEN) -> Envelope:
        """Report the worker's state as the server sees it."""
        return await self._send(self._worker_call("/api/v1/lifecycle/status", worker_id))

    def get_status_sync(self, *, worker_id: str | NotGiven | None = NOT_GIVEN) -> Envelope:
        """Blocking twin of `get_status`."""
        return self._send_sync(self._worker_call("/api/v1/lifecycle/status", worker_id))

    async def heartbeat(self, *, worker_id: str | NotGiven | None = NOT_GIVEN) -> Envelope:
        """Tell the server the worker is alive, pushing its sessions' expiry."""
        return await self._send(self._worker_call("/api/v1/lifecycle/heartbeat", worker_id))

    def heartbeat_sync(self, *, worker_id: str | NotGiven | None = NOT_GIVEN) -> Envelope:
        """Blocking twin of `heartbeat`."""
        return self._send_sync(self._worker_call("/api/v1/lifecycle/heartbeat", worker_id))

    async def disconnect(self, *, worker_id: str | NotGiven | None = NOT_GIVEN) -> Envelope:
        """Tell the server the worker is leaving, so its sessions can go."""
        return await self._send(self._worker_call("/api/v1/worker/disconnect", worker_id))

    def disconnect_sync(self, *, worker_id: str | NotGiven | None = NOT_GIVEN) -> Envelope:
        """Blocking twin of `disconnect`."""
        return self._send_sync(self._worker_call("/api/v1/worker/disconnect", worker_id))

    async def shutdown_server(self) -> Envelope:
        """Stop the server gracefully: it destroys sessions and drains pools first."""
        return await self._send(self._shutdown_call())

    def shutdown_server_sync(self) -> Envelope:
        """Blocking twin of `shutdown_server`."""
        return self._send_sync(self._shutdown_call())

    # -- for Sandbox's local server start ------------------------------------

    async def _probe(self) -> Envelope:
        """GET /health once, with a short timeout and no retries (and no hook)."""
        return await self._transmit(self._probe_call())

    def _probe_sync(self) -> Envelope:
        """Blocking twin of `_probe`."""
        return self._transmit_sync(self._probe_call())
