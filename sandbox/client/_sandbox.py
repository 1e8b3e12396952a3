"""`Sandbox`: the user-facing facade over `HTTPServiceClient`."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from sandbox.client._base import ClientState, Envelope
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


class Sandbox:
    """One worker's handle on a sandbox server.

    Every method is async and has a blocking ``*_sync`` twin, and returns the
    server's envelope ``{"code", "message", "data", "meta"}`` (``code`` 0 is
    success; see `sandbox.errors.error_from_envelope` to raise the error an
    envelope describes).

    `start` checks that the server answers and, with ``auto_start_server``, starts
    one on this machine when none runs. Calling any other method first starts the
    sandbox implicitly. After `close` every method raises `RuntimeError`.

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
        self._worker_id = worker_id if worker_id is not None else f"worker-{uuid.uuid4().hex[:8]}"
        config = HTTPClientConfig(
            base_url=server_url,
            timeout=timeout,
            max_retries=max_retries,
            worker_id=self._worker_id,
            api_key=api_key,
        )
        self._client = HTTPServiceClient(config, transport=transport, sync_transport=sync_transport)
        self._auto_start = auto_start_server
        self._server_config = server_config
        self._state = ClientState.UNOPENED
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
        return self._client.config.base_url

    @property
    def client(self) -> HTTPServiceClient:
        """The underlying HTTP client."""
        return self._client

    @property
    def is_started(self) -> bool:
        """Whether `start` succeeded and `close` has not been called."""
        return self._state is ClientState.OPENED

    @property
    def server(self) -> LocalServer | None:
        """The server process this sandbox started, if it started one."""
        return self._server

    # -- start and close -----------------------------------------------------

    def _needs_start(self) -> bool:
        if self._state is ClientState.CLOSED:
            raise RuntimeError("Sandbox is closed; create a new Sandbox to make more calls")
        return self._state is ClientState.UNOPENED

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
                    await self._client.health()
                self._state = ClientState.OPENED
        return self

    async def _start_local_server(self) -> None:
        try:
            await self._client._probe()
        except SandboxConnectionError as error:
            server = self._spawn(error)
            try:
                owned = await server.wait_ready(self._client._probe)
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
                    self._client.health_sync()
                self._state = ClientState.OPENED
        return self

    def _start_local_server_sync(self) -> None:
        try:
            self._client._probe_sync()
        except SandboxConnectionError as error:
            server = self._spawn(error)
            try:
                owned = server.wait_ready_sync(self._client._probe_sync)
            except BaseException:
                server.kill()
                raise
            self._server = server if owned else None

    async def close(self) -> None:
        """Close the connection and stop the server `start` started, if any.

        A server that was already running is left alone. Sessions are not
        destroyed here: call `destroy_session` first, or let their TTL reap them.
        Closing twice is harmless.
        """
        if self._state is ClientState.CLOSED:
            return
        self._state = ClientState.CLOSED
        server, self._server = self._server, None
        try:
            await self._client.aclose()
        finally:
            if server is not None:
                await server.stop()

    def close_sync(self) -> None:
        """Blocking twin of `close`."""
        if self._state is ClientState.CLOSED:
            return
        self._state = ClientState.CLOSED
        server, self._server = self._server, None
        try:
            self._client.close()
        finally:
            if server is not None:
                server.stop_sync()

    async def __aenter__(self) -> Sandbox:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __enter__(self) -> Sandbox:
        return self.start_sync()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close_sync()

    async def _ready(self) -> HTTPServiceClient:
        if self._needs_start():
            await self.start()
        return self._client

    def _ready_sync(self) -> HTTPServiceClient:
        if self._needs_start():
            self.start_sync()
        return self._client

    # -- calls ---------------------------------------------------------------

    async def warmup(
        self,
        resources: str | Sequence[str] | None = None,
        wait: bool = False,
        pool_size: int | Mapping[str, int] | None = None,
    ) -> Envelope:
        """Build images, start shared services and fill warm pools of resource types.

        Args:
            resources: One resource type or several; ``None`` for all.
            wait: Answer only when warmup is done.
            pool_size: Ready containers to keep per resource type (a number for each
                named type, or ``{resource: number}``).

        Returns:
            The envelope.
        """
        client = await self._ready()
        return await client.warmup(resources, pool_size=pool_size, wait=wait)

    def warmup_sync(
        self,
        resources: str | Sequence[str] | None = None,
        wait: bool = False,
        pool_size: int | Mapping[str, int] | None = None,
    ) -> Envelope:
        """Blocking twin of `warmup`."""
        return self._ready_sync().warmup_sync(resources, pool_size=pool_size, wait=wait)

    async def get_warmup_status(self) -> Envelope:
        """Report warmup progress per resource type.

        Returns:
            The envelope.
        """
        return await (await self._ready()).get_warmup_status()

    def get_warmup_status_sync(self) -> Envelope:
        """Blocking twin of `get_warmup_status`."""
        return self._ready_sync().get_warmup_status_sync()

    async def create_session(
        self,
        resource_type: str,
        config: Mapping[str, Any] | None = None,
        custom_name: str | None = None,
    ) -> Envelope:
        """Open this worker's session of a resource type (or return the open one).

        Args:
            resource_type: ``"vm"``, ``"bash"``, ``"code"``, ``"rag"``, ...
            config: Session options, e.g. ``{"screen_size": [1280, 800]}``.
            custom_name: A readable name for the session.

        Returns:
            The envelope; ``data`` holds ``session_id`` and ``status``.
        """
        client = await self._ready()
        return await client.create_session(resource_type, config, custom_name=custom_name)

    def create_session_sync(
        self,
        resource_type: str,
        config: Mapping[str, Any] | None = None,
        custom_name: str | None = None,
    ) -> Envelope:
        """Blocking twin of `create_session`."""
        return self._ready_sync().create_session_sync(
            resource_type, config, custom_name=custom_name
        )

    async def destroy_session(self, resource_type: str | None = None) -> Envelope:
        """Destroy this worker's session of `resource_type`, or all of them.

        Args:
            resource_type: The session's resource type; ``None`` for every session.

        Returns:
            The envelope.
        """
        return await (await self._ready()).destroy_session(resource_type)

    def destroy_session_sync(self, resource_type: str | None = None) -> Envelope:
        """Blocking twin of `destroy_session`."""
        return self._ready_sync().destroy_session_sync(resource_type)

    async def list_sessions(self) -> Envelope:
        """List this worker's sessions.

        Returns:
            The envelope; ``data`` is ``{sessions, count}``.
        """
        return await (await self._ready()).list_sessions()

    def list_sessions_sync(self) -> Envelope:
        """Blocking twin of `list_sessions`."""
        return self._ready_sync().list_sessions_sync()

    async def refresh_sessions(self, resource_type: str | None = None) -> Envelope:
        """Push the expiry of this worker's session of `resource_type`, or of all.

        Args:
            resource_type: The session's resource type; ``None`` for every session.

        Returns:
            The envelope.
        """
        return await (await self._ready()).refresh_sessions(resource_type)

    def refresh_sessions_sync(self, resource_type: str | None = None) -> Envelope:
        """Blocking twin of `refresh_sessions`."""
        return self._ready_sync().refresh_sessions_sync(resource_type)

    async def execute(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Envelope:
        """Run one tool; the server opens the session if this worker has none.

        Args:
            action: Tool name, e.g. ``"vm:screenshot"`` or ``"bash:run"``.
            params: The tool's parameters.
            timeout: Seconds the tool may run; default: the server's default.

        Returns:
            The envelope; ``data`` holds the tool's result when ``code`` is 0.
        """
        return await (await self._ready()).execute(action, params, timeout=timeout)

    def execute_sync(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Envelope:
        """Blocking twin of `execute`."""
        return self._ready_sync().execute_sync(action, params, timeout=timeout)

    async def execute_batch(
        self,
        actions: Sequence[Mapping[str, Any]],
        parallel: bool = False,
        stop_on_error: bool = True,
    ) -> Envelope:
        """Run several tools in one request.

        Args:
            actions: Items ``{"action": ..., "params": {...}, "timeout": ...}``.
            parallel: Run the items at once instead of in order.
            stop_on_error: In order, stop at the first failing item.

        Returns:
            The envelope; ``data`` is ``{results, total, executed, success_count}``.
        """
        client = await self._ready()
        return await client.execute_batch(actions, parallel=parallel, stop_on_error=stop_on_error)

    def execute_batch_sync(
        self,
        actions: Sequence[Mapping[str, Any]],
        parallel: bool = False,
        stop_on_error: bool = True,
    ) -> Envelope:
        """Blocking twin of `execute_batch`."""
        return self._ready_sync().execute_batch_sync(
            actions, parallel=parallel, stop_on_error=stop_on_error
        )

    async def get_tools(self) -> Envelope:
        """List every tool with its description and parameters.

        Returns:
            The envelope.
        """
        return await (await self._ready()).get_tools()

    def get_tools_sync(self) -> Envelope:
        """Blocking twin of `get_tools`."""
        return self._ready_sync().get_tools_sync()

    async def get_status(self) -> Envelope:
        """Report this worker's state as the server sees it.

        Returns:
            The envelope.
        """
        return await (await self._ready()).get_status()

    def get_status_sync(self) -> Envelope:
        """Blocking twin of `get_status`."""
        return self._ready_sync().get_status_sync()

    async def heartbeat(self) -> Envelope:
        """Tell the server this worker is alive.

        Returns:
            The envelope.
        """
        return await (await self._ready()).heartbeat()

    def heartbeat_sync(self) -> Envelope:
        """Blocking twin of `heartbeat`."""
        return self._ready_sync().heartbeat_sync()

    async def shutdown_server(self) -> Envelope:
        """Stop the server gracefully (it destroys every session first).

        Returns:
            The envelope.
        """
        return await (await self._ready()).shutdown_server()

    def shutdown_server_sync(self) -> Envelope:
        """Blocking twin of `shutdown_server`."""
        return self._ready_sync().shutdown_server_sync()
