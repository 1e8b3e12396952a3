"""Wire protocol: the request and response bodies shared by server and client.

Request models forbid unknown fields so a misspelt field is a 1002 naming it
rather than a silently ignored option. `worker_id` is optional in bodies because
the server also takes it from the ``X-Worker-ID`` header.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

WORKER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
RESOURCE_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"

WorkerId = Annotated[
    str,
    Field(
        pattern=WORKER_ID_PATTERN,
        description="The calling agent process: 1-128 letters, digits or _.:@- .",
    ),
]
Timeout = Annotated[
    float,
    Field(gt=0, le=86_400, description="Seconds before the call is abandoned (2002)."),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Meta(BaseModel):
    """Where a response came from and how long it took."""

    execution_time_ms: float = 0.0
    tool: str | None = None
    resource_type: str | None = None
    session_id: str | None = None
    trace_id: str | None = None
    warnings: list[str] | None = None
    """What the server ignored of the request, e.g. parameters the tool does not take."""


class Envelope(BaseModel):
    """The one shape every response has, errors included."""

    code: int = 0
    message: str = "success"
    data: Any = None
    meta: Meta = Field(default_factory=Meta)


class ExecuteRequest(_Request):
    """Run one tool in the worker's session of the tool's resource type."""

    worker_id: WorkerId | None = None
    action: str = Field(min_length=1, max_length=200, description="Tool name, e.g. 'bash:run'.")
    params: dict[str, Any] = Field(default_factory=dict)
    timeout: Timeout | None = None


class BatchAction(_Request):
    """One step of a batch."""

    action: str = Field(min_length=1, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)
    timeout: Timeout | None = None


class BatchRequest(_Request):
    """Several tool calls in one request, in order or in parallel."""

    worker_id: WorkerId | None = None
    actions: list[BatchAction] = Field(min_length=1, max_length=1000)
    parallel: bool = False
    stop_on_error: bool = True


class BatchResult(BaseModel):
    """`data` of a batch response: one envelope per executed action."""

    results: list[Envelope]
    total: int
    executed: int
    success_count: int


class CreateSessionRequest(_Request):
    """Open (or return the existing) session of a resource type."""

    worker_id: WorkerId | None = None
    resource_type: str = Field(
        validation_alias=AliasChoices("resource_type", "resource"),
        min_length=1,
        max_length=32,
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("config", "session_config"),
        description="Per-session options: memory, cpus, pids, network, ...",
    )
    custom_name: str | None = Field(default=None, max_length=128)


class InitResourceRequest(_Request):
    """AgentFlow's name for opening a session: `/session/create` with `init_config`."""

    worker_id: WorkerId | None = None
    resource_type: str = Field(min_length=1, max_length=32)
    init_config: dict[str, Any] = Field(default_factory=dict)


class InitBatchRequest(_Request):
    """Open several of the worker's sessions: ``{resource: config}``, where a config
    may be wrapped as ``{"content": config}`` (AgentFlow's form)."""

    worker_id: WorkerId | None = None
    resource_configs: dict[str, dict[str, Any]] = Field(max_length=32)


class InitFromConfigRequest(_Request):
    """Read the server's own config file (AgentFlow's ``/init/from-config``)."""

    worker_id: WorkerId | None = None
    config_path: str = Field(min_length=1, max_length=4096)
    override_params: dict[str, Any] = Field(default_factory=dict)


class DestroySessionRequest(_Request):
    """Destroy one of the worker's sessions, or all of them."""

    worker_id: WorkerId | None = None
    resource_type: str | None = Field(
        default=None, validation_alias=AliasChoices("resource_type", "resource")
    )


class ListSessionsRequest(_Request):
    """List one worker's sessions, or every session when no worker is named."""

    worker_id: WorkerId | None = None


class RefreshSessionRequest(_Request):
    """Push the expiry of one or all of the worker's sessions."""

    worker_id: WorkerId | None = None
    resource_type: str | None = Field(
        default=None, validation_alias=AliasChoices("resource_type", "resource")
    )


class WorkerRequest(_Request):
    """Body of the lifecycle endpoints that only name a worker."""

    worker_id: WorkerId | None = None


PoolSize = Annotated[int, Field(ge=0, le=256)]


class WarmupRequest(_Request):
    """Build missing images, start shared services and fill warm pools."""

    resources: list[str] = Field(
        default_factory=list,
        validation_alias=AliasChoices("resources", "backends"),
        description="Resource types to warm; none (or null) means all.",
    )
    pool_size: PoolSize | dict[str, PoolSize] | None = Field(
        default=None,
        description="Ready containers to keep per resource type: one number for every "
        "type named in `resources` that has pools, or {resource: number}.",
    )
    wait: bool = Field(
        default=False,
        description="Answer once images are built, services indexed and pools full.",
    )

    @field_validator("resources", mode="before")
    @classmethod
    def _null_is_all(cls, value: object) -> object:
        return [] if value is None else value


class SessionInfo(BaseModel):
    """A session as the server reports it."""

    session_id: str
    session_name: str
    worker_id: str
    resource_type: str
    status: str
    created_at: float
    expires_at: float
    last_used_at: float
    auto_created: bool = False
    container_id: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)


# -- status ---------------------------------------------------------------------------
# What the status endpoints report, typed so the layers compare enums and fields
# rather than strings in dicts; each dumps to the JSON the API has always sent.


class PoolStatus(BaseModel):
    """One warm pool, as ``/warmup/status`` and ``/lifecycle/status`` report it."""

    key: str
    resource: str
    config: dict[str, Any]
    target: int
    ready: int
    starting: int
    hits: int
    misses: int
    failures: int
    last_error: str | None = None


class ServiceState(str, Enum):
    """Where a shared resource type's service stands.

    ``stopped``, ``starting``, ``failed`` (its warm-up failed) and ``unreachable``
    are the server's view; ``empty``, ``indexing``, ``ready`` and ``failed`` are
    what a running service reports of its default collection.
    """

    STOPPED = "stopped"
    STARTING = "starting"
    EMPTY = "empty"
    INDEXING = "indexing"
    READY = "ready"
    FAILED = "failed"
    UNREACHABLE = "unreachable"

    @property
    def busy(self) -> bool:
        """Whether the service is still on its way to answering queries."""
        return self in (ServiceState.STARTING, ServiceState.INDEXING)


class ServiceStatus(BaseModel):
    """A shared service's state, plus whatever progress the service reports.

    Dump it with ``exclude_unset=True``: the server's own reports carry only the
    fields they set, a service's report every field it sent.
    """

    model_config = ConfigDict(extra="allow")

    state: ServiceState
    error: str | None = None


class ServerStats(BaseModel):
    """The session manager's counters (``/lifecycle/status`` under ``server``)."""

    sessions: int
    workers: int
    by_resource: dict[str, int]
    by_state: dict[str, int]
    calls: dict[str, int]
    """Finished tool calls by ``tool:code``."""
    starts: dict[str, int]
    """Session starts by ``resource:outcome`` (``ok`` or ``failed``)."""
    containers: int
    pools: list[PoolStatus]
