"""Wire protocol: the request and response bodies shared by server and client.

Request models forbid unknown fields so a misspelt field is a 1002 naming it
rather than a silently ignored option. `worker_id` is optional in bodies because
the server also takes it from the ``X-Worker-ID`` header.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

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
        description="Resource types to warm; none means all.",
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
