"""The half of the HTTP client that does no I/O.

`BaseServiceClient` builds every request (path, body, headers, timeout), reads
every response into an envelope, decides about retries and turns httpx's
exceptions into `SandboxConnectionError`. `ServiceConnection` adds the two ways
of sending (async and sync) and the client's lifecycle, and `HTTPServiceClient`
one method pair per endpoint, so the two styles can never drift apart. The
`Sandbox` facade talks through a subclass whose hook starts it before its first
request.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote, urlencode

import httpx

from sandbox.client._config import HTTPClientConfig
from sandbox.client._envelope import Envelope
from sandbox.errors import SandboxConnectionError

logger = logging.getLogger("sandbox.client")

TOOL_TIMEOUT_MARGIN_S: Final = 15.0
"""Extra seconds a tool call's response may take beyond the tool timeout: the server
may first have to start the session and then ship the result back."""
WARMUP_WAIT_S: Final = 1800.0
"""How long a warmup with ``wait`` may take (image builds, index builds, pool fills)."""
PROBE_TIMEOUT_S: Final = 2.0
"""Timeout of the single-attempt /health probe used while starting a local server."""
_EXCERPT_CHARS: Final = 200


class _NotGiven(enum.Enum):
    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = _NotGiven.NOT_GIVEN
"""Default of arguments where ``None`` means something ("no worker") of its own."""
NotGiven = Literal[_NotGiven.NOT_GIVEN]


class ClientState(enum.Enum):
    """Lifecycle of a client: calls are refused once it is closed."""

    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


@dataclass(frozen=True)
class _Call:
    """One logical request, the same on every retry."""

    method: Literal["GET", "POST", "DELETE"]
    path: str
    body: dict[str, Any] | None
    worker_id: str | None
    timeout: httpx.Timeout
    max_retries: int
    raw: Literal["jsonl", "bytes"] | None = None
    """A successful answer that is no envelope: JSON lines or a file's bytes."""


def _without_none(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


def _is_code(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seconds(value: object) -> float:
    """A batch item's timeout as a number, 0 when absent or malformed (the server says why)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return 0.0


def _batch_action(item: Mapping[str, Any]) -> dict[str, Any]:
    # Unknown keys are passed on, so the server can name a misspelt field (1002).
    action = _without_none(item)
    action["params"] = dict(item.get("params") or {})
    return action


def _resource_list(resources: str | Sequence[str] | None) -> list[str] | None:
    if resources is None:
        return None
    if isinstance(resources, str):  # a lone name, not a sequence of letters
        return [resources]
    return list(resources)


def tool_list(envelope: Envelope) -> list[dict[str, Any]]:
    """The tools a ``GET /tools`` envelope lists.

    AgentFlow's client reads ``tools`` at the envelope's top level, ours in
    ``data``; either is accepted.

    Raises:
        SandboxError: The envelope is an error (the subclass its code names).
    """
    envelope.raise_for_code()
    tools = envelope.get("tools")
    if not isinstance(tools, list) and isinstance(envelope.data, dict):
        tools = envelope.data.get("tools")
    return [tool for tool in tools or [] if isinstance(tool, dict)]


class BaseServiceClient:
    """Everything `HTTPServiceClient` does that is not sending bytes.

    Args:
        config: Where the server is and how to talk to it; defaults to
            `HTTPClientConfig()`.
    """

    def __init__(self, config: HTTPClientConfig | None = None) -> None:
        self._config = config if config is not None else HTTPClientConfig()
        self._state = ClientState.UNOPENED

    @property
    def config(self) -> HTTPClientConfig:
        """The settings this client was made with."""
        return self._config

    @property
    def state(self) -> ClientState:
        """Whether the client is unopened, opened (has sent a request) or closed."""
        return self._state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self._config.base_url!r}, "
            f"worker_id={self._config.worker_id!r}, state={self._state.value!r})"
        )

    # -- state ---------------------------------------------------------------

    def _refuse_if_closed(self) -> None:
        if self._state is ClientState.CLOSED:
            raise RuntimeError(
                f"{type(self).__name__} is closed: it cannot send more requests; "
                "create a new client"
            )

    def _open(self) -> None:
        self._refuse_if_closed()
        self._state = ClientState.OPENED

    # -- building requests ---------------------------------------------------

    def _worker(self, worker_id: str | NotGiven | None) -> str | None:
        return self._config.worker_id if worker_id is NOT_GIVEN else worker_id

    def _timeout(self, tool_seconds: float = 0.0) -> httpx.Timeout:
        # The response of a tool call cannot come before the tool is done, so the
        # read timeout must outlast the tool's own timeout.
        read = max(self._config.timeout, tool_seconds + TOOL_TIMEOUT_MARGIN_S)
        return httpx.Timeout(self._config.timeout, read=read)

    def _post(
        self,
        path: str,
        body: Mapping[str, Any],
        worker_id: str | None,
        *,
        tool_seconds: float = 0.0,
    ) -> _Call:
        return _Call(
            method="POST",
            path=path,
            body=_without_none(body),
            worker_id=worker_id,
            timeout=self._timeout(tool_seconds),
            max_retries=self._config.max_retries,
        )

    def _get(self, path: str) -> _Call:
        return _Call(
            method="GET",
            path=path,
            body=None,
            worker_id=self._config.worker_id,
            timeout=self._timeout(),
            max_retries=self._config.max_retries,
        )

    def _execute_call(
        self,
        action: str,
        params: Mapping[str, Any] | None,
        worker_id: str | NotGiven | None,
        timeout: float | None,
    ) -> _Call:
        worker = self._worker(worker_id)
        body = {
            "worker_id": worker,
            "action": action,
            "params": dict(params or {}),
            "timeout": timeout,
        }
        tool_seconds = max(timeout or 0.0, _seconds((params or {}).get("timeout")))
        return self._post("/execute", body, worker, tool_seconds=tool_seconds)

    def _batch_call(
        self,
        actions: Sequence[Mapping[str, Any]],
        parallel: bool,
        stop_on_error: bool,
        worker_id: str | NotGiven | None,
    ) -> _Call:
        worker = self._worker(worker_id)
        items = [_batch_action(item) for item in actions]
        seconds = [_seconds(item.get("timeout")) for item in items]
        tool_seconds = max(seconds, default=0.0) if parallel else sum(seconds)
        body = {
            "worker_id": worker,
            "actions": items,
            "parallel": parallel,
            "stop_on_error": stop_on_error,
        }
        return self._post("/execute/batch", body, worker, tool_seconds=tool_seconds)

    def _create_session_call(
        self,
        resource_type: str,
        session_config: Mapping[str, Any] | None,
        custom_name: str | None,
        worker_id: str | NotGiven | None,
    ) -> _Call:
        worker = self._worker(worker_id)
        body = {
            "worker_id": worker,
            "resource_type": resource_type,
            "config": dict(session_config or {}),
            "custom_name": custom_name,
        }
        return self._post("/session/create", body, worker)

    def _session_call(
        self, path: str, resource_type: str | None, worker_id: str | NotGiven | None
    ) -> _Call:
        worker = self._worker(worker_id)
        return self._post(path, {"worker_id": worker, "resource_type": resource_type}, worker)

    def _worker_call(self, path: str, worker_id: str | NotGiven | None) -> _Call:
        worker = self._worker(worker_id)
        return self._post(path, {"worker_id": worker}, worker)

    def _warmup_call(
        self,
        resources: str | Sequence[str] | None,
        pool_size: int | Mapping[str, int] | None,
        wait: bool,
    ) -> _Call:
        body = {
            "resources": _resource_list(resources),
            "pool_size": dict(pool_size) if isinstance(pool_size, Mapping) else pool_size,
            "wait": wait,
        }
        # A waited warmup may build images first: minutes, not seconds.
        seconds = WARMUP_WAIT_S if wait else 0.0
        return self._post("/warmup", body, self._config.worker_id, tool_seconds=seconds)

    def _tools_call(self, include_hidden: bool | None = None) -> _Call:
        if include_hidden is None:
            return self._get("/tools")
        return self._get(f"/tools?include_hidden={str(include_hidden).lower()}")

    def _tool_schema_call(self, tool_name: str) -> _Call:
        return self._get(f"/api/v1/tools/{quote(tool_name, safe=':')}/schema")

    def _trajectories_call(
        self,
        worker_id: str | None,
        session_id: str | None,
        since: float | None,
        until: float | None,
        limit: int | None,
    ) -> _Call:
        query = _without_none(
            {
                "worker_id": worker_id,
                "session_id": session_id,
                "since": since,
                "until": until,
                "limit": limit,
            }
        )
        return self._get("/api/v1/trajectories" + (f"?{urlencode(query)}" if query else ""))

    def _trajectory_call(self, session_id: str, images: Literal["ref", "inline"]) -> _Call:
        path = f"/api/v1/trajectories/{quote(session_id, safe='')}?images={images}"
        return dataclasses.replace(self._get(path), raw="jsonl")

    def _trajectory_image_call(self, sha256: str) -> _Call:
        path = f"/api/v1/trajectories/images/{quote(sha256, safe='')}"
        return dataclasses.replace(self._get(path), raw="bytes")

    def _delete_trajectory_call(self, session_id: str) -> _Call:
        path = f"/api/v1/trajectories/{quote(session_id, safe='')}"
        return dataclasses.replace(self._get(path), method="DELETE")

    def _recordings_call(self, worker_id: str | None, session_id: str | None) -> _Call:
        query = _without_none({"worker_id": worker_id, "session_id": session_id})
        return self._get("/api/v1/recordings" + (f"?{urlencode(query)}" if query else ""))

    def _recording_call(self, recording_id: str) -> _Call:
        path = f"/api/v1/recordings/{quote(recording_id, safe='')}"
        return dataclasses.replace(self._get(path), raw="bytes")

    def _delete_recording_call(self, recording_id: str) -> _Call:
        path = f"/api/v1/recordings/{quote(recording_id, safe='')}"
        return dataclasses.replace(self._get(path), method="DELETE")

    def _init_resource_call(
        self,
        resource_type: str,
        init_config: Mapping[str, Any] | None,
        worker_id: str | NotGiven | None,
    ) -> _Call:
        worker = self._worker(worker_id)
        body = {
            "worker_id": worker,
            "resource_type": resource_type,
            "init_config": dict(init_config or {}),
        }
        return self._post("/api/v1/init/resource", body, worker)

    def _init_batch_call(
        self, resource_configs: Mapping[str, Any], worker_id: str | NotGiven | None
    ) -> _Call:
        worker = self._worker(worker_id)
        body = {"worker_id": worker, "resource_configs": dict(resource_configs)}
        return self._post("/api/v1/init/batch", body, worker)

    def _init_from_config_call(
        self,
        config_path: str,
        override_params: Mapping[str, Any] | None,
        worker_id: str | NotGiven | None,
    ) -> _Call:
        worker = self._worker(worker_id)
        body = {
            "worker_id": worker,
            "config_path": config_path,
            "override_params": dict(override_params or {}),
        }
        return self._post("/api/v1/init/from-config", body, worker)

    def _shutdown_call(self, force: bool, cleanup_sessions: bool) -> _Call:
        body = {"force": force, "cleanup_sessions": cleanup_sessions}
        return self._post("/shutdown", body, self._config.worker_id)

    def _probe_call(self) -> _Call:
        return _Call(
            method="GET",
            path="/health",
            body=None,
            worker_id=self._config.worker_id,
            timeout=httpx.Timeout(PROBE_TIMEOUT_S),
            max_retries=0,
        )

    def _headers(self, call: _Call, request_id: str) -> dict[str, str]:
        # One X-Request-ID per logical call, reused on its retries: the server
        # answers a repeated id from its cache instead of running the tool again.
        headers = {"X-Request-ID": request_id}
        if call.worker_id is not None:
            headers["X-Worker-ID"] = call.worker_id
        if self._config.api_key is not None:
            headers["Authorization"] = f"Bearer {self._config.api_key}"
        return headers

    @staticmethod
    def _new_request_id() -> str:
        return uuid.uuid4().hex

    # -- reading responses and failures --------------------------------------

    def _url(self, call: _Call) -> str:
        return f"{self._config.base_url}{call.path}"

    def _read_envelope(self, call: _Call, response: httpx.Response) -> Envelope:
        """Return the response's envelope, whatever its HTTP status.

        Raises:
            SandboxConnectionError: The body is not a JSON object with an integer
                ``code``, so whatever answered is not a sandbox server (or broke).
        """
        if call.raw is not None and response.status_code == 200:
            return self._raw_envelope(call, response)
        try:
            body = response.json()
        except ValueError:  # not JSON, or not decodable text
            body = None
        if isinstance(body, dict) and _is_code(body.get("code")):
            body.setdefault("message", "")
            body.setdefault("data", None)
            body.setdefault("meta", {})
            return Envelope(body)
        excerpt = response.text[:_EXCERPT_CHARS]
        raise SandboxConnectionError(
            f"{call.method} {self._url(call)} answered HTTP {response.status_code} "
            f"without a sandbox envelope; body starts: {excerpt!r}",
            data={
                "url": self._url(call),
                "status_code": response.status_code,
                "body_excerpt": excerpt,
            },
        )

    def _raw_envelope(self, call: _Call, response: httpx.Response) -> Envelope:
        """A success envelope around an answer that is no envelope (JSON lines, a file)."""
        content_type = response.headers.get("content-type", "")
        if call.raw == "jsonl":
            try:
                steps = [json.loads(line) for line in response.text.splitlines() if line]
            except ValueError as error:
                raise SandboxConnectionError(
                    f"{call.method} {self._url(call)} answered lines that are not JSON: {error}",
                    data={"url": self._url(call), "status_code": response.status_code},
                ) from error
            data: dict[str, Any] = {"steps": steps}
        else:
            data = {"content": response.content, "content_type": content_type}
        return Envelope({"code": 0, "message": "success", "data": data, "meta": {}})

    def _retry_delay(self, call: _Call, error: httpx.HTTPError, attempt: int) -> float:
        """Seconds to wait before retrying after `error`, or raise it translated.

        This is the one place where an httpx exception becomes a package error.
        Only transport failures are retried; an HTTP error status never gets here.

        Args:
            call: The request that failed.
            error: What httpx raised.
            attempt: How many retries were already made (0 after the first try).

        Raises:
            SandboxConnectionError: The error is not retryable or retries ran out.
        """
        retryable = isinstance(error, httpx.TransportError) and not isinstance(
            error, httpx.UnsupportedProtocol
        )
        if retryable and attempt < call.max_retries:
            delay = self._config.retry_delay * 2.0**attempt
            logger.warning(
                "%s %s failed (%s: %s); retry %d of %d in %.2f s",
                call.method,
                self._url(call),
                type(error).__name__,
                error,
                attempt + 1,
                call.max_retries,
                delay,
            )
            return delay
        attempts = attempt + 1
        hint = ""
        if isinstance(error, httpx.ConnectError):
            hint = " Is the server running? Start it with `sandbox serve`."
        raise SandboxConnectionError(
            f"{call.method} {self._url(call)} got no response after {attempts} "
            f"attempt{'s' if attempts > 1 else ''}: {type(error).__name__}: "
            f"{error or 'no detail'}.{hint}",
            data={
                "url": self._url(call),
                "attempts": attempts,
                "error": type(error).__name__,
                "connect_failed": isinstance(error, httpx.ConnectError),
            },
        ) from error
