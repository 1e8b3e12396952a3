"""`Sandbox`: the HTTP client plus a lazy start of the server it talks to."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from pathlib import Path

import httpx

from sandbox.client._base import ClientState
from sandbox.client._config import HTTPClientConfig
from sandbox.client._http import HTTPServiceClient
from sandbox.client._local_server import (
    LOCAL_HOSTS,
    LocalServer,
    connection_refused,
    is_local_url,
    serve_command,
)
from sandbox.errors import SandboxConnectionError

logger = logging.getLogger("sandbox.client")


class Sandbox(HTTPServiceClient):
    """One worker's handle on a sandbox server.

    `Sandbox` is an `HTTPServiceClient` (every endpoint, async with a blocking
    ``*_sync`` twin, each returning the server's `Envelope`) that starts itself
    before its first request: `start` checks that the server answers and, with
    ``auto_start_server``, starts one on this machine when none runs. Concurrent
    first calls start it once. After `close` every method raises `RuntimeError`.

    Unlike `HTTPServiceClient`, whose ``close`` is blocking and ``aclose`` async,
    `close` here is async (it may have to stop a server) with `close_sync` as its
    blocking twin, and ``aclose`` is the same as `close`.

    Example:
        >>> async with Sandbox(auto_start_server=True) as sb:
        ...     await sb.create_session("bash")
        ...     result = await sb.execute("bash:run", {"command": "echo hi"})

        >>> with Sandbox() as sb:
        ...     result = sb.execute_sync("bash:run", {"command": "echo hi"})

    Args:
        server_url: Root URL of the server.
        worker_id: This worker's id; default ``worker-<8 hex digits>``.
        auto_start_server: When nothing listens at a 127.0.0.1/localhost URL,
            start ``python -m sandbox serve`` there, and stop it in `close`.
        timeout: HTTP timeout in seconds (tool calls wait at least their own
            timeout plus 15 s).
        max_retries: Retries after transport failures.
        api_key: Sent as ``Authorization: Bearer <key>``; never shown.
        server_config: Profile file for a server started here (``--config``).
        transport: Async transport for tests (`httpx.MockTransport`, ...).
        sync_transport: Sync transport for tests.
    """

    def __init__(
        self,
        server_url: str = "http://127.0.0.1:18890",
        worker_id: str | None = None,
        *,
        auto_start_server: bool = False,
        timeout: float = 60.0,
        max_retries: int = 3,
        api_key: str | None = None,
        server_config: str | Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sync_transport: httpx.BaseTransport | None = None,
    ) -> None:
        worker = worker_id if worker_id is not None else f"worker-{uuid.uuid4().hex[:8]}"
        config = HTTPClientConfig(
            base_url=server_url,
            timeout=timeout,
            max_retries=max_retries,
            worker_id=worker,
            api_key=api_key,
        )
        super().__init__(config, transport=transport, sync_transport=sync_transport)
        self._worker_id = worker
        self._auto_start = auto_start_server
        self._server_config = server_config
        # The client state turns OPENED at the first request, the probe of `start`
        # included; started means that probe succeeded.
        self._started = False
        self._server: LocalServer | None = None
        self._async_start_lock = asyncio.Lock()
        self._sync_start_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Sandbox(server_url={self.server_url!r}, worker_id={self._worker_id!r}, "
            f"state={self._state.value!r})"
        )

    @property
    def worker_id(self) -> str:
        """The worker id sent with every call."""
        return self._worker_id

    @property
    def server_url(self) -> str:
        """Root URL of the server."""
        return self._config.base_url

    @property
    def client(self) -> Sandbox:
        """This sandbox itself, which is the HTTP client (kept for older callers).

        Typed as `Sandbox` so a type checker sees that its `close` is async.
        """
        return self

    @property
    def is_started(self) -> bool:
        """Whether `start` succeeded and `close` has not been called."""
        return self._started and self._state is not ClientState.CLOSED

    @property
    def server(self) -> LocalServer | None:
        """The server process this sandbox started, if it started one."""
        return self._server

    # -- the hook: start before the first request -----------------------------

    async def _before_send(self) -> None:
        if not self._started:  # after close, `start` raises the RuntimeError
            await self.start()

    def _before_send_sync(self) -> None:
        if not self._started:
            self.start_sync()

    # -- start ---------------------------------------------------------------

    def _needs_start(self) -> bool:
        self._refuse_if_closed()
        return not self._started

    def _spawns_locally(self) -> bool:
        if self._auto_start and not is_local_url(self.server_url):
            logger.warning(
                "auto_start_server only starts a server at %s; %s is used as it is",
                "/".join(sorted(LOCAL_HOSTS)),
                self.server_url,
            )
        return self._auto_start and is_local_url(self.server_url)

    def _spawn(self, probe_error: SandboxConnectionError) -> LocalServer:
        if not connection_refused(probe_error):
            raise probe_error  # something answers there, but not a sandbox server
        return LocalServer.spawn(serve_command(self.server_url, self._server_config))

    async def start(self) -> Sandbox:
        """Make sure the server answers, starting one here if asked to.

        Returns:
            This sandbox, for ``sb = await Sandbox().start()``.

        Raises:
            SandboxConnectionError: The server does not answer (or, when started
                here, did not come up; the message holds its last log lines).
            RuntimeError: The sandbox is closed.
        """
        async with self._async_start_lock:
            if self._needs_start():
                if self._spawns_locally():
                    await self._start_local_server()
                else:
                    # `_transmit`, not `_send`: the hook would start us again.
                    await self._transmit(self._get("/health"))
                self._started = True
        return self

    async def _start_local_server(self) -> None:
        try:
            await self._probe()
        except SandboxConnectionError as error:
            server = self._spawn(error)
            try:
                owned = await server.wait_ready(self._probe)
            except BaseException:
                server.kill()
                raise
            self._server = server if owned else None

    def start_sync(self) -> Sandbox:
        """Blocking twin of `start`."""
        with self._sync_start_lock:
            if self._needs_start():
                if self._spawns_locally():
                    self._start_local_server_sync()
                else:
                    self._transmit_sync(self._get("/health"))
                self._started = True
        return self

    def _start_local_server_sync(self) -> None:
        try:
            self._probe_sync()
        except SandboxConnectionError as error:
            server = self._spawn(error)
            try:
                owned = server.wait_ready_sync(self._probe_sync)
            except BaseException:
                server.kill()
                raise
            self._server = server if owned else None

    # -- close: async here, unlike HTTPServiceClient.close --------------------

    # Sandbox's product API has always had an async `close` and a `close_sync`
    # twin, while HTTPServiceClient's `close` is blocking; each keeps its contract.
    async def close(self) -> None:  # type: ignore[override]
        """Close the connection and stop the server `start` started, if any.

        A server that was already running is left alone. Sessions are not
        destroyed here: call `destroy_session` first, or let their TTL reap them.
        Closing twice is harmless.
        """
        if self._state is ClientState.CLOSED:
            return
        server, self._server = self._server, None
        try:
            await super().aclose()
        finally:
            if server is not None:
                await server.stop()

    def close_sync(self) -> None:
        """Blocking twin of `close`."""
        if self._state is ClientState.CLOSED:
            return
        server, self._server = self._server, None
        try:
            super().close()
        finally:
            if server is not None:
                server.stop_sync()

    async def aclose(self) -> None:
        """The same as `close` (the name `HTTPServiceClient` uses)."""
        await self.close()

    # `__aexit__` is inherited: it calls `aclose`, which here is `close`.
    async def __aenter__(self) -> Sandbox:
        return await self.start()

    def __enter__(self) -> Sandbox:
        return self.start_sync()

    def __exit__(self, *exc_info: object) -> None:
        self.close_sync()  # not the inherited blocking `close`, which is async here
