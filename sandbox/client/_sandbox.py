"""`Sandbox`: one worker's handle on a server, as AgentFlow's ``Sandbox`` is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sandbox.client._envelope import Envelope
from sandbox.client._lifecycle import SandboxLifecycle
from sandbox.client._summaries import (
    Resources,
    create_summary,
    created_entry,
    destroy_summary,
    destroyed_entry,
    failed_entry,
    listed_types,
    merged_params,
    reinit_result,
    resource_configs,
    resource_names,
    session_list,
    split_custom_name,
)
from sandbox.errors import SandboxError


class Sandbox(SandboxLifecycle):
    """One worker's handle on a sandbox server (AgentFlow's ``Sandbox``, drop-in).

    The methods, their arguments and what they return are AgentFlow's: `execute`
    returns the server's `Envelope`; `create_session`, `destroy_session` and
    `reinitialize` return AgentFlow's summaries (``{"status": "success" |
    "partial" | "error", ...}``); `list_sessions` and `get_tools` return lists.
    Every method is async with a blocking ``*_sync`` twin.

    The sandbox starts itself before its first request: `start` checks that the
    server answers and, with ``auto_start_server``, starts one on this machine
    when none runs there; it then warms ``warmup_resources``. Concurrent first
    calls start it once. After `close` every method raises `RuntimeError`.
    `client` is the `HTTPServiceClient` underneath, whose methods return
    envelopes for every endpoint.

    Example:
        >>> async with Sandbox(auto_start_server=True) as sb:
        ...     await sb.create_session("bash")
        ...     result = await sb.execute("bash:run", {"command": "echo hi"})

        >>> with Sandbox() as sb:
        ...     result = sb.execute_sync("bash:run", {"command": "echo hi"})

    Args:
        server_url: Root URL of the server (default ``http://127.0.0.1:18890``).
        worker_id: This worker's id (default ``worker-<8 hex digits>``).
        config: All the settings at once; an argument given here besides wins.
        warmup_resources: Resource types `start` warms.
        auto_start_server: Start a local ``sandbox serve`` when nothing answers at
            a 127.0.0.1/localhost URL, and stop it in `close` (default no).
        server_config_path: Profile file of a server started here.
        server_startup_timeout: Seconds a server started here may take (60).
        server_check_interval: Seconds between probes of that server (0.25).
        timeout: HTTP timeout in seconds (60; tool calls wait at least their own
            timeout plus 15 s).
        retry_count: Retries after transport failures (3).
        log_level: Level of the ``sandbox.client`` logger (left alone by default).
        api_key: Sent as ``Authorization: Bearer <key>``; never shown.
        transport: Async transport for tests (`httpx.MockTransport`, ...).
        sync_transport: Sync transport for tests.
    """

    # -- sessions ------------------------------------------------------------

    async def create_session(
        self, resources: Resources, config: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Open the worker's sessions of one or several resource types.

        A session the worker already has is kept (and counts as a success).
        Several resource types are created concurrently.

        Args:
            resources: ``"vm"``, ``["vm", "rag"]`` or ``{"vm": {"screen_size":
                [1280, 800]}, "rag": {}}``. A ``custom_name`` key in a config names
                the session.
            config: Session config of each resource type named by a string or list.

        Returns:
            ``{"status": "success" | "partial" | "error", "create_time_ms", "total",
            "success", "sessions": {resource type: {"status": "success" | "error",
            "session_id", "session_name", "config_applied", "message", "code",
            "created" (false when the session existed) | "error"}}}``.

        Raises:
            TypeError: `resources` is none of the shapes above.
            RuntimeError: The sandbox is closed.
        """
        started = time.perf_counter()
        configs = resource_configs(resources, config)
        entries = await asyncio.gather(
            *(self._create_one(name, options) for name, options in configs.items())
        )
        return create_summary(dict(zip(configs, entries, strict=True)), started)

    def create_session_sync(
        self, resources: Resources, config: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Blocking twin of `create_session` (one resource type after the other)."""
        started = time.perf_counter()
        configs = resource_configs(resources, config)
        entries = {name: self._create_one_sync(name, options) for name, options in configs.items()}
        return create_summary(entries, started)

    async def _create_one(self, resource_type: str, config: Mapping[str, Any]) -> dict[str, Any]:
        options, name = split_custom_name(config)
        try:
            envelope = await self._http.create_session(resource_type, options, name)
        except SandboxError as error:
            return failed_entry(error)
        return created_entry(envelope, options)

    def _create_one_sync(self, resource_type: str, config: Mapping[str, Any]) -> dict[str, Any]:
        options, name = split_custom_name(config)
        try:
            envelope = self._http.create_session_sync(resource_type, options, name)
        except SandboxError as error:
            return failed_entry(error)
        return created_entry(envelope, options)

    async def destroy_session(self, resources: str | Sequence[str] | None = None) -> dict[str, Any]:
        """Destroy the worker's sessions of the named resource types (all when ``None``).

        Returns:
            ``{"status": "success" | "partial" | "error", "total", "success",
            "details": {resource type: {"status", "session_id", "message", "code"}}}``;
            destroying a session the worker does not have is an ``"error"`` line.
        """
        if resources is None:
            names = listed_types(session_list(await self._http.list_sessions()))
        else:
            names = resource_names(resources)
        entries: dict[str, dict[str, Any]] = {}
        for name in names:
            try:
                entries[name] = destroyed_entry(await self._http.destroy_session(name))
            except SandboxError as error:
                entries[name] = failed_entry(error)
        return destroy_summary(entries)

    def destroy_session_sync(self, resources: str | Sequence[str] | None = None) -> dict[str, Any]:
        """Blocking twin of `destroy_session`."""
        if resources is None:
            names = listed_types(session_list(self._http.list_sessions_sync()))
        else:
            names = resource_names(resources)
        entries: dict[str, dict[str, Any]] = {}
        for name in names:
            try:
                entries[name] = destroyed_entry(self._http.destroy_session_sync(name))
            except SandboxError as error:
                entries[name] = failed_entry(error)
        return destroy_summary(entries)

    async def list_sessions(self) -> list[dict[str, Any]]:
        """The worker's sessions, each ``{session_id, session_name, resource_type, ...}``.

        Raises:
            SandboxError: The server answered with an error.
        """
        return session_list(await self._http.list_sessions())

    def list_sessions_sync(self) -> list[dict[str, Any]]:
        """Blocking twin of `list_sessions`."""
        return session_list(self._http.list_sessions_sync())

    async def reinitialize(
        self, resource_type: str, new_config: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Replace the worker's session of `resource_type` by a new one with `new_config`.

        Other resource types' sessions are left alone. A ``custom_name`` key in
        `new_config` names the new session.

        Returns:
            ``{"status": "success", "resource_type", "old_session_id",
            "new_session_id", "new_session_name", "config_applied",
            "reinit_time_ms"}``, or ``{"status": "error", "resource_type",
            "old_session_id", "error", "code"}``.
        """
        started = time.perf_counter()
        try:
            old = destroyed_entry(await self._http.destroy_session(resource_type))
        except SandboxError as error:
            old = failed_entry(error)
        created = await self._create_one(resource_type, new_config or {})
        return reinit_result(resource_type, old.get("session_id"), created, new_config, started)

    def reinitialize_sync(
        self, resource_type: str, new_config: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Blocking twin of `reinitialize`."""
        started = time.perf_counter()
        try:
            old = destroyed_entry(self._http.destroy_session_sync(resource_type))
        except SandboxError as error:
            old = failed_entry(error)
        created = self._create_one_sync(resource_type, new_config or {})
        return reinit_result(resource_type, old.get("session_id"), created, new_config, started)

    async def refresh_sessions(self, resource_type: str | None = None) -> Envelope:
        """Push the expiry of the worker's session of `resource_type` (all when ``None``)."""
        return await self._http.refresh_sessions(resource_type)

    def refresh_sessions_sync(self, resource_type: str | None = None) -> Envelope:
        """Blocking twin of `refresh_sessions`."""
        return self._http.refresh_sessions_sync(resource_type)

    # -- tools ---------------------------------------------------------------

    async def execute(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Envelope:
        """Run one tool in the worker's session of its resource type (created if need be).

        Args:
            action: Tool name, e.g. ``"bash:run"``, ``"vm-click"``.
            params: The tool's parameters.
            timeout: Seconds the tool may run; default: the server's default.
            **kwargs: More parameters; one `params` names itself wins, ``None``
                values are left out (pipelines pass per-task values this way).

        Returns:
            The envelope; ``data`` holds the tool's result when ``code`` is 0.

        Raises:
            SandboxConnectionError: No envelope came back.
            RuntimeError: The sandbox is closed.
        """
        return await self._http.execute(action, merged_params(params, kwargs), timeout)

    def execute_sync(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Envelope:
        """Blocking twin of `execute`."""
        return self._http.execute_sync(action, merged_params(params, kwargs), timeout)

    async def execute_batch(
        self,
        actions: Sequence[Mapping[str, Any]],
        parallel: bool = False,
        stop_on_error: bool = True,
    ) -> Envelope:
        """Run several tools in one request; see `HTTPServiceClient.execute_batch`."""
        return await self._http.execute_batch(actions, parallel, stop_on_error)

    def execute_batch_sync(
        self,
        actions: Sequence[Mapping[str, Any]],
        parallel: bool = False,
        stop_on_error: bool = True,
    ) -> Envelope:
        """Blocking twin of `execute_batch`."""
        return self._http.execute_batch_sync(actions, parallel, stop_on_error)

    async def get_tools(self, include_hidden: bool = False) -> list[dict[str, Any]]:
        """Every tool: ``{name, resource_type, description, parameters}`` (a JSON schema).

        Raises:
            SandboxError: The server answered with an error.
        """
        return await self._http.list_tools(include_hidden)

    def get_tools_sync(self, include_hidden: bool = False) -> list[dict[str, Any]]:
        """Blocking twin of `get_tools`."""
        return self._http.list_tools_sync(include_hidden)

    # -- server --------------------------------------------------------------

    async def warmup(
        self,
        resources: str | Sequence[str] | None = None,
        wait: bool = False,
        pool_size: int | Mapping[str, int] | None = None,
    ) -> Envelope:
        """Build images, start shared services, fill pools; see `HTTPServiceClient.warmup`."""
        return await self._http.warmup(resources, wait, pool_size)

    def warmup_sync(
        self,
        resources: str | Sequence[str] | None = None,
        wait: bool = False,
        pool_size: int | Mapping[str, int] | None = None,
    ) -> Envelope:
        """Blocking twin of `warmup`."""
        return self._http.warmup_sync(resources, wait, pool_size)

    async def get_warmup_status(self) -> Envelope:
        """Per resource type: image ready, pool size and target, errors."""
        return await self._http.get_warmup_status()

    def get_warmup_status_sync(self) -> Envelope:
        """Blocking twin of `get_warmup_status`."""
        return self._http.get_warmup_status_sync()

    async def get_status(self) -> Envelope:
        """The server's counters and this worker's sessions."""
        return await self._http.get_status()

    def get_status_sync(self) -> Envelope:
        """Blocking twin of `get_status`."""
        return self._http.get_status_sync()

    async def health(self) -> Envelope:
        """Whether the server and Docker are up."""
        return await self._http.health()

    def health_sync(self) -> Envelope:
        """Blocking twin of `health`."""
        return self._http.health_sync()

    async def heartbeat(self) -> Envelope:
        """Push the expiry of all the worker's sessions."""
        return await self._http.heartbeat()

    def heartbeat_sync(self) -> Envelope:
        """Blocking twin of `heartbeat`."""
        return self._http.heartbeat_sync()

    async def disconnect(self) -> Envelope:
        """Destroy all the worker's sessions in one request."""
        return await self._http.disconnect()

    def disconnect_sync(self) -> Envelope:
        """Blocking twin of `disconnect`."""
        return self._http.disconnect_sync()

    async def shutdown_server(self, force: bool = False, cleanup_sessions: bool = True) -> Envelope:
        """Stop the server (operators only): it destroys every session first."""
        return await self._http.shutdown_server(force, cleanup_sessions)

    def shutdown_server_sync(self, force: bool = False, cleanup_sessions: bool = True) -> Envelope:
        """Blocking twin of `shutdown_server`."""
        return self._http.shutdown_server_sync(force, cleanup_sessions)
