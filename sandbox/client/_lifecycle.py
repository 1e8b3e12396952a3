"""The lifecycle half of `Sandbox`: settings, its HTTP client, start and close.

`SandboxLifecycle` starts the sandbox before its first request (checking the
server, starting a local one if asked to, warming resources) and closes it;
`Sandbox` adds AgentFlow's methods on top.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import httpx

from sandbox.client._config import SandboxConfig
from sandbox.client._envelope import Envelope
from sandbox.client._http import HTTPServiceClient
from sandbox.client._local_server import (
    LOCAL_HOSTS,
    LocalServer,
    connection_refused,
    is_local_url,
    serve_command,
)
from sandbox.errors import SandboxConnectionError, SandboxError

logger = logging.getLogger("sandbox.client")

_S = TypeVar("_S", bound="SandboxLifecycle")


class _SandboxClient(HTTPServiceClient):
    """The HTTP client of a `Sandbox`: it starts the sandbox before its first request,
    so ``sandbox.client.<endpoint>()`` works as the sandbox's own methods do."""

    def __init__(
        self,
        sandbox: SandboxLifecycle,
        settings: SandboxConfig,
        transport: httpx.AsyncBaseTransport | None,
        sync_transport: httpx.BaseTransport | None,
    ) -> None:
        super().__init__(
            config=settings.client_config(), transport=transport, sync_transport=sync_transport
        )
        self._sandbox = sandbox

    async def _before_send(self) -> None:
        if not self._sandbox.is_started:  # after close, `start` raises the RuntimeError
            await self._sandbox.start()

    def _before_send_sync(self) -> None:
        if not self._sandbox.is_started:
            self._sandbox.start_sync()

    # What `start` sends itself, so without the hook that would start it again.

    async def reach(self) -> Envelope:
        return await self._transmit(self._get("/health"))

    def reach_sync(self) -> Envelope:
        return self._transmit_sync(self._get("/health"))

    async def probe(self) -> Envelope:
        return await self._probe()

    def probe_sync(self) -> Envelope:
        return self._probe_sync()

    async def warm(self, resources: Sequence[str]) -> Envelope:
        return await self._transmit(self._warmup_call(resources, None, True))

    def warm_sync(self, resources: Sequence[str]) -> Envelope:
        return self._transmit_sync(self._warmup_call(resources, None, True))


def _report_warmup(resources: Sequence[str], outcome: Envelope | SandboxError) -> None:
    # As in AgentFlow, `start` goes on after a failed warmup: the sessions that
    # need the resource report the problem when they are created.
    if isinstance(outcome, SandboxError) or not outcome.ok:
        logger.warning("warmup of %s failed: %s", ", ".join(resources), outcome)
    else:
        logger.info("warmed up %s", ", ".join(resources))


class SandboxLifecycle:
    """Settings, HTTP client, start and close of a `Sandbox` (see there for the arguments)."""

    def __init__(
        self,
        server_url: str | None = None,
        worker_id: str | None = None,
        config: SandboxConfig | None = None,
        warmup_resources: Sequence[str] | None = None,
        *,
        auto_start_server: bool | None = None,
        server_config_path: str | Path | None = None,
        server_startup_timeout: float | None = None,
        server_check_interval: float | None = None,
        timeout: float | None = None,
        retry_count: int | None = None,
        log_level: str | None = None,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sync_transport: httpx.BaseTransport | None = None,
    ) -> None:
        given = {
            "server_url": server_url,
            "worker_id": worker_id,
            "warmup_resources": None if warmup_resources is None else list(warmup_resources),
            "auto_start_server": auto_start_server,
            "server_config_path": server_config_path,
            "server_startup_timeout": server_startup_timeout,
            "server_check_interval": server_check_interval,
            "timeout": timeout,
            "retry_count": retry_count,
            "log_level": log_level,
            "api_key": api_key,
        }
        base = config.model_dump() if config is not None else {}
        self._settings = SandboxConfig.model_validate(
            {**base, **{key: value for key, value in given.items() if value is not None}}
        )
        if self._settings.log_level is not None:
            logger.setLevel(self._settings.log_level)
        self._http = _SandboxClient(self, self._settings, transport, sync_transport)
        self._started = False
        self._closed = False
        self._server: LocalServer | None = None
        self._async_start_lock = asyncio.Lock()
        self._sync_start_lock = threading.Lock()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "started" if self._started else "unstarted"
        return (
            f"Sandbox(server_url={self.server_url!r}, worker_id={self.worker_id!r}, "
            f"state={state!r})"
        )

    @property
    def worker_id(self) -> str:
        """The worker id sent with every call."""
        return self._settings.worker_id or ""

    @property
    def server_url(self) -> str:
        """Root URL of the server."""
        return self._settings.server_url

    @property
    def config(self) -> SandboxConfig:
        """The settings this sandbox was made with."""
        return self._settings

    @property
    def client(self) -> HTTPServiceClient:
        """The HTTP client underneath: every endpoint, each returning an `Envelope`.

        Its calls start the sandbox first, as the sandbox's own do.
        """
        return self._http

    @property
    def is_started(self) -> bool:
        """Whether `start` succeeded and `close` has not been called."""
        return self._started and not self._closed

    @property
    def is_connected(self) -> bool:
        """AgentFlow's name for `is_started`."""
        return self.is_started

    @property
    def server(self) -> LocalServer | None:
        """The server process this sandbox started, if it started one."""
        return self._server

    def get_server_log(self, tail_lines: int = 100) -> str | None:
        """The last lines of the output of the server `start` started, if any."""
        return None if self._server is None else self._server.log_tail(tail_lines)

    # -- start ---------------------------------------------------------------

    def _needs_start(self) -> bool:
        if self._closed:
            raise RuntimeError("Sandbox is closed: it cannot send more requests; create a new one")
        return not self._started

    def _spawns_locally(self) -> bool:
        auto = self._settings.auto_start_server
        if auto and not is_local_url(self.server_url):
            logger.warning(
                "auto_start_server only starts a server at %s; %s is used as it is",
                "/".join(sorted(LOCAL_HOSTS)),
                self.server_url,
            )
        return auto and is_local_url(self.server_url)

    def _spawn(self, probe_error: SandboxConnectionError) -> LocalServer:
        if not connection_refused(probe_error):
            raise probe_error  # something answers there, but not a sandbox server
        command = serve_command(self.server_url, self._settings.server_config_path)
        return LocalServer.spawn(command)

    def _warmup_list(self, override: Sequence[str] | None) -> list[str]:
        return list(override or self._settings.warmup_resources or [])

    async def start(self: _S, warmup_resources: Sequence[str] | None = None) -> _S:
        """Make sure the server answers (starting one here if asked to), then warm up.

        Calling it is optional: the first request starts the sandbox. A failed
        warmup is logged, not raised.

        Args:
            warmup_resources: Resource types to warm instead of the configured
                ``warmup_resources``; their images are built, shared services and
                pools started before `start` returns.

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
                    await self._http.reach()
                self._started = True
                warm = self._warmup_list(warmup_resources)
                if warm:
                    try:
                        _report_warmup(warm, await self._http.warm(warm))
                    except SandboxError as error:
                        _report_warmup(warm, error)
        return self

    def start_sync(self: _S, warmup_resources: Sequence[str] | None = None) -> _S:
        """Blocking twin of `start`."""
        with self._sync_start_lock:
            if self._needs_start():
                if self._spawns_locally():
                    self._start_local_server_sync()
                else:
                    self._http.reach_sync()
                self._started = True
                warm = self._warmup_list(warmup_resources)
                if warm:
                    try:
                        _report_warmup(warm, self._http.warm_sync(warm))
                    except SandboxError as error:
                        _report_warmup(warm, error)
        return self

    async def _start_local_server(self) -> None:
        try:
            await self._http.probe()
        except SandboxConnectionError as error:
            server = self._spawn(error)
            try:
                owned = await server.wait_ready(
                    self._http.probe,
                    timeout_s=self._settings.server_startup_timeout,
                    interval_s=self._settings.server_check_interval,
                )
            except BaseException:
                server.kill()
                raise
            self._server = server if owned else None

    def _start_local_server_sync(self) -> None:
        try:
            self._http.probe_sync()
        except SandboxConnectionError as error:
            server = self._spawn(error)
            try:
                owned = server.wait_ready_sync(
                    self._http.probe_sync,
                    timeout_s=self._settings.server_startup_timeout,
                    interval_s=self._settings.server_check_interval,
                )
            except BaseException:
                server.kill()
                raise
            self._server = server if owned else None

    # -- close ---------------------------------------------------------------

    async def close(self) -> None:
        """Close the connection and stop the server `start` started, if any.

        A server that was already running is left alone. Sessions are not
        destroyed here: call `destroy_session` first, or let their TTL reap them.
        Closing twice is harmless.
        """
        self._closed = True
        server, self._server = self._server, None
        try:
            await self._http.close()
        finally:
            if server is not None:
                await server.stop()

    def close_sync(self) -> None:
        """Blocking twin of `close`."""
        self._closed = True
        server, self._server = self._server, None
        try:
            self._http.close_sync()
        finally:
            if server is not None:
                server.stop_sync()

    async def aclose(self) -> None:
        """The same as `close`."""
        await self.close()

    async def __aenter__(self: _S) -> _S:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __enter__(self: _S) -> _S:
        return self.start_sync()

    def __exit__(self, *exc_info: object) -> None:
        self.close_sync()
