"""`HTTPServiceClient`: the wire protocol as async methods and their ``*_sync`` twins."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sandbox.client._base import NOT_GIVEN, NotGiven, tool_list
from sandbox.client._connection import ServiceConnection
from sandbox.client._envelope import Envelope


class HTTPServiceClient(ServiceConnection):
    """Client of the sandbox server's HTTP API.

    Every endpoint method returns the server's `Envelope` (a `dict` ``{"code",
    "message", "data", "meta"}``) for any response that carries one, error
    statuses included: check ``envelope["code"]`` (0 is success) or call
    ``envelope.raise_for_code()`` to raise the error it describes. A method raises
    only when no envelope came back at all. The one exception is AgentFlow's
    `list_tools`, which returns the list of tools.

    The constructor and the method names are AgentFlow's ``HTTPServiceClient``'s
    (``base_url``, ``worker_id``, ``timeout``, ``config``; `connect`,
    ``close(destroy_sessions)``, `destroy_all_sessions`, `refresh_session`,
    ``init_*``, `list_tools`, `get_tool_schema`), so code written for it runs here.
    A new endpoint is a request builder in `BaseServiceClient` plus its two
    methods here.

    Async methods use an `httpx.AsyncClient`, their ``*_sync`` twins an
    `httpx.Client`; each is created on first use and shares the settings, so one
    instance may serve both styles. `connect` is optional: it checks the server
    and starts the heartbeats of ``config.auto_heartbeat``. Transport failures
    (refused connection, read timeout, dropped connection) are retried up to
    ``config.max_retries`` times with exponential backoff, always with the call's
    one ``X-Request-ID`` so the server never runs a tool twice; HTTP error
    statuses are never retried.

    ``worker_id`` arguments of the methods (keyword-only) name the calling worker
    and default to ``config.worker_id``; pass ``None`` to send no worker at all
    (`list_sessions` then lists every worker's sessions).

    Example:
        >>> async with HTTPServiceClient("http://127.0.0.1:18890", worker_id="w1") as client:
        ...     result = await client.execute("bash:run", {"command": "ls"})

    Args:
        base_url: Root URL of the server; default ``config.base_url``.
        worker_id: The worker calls are made for; default ``config.worker_id``.
        timeout: HTTP timeout in seconds; default ``config.timeout``.
        config: All the settings; an argument above, when given, wins over it.
        transport: Transport of the async client (e.g. `httpx.ASGITransport` or
            `httpx.MockTransport` in tests); default: real sockets.
        sync_transport: Transport of the sync client; default: real sockets.
    """

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
            action: Tool name, e.g. ``"bash:run"`` or ``"vm:screenshot"``
                (``vm-click``, ``vm_click`` and ``vm.click`` name ``vm:click``).
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
        return await self._send(self._tools_call())

    def get_tools_sync(self) -> Envelope:
        """Blocking twin of `get_tools`."""
        return self._send_sync(self._tools_call())

    async def list_tools(self, include_hidden: bool = False) -> list[dict[str, Any]]:
        """AgentFlow's name for `get_tools`: the list of tools itself.

        Args:
            include_hidden: Asks for tools the server hides from agents too.

        Returns:
            One ``{name, resource_type, description, parameters}`` per tool.

        Raises:
            SandboxError: The server answered with an error (the matching subclass),
                or no envelope came back (`SandboxConnectionError`).
        """
        return tool_list(await self._send(self._tools_call(include_hidden)))

    def list_tools_sync(self, include_hidden: bool = False) -> list[dict[str, Any]]:
        """Blocking twin of `list_tools`."""
        return tool_list(self._send_sync(self._tools_call(include_hidden)))

    async def get_tool_schema(self, tool_name: str) -> Envelope:
        """One tool's description and JSON-schema parameters (GET /tools/{name}/schema)."""
        return await self._send(self._tool_schema_call(tool_name))

    def get_tool_schema_sync(self, tool_name: str) -> Envelope:
        """Blocking twin of `get_tool_schema`."""
        return self._send_sync(self._tool_schema_call(tool_name))

    # -- sessions ------------------------------------------------------------

    async def create_session(
        self,
        resource_type: str,
        session_config: Mapping[str, Any] | None = None,
        custom_name: str | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Open the worker's session of a resource type, or return the existing one.

        Args:
            resource_type: ``"vm"``, ``"bash"``, ``"code"``, ``"rag"``, ...
            session_config: Session options (``screen_size``, ``memory``, ...).
            custom_name: A readable name for the session.
            worker_id: The calling worker; default ``config.worker_id``.

        Returns:
            The envelope; ``data`` holds ``session_id``, ``session_name``,
            ``config_applied`` and a ``status`` that is ``"exists"`` when the
            session was already open.
        """
        call = self._create_session_call(resource_type, session_config, custom_name, worker_id)
        return await self._send(call)

    def create_session_sync(
        self,
        resource_type: str,
        session_config: Mapping[str, Any] | None = None,
        custom_name: str | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Blocking twin of `create_session`."""
        call = self._create_session_call(resource_type, session_config, custom_name, worker_id)
        return self._send_sync(call)

    async def destroy_session(
        self,
        resource_type: str | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Destroy the worker's session of `resource_type`, or all of them when ``None``.

        Returns:
            The envelope; ``data`` is ``{destroyed: [session ids], count}``.
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

    async def destroy_all_sessions(
        self, *, worker_id: str | NotGiven | None = NOT_GIVEN
    ) -> Envelope:
        """Destroy all the worker's sessions, none being no error (AgentFlow's name).

        The same request as `disconnect`.
        """
        return await self.disconnect(worker_id=worker_id)

    def destroy_all_sessions_sync(
        self, *, worker_id: str | NotGiven | None = NOT_GIVEN
    ) -> Envelope:
        """Blocking twin of `destroy_all_sessions`."""
        return self.disconnect_sync(worker_id=worker_id)

    async def list_sessions(self, *, worker_id: str | NotGiven | None = NOT_GIVEN) -> Envelope:
        """List the worker's sessions (every worker's when `worker_id` is ``None``).

        Returns:
            The envelope; ``data`` is ``{sessions, count}`` (`Sandbox.list_sessions`
            returns the list itself).
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

    async def refresh_session(
        self,
        resource_type: str | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """AgentFlow's name for `refresh_sessions`."""
        return await self.refresh_sessions(resource_type, worker_id=worker_id)

    def refresh_session_sync(
        self,
        resource_type: str | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Blocking twin of `refresh_session`."""
        return self.refresh_sessions_sync(resource_type, worker_id=worker_id)

    # -- AgentFlow's resource initialisation ---------------------------------

    async def init_resource(
        self,
        resource_type: str,
        init_config: Mapping[str, Any] | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Prepare a resource type for the worker with `init_config` (POST /init/resource)."""
        return await self._send(self._init_resource_call(resource_type, init_config, worker_id))

    def init_resource_sync(
        self,
        resource_type: str,
        init_config: Mapping[str, Any] | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Blocking twin of `init_resource`."""
        return self._send_sync(self._init_resource_call(resource_type, init_config, worker_id))

    async def init_batch(
        self,
        resource_configs: Mapping[str, Any],
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Prepare several resource types, ``{type: {"content": {...}}}`` (POST /init/batch)."""
        return await self._send(self._init_batch_call(resource_configs, worker_id))

    def init_batch_sync(
        self,
        resource_configs: Mapping[str, Any],
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Blocking twin of `init_batch`."""
        return self._send_sync(self._init_batch_call(resource_configs, worker_id))

    async def init_from_config(
        self,
        config_path: str,
        override_params: Mapping[str, Any] | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Prepare resources from a config file on the server (POST /init/from-config)."""
        call = self._init_from_config_call(config_path, override_params, worker_id)
        return await self._send(call)

    def init_from_config_sync(
        self,
        config_path: str,
        override_params: Mapping[str, Any] | None = None,
        *,
        worker_id: str | NotGiven | None = NOT_GIVEN,
    ) -> Envelope:
        """Blocking twin of `init_from_config`."""
        return self._send_sync(self._init_from_config_call(config_path, override_params, worker_id))

    # -- server --------------------------------------------------------------

    async def health(self) -> Envelope:
        """Ask whether the server and Docker are up (GET /health).

        Returns:
            The envelope; ``data`` is ``{status, docker, version, uptime_s, ...}``.
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
        """Report the server's counters and the worker's sessions."""
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
        """Tell the server the worker is leaving: all its sessions are destroyed."""
        return await self._send(self._worker_call("/api/v1/worker/disconnect", worker_id))

    def disconnect_sync(self, *, worker_id: str | NotGiven | None = NOT_GIVEN) -> Envelope:
        """Blocking twin of `disconnect`."""
        return self._send_sync(self._worker_call("/api/v1/worker/disconnect", worker_id))

    # -- trajectories (recorded sessions) --------------------------------------

    async def list_trajectories(
        self,
        *,
        worker_id: str | None = None,
        session_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> Envelope:
        """List this API key's recorded trajectories (one per session), newest first.

        Args:
            worker_id: Only this worker's.
            session_id: Only this session's.
            since: Only those active at or after this time (epoch seconds).
            until: Only those started at or before this time (epoch seconds).
            limit: At most this many (the server's default: 1000).

        Returns:
            The envelope; ``data`` holds ``trajectories`` (session_id, worker_id,
            resource_type, started_at, updated_at, steps, bytes) and ``count``.
        """
        return await self._send(self._trajectories_call(worker_id, session_id, since, until, limit))

    def list_trajectories_sync(
        self,
        *,
        worker_id: str | None = None,
        session_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> Envelope:
        """Blocking twin of `list_trajectories`."""
        return self._send_sync(self._trajectories_call(worker_id, session_id, since, until, limit))

    async def get_trajectory(
        self, session_id: str, *, images: Literal["ref", "inline"] = "ref"
    ) -> Envelope:
        """Fetch one recorded session's steps, in order (the server sends JSONL).

        Args:
            session_id: The recorded session.
            images: ``ref`` keeps each image as ``{"$image": sha256, "format"}``
                (fetch it with `get_trajectory_image`); ``inline`` puts its base64 back.

        Returns:
            The envelope; ``data["steps"]`` is the list of steps (seq, time, action,
            tool, params, code, message, data, execution_time_ms, trace_id, ...).
            An unknown session (or another tenant's) is code 1001.
        """
        return await self._send(self._trajectory_call(session_id, images))

    def get_trajectory_sync(
        self, session_id: str, *, images: Literal["ref", "inline"] = "ref"
    ) -> Envelope:
        """Blocking twin of `get_trajectory`."""
        return self._send_sync(self._trajectory_call(session_id, images))

    async def get_trajectory_image(self, sha256: str) -> Envelope:
        """Fetch one recorded image by the SHA-256 a step references it by.

        Returns:
            The envelope; ``data["content"]`` holds the image's bytes and
            ``data["content_type"]`` its type (``image/png``, ``image/jpeg``).
        """
        return await self._send(self._trajectory_image_call(sha256))

    def get_trajectory_image_sync(self, sha256: str) -> Envelope:
        """Blocking twin of `get_trajectory_image`."""
        return self._send_sync(self._trajectory_image_call(sha256))

    async def delete_trajectory(self, session_id: str) -> Envelope:
        """Delete one recorded session and the images no other recording shows."""
        return await self._send(self._delete_trajectory_call(session_id))

    def delete_trajectory_sync(self, session_id: str) -> Envelope:
        """Blocking twin of `delete_trajectory`."""
        return self._send_sync(self._delete_trajectory_call(session_id))

    # -- screen recordings (vm sessions' videos) ------------------------------------

    async def list_recordings(
        self, worker_id: str | None = None, session_id: str | None = None
    ) -> Envelope:
        """List this API key's screen recordings, newest first.

        Returns:
            The envelope; ``data`` holds ``recordings`` (recording_id, session_id,
            worker_id, started_at, stopped_at, size, fps, complete, truncated) and
            ``count``.
        """
        return await self._send(self._recordings_call(worker_id, session_id))

    def list_recordings_sync(
        self, worker_id: str | None = None, session_id: str | None = None
    ) -> Envelope:
        """Blocking twin of `list_recordings`."""
        return self._send_sync(self._recordings_call(worker_id, session_id))

    async def get_recording(self, recording_id: str) -> Envelope:
        """Fetch one screen recording's MP4 video (a session id: its latest).

        Returns:
            The envelope; ``data["content"]`` holds the video's bytes and
            ``data["content_type"]`` its type (``video/mp4``).
        """
        return await self._send(self._recording_call(recording_id))

    def get_recording_sync(self, recording_id: str) -> Envelope:
        """Blocking twin of `get_recording`."""
        return self._send_sync(self._recording_call(recording_id))

    async def delete_recording(self, recording_id: str) -> Envelope:
        """Delete one screen recording's video."""
        return await self._send(self._delete_recording_call(recording_id))

    def delete_recording_sync(self, recording_id: str) -> Envelope:
        """Blocking twin of `delete_recording`."""
        return self._send_sync(self._delete_recording_call(recording_id))

    async def shutdown_server(self, force: bool = False, cleanup_sessions: bool = True) -> Envelope:
        """Stop the server gracefully: it destroys sessions and drains pools first.

        Args:
            force: AgentFlow's flag, sent along; the server always shuts down
                gracefully.
            cleanup_sessions: AgentFlow's flag, sent along; the server always
                destroys its sessions first.
        """
        return await self._send(self._shutdown_call(force, cleanup_sessions))

    def shutdown_server_sync(self, force: bool = False, cleanup_sessions: bool = True) -> Envelope:
        """Blocking twin of `shutdown_server`."""
        return self._send_sync(self._shutdown_call(force, cleanup_sessions))
