"""The connection half of `HTTPServiceClient`: sending, retrying, opening and closing.

`ServiceConnection` owns the two httpx clients (async and blocking), the only two
places a request is sent, the heartbeats and the client's lifecycle; the endpoint
methods live in `HTTPServiceClient`, which adds nothing but them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from types import TracebackType
from typing import TypeVar

import httpx

from sandbox.client._base import BaseServiceClient, ClientState, _Call
from sandbox.client._config import HTTPClientConfig, merged_client_config
from sandbox.client._envelope import Envelope
from sandbox.client._heartbeat import AsyncHeartbeat, ThreadHeartbeat
from sandbox.errors import SandboxError

logger = logging.getLogger("sandbox.client")

# Small requests go out at once instead of waiting on the server's delayed ACK.
_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]

_C = TypeVar("_C", bound="ServiceConnection")


class ServiceConnection(BaseServiceClient):
    """Sends the requests `BaseServiceClient` builds; see `HTTPServiceClient`.

    Args:
        base_url: Root URL of the server; default ``config.base_url``.
        worker_id: The worker calls are made for; default ``config.worker_id``.
        timeout: HTTP timeout in seconds; default ``config.timeout``.
        config: All the settings; an argument above, when given, wins over it.
        transport: Transport of the async client (tests: `httpx.MockTransport`).
        sync_transport: Transport of the sync client.
    """

    def __init__(
        self,
        base_url: str | None = None,
        worker_id: str | None = None,
        timeout: float | None = None,
        config: HTTPClientConfig | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sync_transport: httpx.BaseTransport | None = None,
    ) -> None:
        merged = merged_client_config(
            config, base_url=base_url, worker_id=worker_id, timeout=timeout
        )
        super().__init__(merged)
        self._transport = transport
        self._sync_transport = sync_transport
        self._async_http: httpx.AsyncClient | None = None
        self._sync_http: httpx.Client | None = None
        interval = merged.heartbeat_interval
        self._heartbeat_task = AsyncHeartbeat(self._beat, interval)
        self._heartbeat_thread = ThreadHeartbeat(self._beat_sync, interval)

    @property
    def worker_id(self) -> str:
        """The worker calls are made for unless they name another."""
        return self._config.worker_id or ""

    @property
    def base_url(self) -> str:
        """Root URL of the server."""
        return self._config.base_url

    # -- hooks for subclasses --------------------------------------------------

    async def _before_send(self) -> None:
        """Runs before every endpoint call; `Sandbox`'s client starts the sandbox here."""

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

    async def connect(self) -> None:
        """Check that the server answers; start heartbeats if ``config.auto_heartbeat``.

        Calls work without it (the connection opens on first use); entering
        ``async with`` calls it.

        Raises:
            SandboxConnectionError: No server answered.
            SandboxError: The server answered /health with an error.
            RuntimeError: The client is closed.
        """
        (await self._send(self._get("/health"))).raise_for_code()
        if self._config.auto_heartbeat:
            self._heartbeat_task.start()

    def connect_sync(self) -> None:
        """Blocking twin of `connect` (the heartbeats come from a daemon thread)."""
        self._send_sync(self._get("/health")).raise_for_code()
        if self._config.auto_heartbeat:
            self._heartbeat_thread.start()

    async def close(self, destroy_sessions: bool = False) -> None:
        """Stop the heartbeats and close the connections; later calls raise `RuntimeError`.

        Closing twice is harmless, and `close` may follow `close_sync` to close
        what the async methods opened.

        Args:
            destroy_sessions: First destroy all the worker's sessions
                (`destroy_all_sessions`); a failure there is logged, not raised.
        """
        await self._heartbeat_task.stop()
        if self._heartbeat_thread.running:
            await asyncio.to_thread(self._heartbeat_thread.stop, self._config.timeout)
        if destroy_sessions and self._state is ClientState.OPENED:
            try:
                self._log_failed_destroy(await self._send(self._disconnect_call()))
            except SandboxError as error:
                self._log_failed_destroy(error)
        self._state = ClientState.CLOSED
        sync_http, self._sync_http = self._sync_http, None
        async_http, self._async_http = self._async_http, None
        if sync_http is not None:
            sync_http.close()
        if async_http is not None:
            await async_http.aclose()

    def close_sync(self, destroy_sessions: bool = False) -> None:
        """Blocking twin of `close`.

        An async HTTP client cannot be closed without awaiting: if async methods
        were used, await `close` as well (it may follow).
        """
        self._heartbeat_task.cancel()
        self._heartbeat_thread.stop(self._config.timeout)
        if destroy_sessions and self._state is ClientState.OPENED:
            try:
                self._log_failed_destroy(self._send_sync(self._disconnect_call()))
            except SandboxError as error:
                self._log_failed_destroy(error)
        self._state = ClientState.CLOSED
        sync_http, self._sync_http = self._sync_http, None
        if sync_http is not None:
            sync_http.close()

    async def aclose(self) -> None:
        """The same as ``await close()`` (the name httpx uses)."""
        await self.close()

    def _disconnect_call(self) -> _Call:
        return self._worker_call("/api/v1/worker/disconnect", self._config.worker_id)

    def _heartbeat_call(self) -> _Call:
        return self._worker_call("/api/v1/lifecycle/heartbeat", self._config.worker_id)

    async def _beat(self) -> Envelope:
        return await self._send(self._heartbeat_call())

    def _beat_sync(self) -> Envelope:
        return self._send_sync(self._heartbeat_call())

    @staticmethod
    def _log_failed_destroy(outcome: Envelope | SandboxError) -> None:
        if isinstance(outcome, SandboxError) or not outcome.ok:
            logger.warning("destroying the worker's sessions on close failed: %s", outcome)

    async def __aenter__(self: _C) -> _C:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __enter__(self: _C) -> _C:
        self.connect_sync()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close_sync()

    # -- for Sandbox's local server start ------------------------------------

    async def _probe(self) -> Envelope:
        """GET /health once, with a short timeout and no retries (and no hook)."""
        return await self._transmit(self._probe_call())

    def _probe_sync(self) -> Envelope:
        """Blocking twin of `_probe`."""
        return self._transmit_sync(self._probe_call())
