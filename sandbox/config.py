"""Server settings: environment (``SANDBOX_`` prefix, ``__`` for nesting) and profiles.

Precedence, highest first: keyword arguments, environment variables, the profile
file (JSON or YAML, named by ``config_file`` / ``SANDBOX_CONFIG_FILE`` or
``sandbox serve --config``), then the defaults below. A profile may also be one of
AgentFlow's server config files, which `sandbox.agentflow_config` translates.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .agent.tools.desktop_recording import (
    DEFAULT_FPS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SECONDS,
    MAX_FPS,
)
from .agent.tools.desktop_vnc import MAX_SECONDS as MAX_VIEW_SECONDS
from .agent.tools.desktop_vnc import MAX_VIEWERS
from .errors import InvalidParams
from .profiles import read_profile

if TYPE_CHECKING:
    from .backends import ResourceType

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
MIN_MEMORY_BYTES = 16 * 1024**2
MIN_CPUS = 0.01
"""Smallest CPU share: Docker's NanoCpus is whole billionths, and a share that rounds
to 0 means no limit at all; runc refuses anything under 0.01 anyway."""
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_TENANT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEFAULT_TENANT = "default"
"""The tenant of `api_key`, and of every caller when no key is configured."""


def parse_memory(value: str | int) -> int:
    """Turn ``512m``, ``1g``, ``1.5G`` or a byte count into bytes.

    Raises:
        ValueError: The value is not a size, or is below 16 MiB.
    """
    if isinstance(value, bool):
        raise ValueError("memory must be a size like '512m' or a number of bytes")
    if isinstance(value, int):
        size = value
    else:
        match = _MEMORY.match(str(value))
        if match is None:
            raise ValueError(f"memory {value!r} is not a size like '512m', '1g' or 1073741824")
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < MIN_MEMORY_BYTES:
        raise ValueError(f"memory {value!r} is below the 16m minimum a container needs")
    return size


class ResourceLimits(BaseModel):
    """Default limits of every session container; a session's config may override them."""

    model_config = ConfigDict(extra="forbid")

    memory: str = "1g"
    """Memory limit, e.g. ``512m`` or ``2g``; the container is OOM-killed beyond it."""
    cpus: float = Field(default=1.0, ge=MIN_CPUS, le=256)
    """CPU share in cores (fractions allowed)."""
    pids: int = Field(default=512, ge=16, le=1_000_000)
    """Most processes and threads the container may hold at once."""
    disk: str = "2g"
    """Disk quota of the session's writable directories, e.g. ``512m``; writes past it
    fail inside the session with "No space left on device"."""

    @field_validator("memory", "disk")
    @classmethod
    def _is_a_size(cls, value: str) -> str:
        parse_memory(value)
        return value


def _host_cores() -> float:
    return float(os.cpu_count() or 1)


class Ceilings(BaseModel):
    """The most a caller may ask for in a session's config; the operator sets them.

    A session config over a ceiling is refused with 1002 naming the field and the
    ceiling, before anything reaches Docker. The server's own defaults (`limits`)
    must fit under them too.
    """

    model_config = ConfigDict(extra="forbid")

    memory: str = "8g"
    """Largest memory limit a session may ask for."""
    cpus: float = Field(default_factory=_host_cores, ge=MIN_CPUS, le=1024)
    """Most CPU cores a session may ask for (default: the host's cores)."""
    pids: int = Field(default=4096, ge=16, le=1_000_000)
    """Most processes and threads a session may ask for."""
    disk: str = "10g"
    """Largest disk quota a session may ask for."""
    allow_network: bool = False
    """Whether callers may ask for ``network: true``; off, no session reaches any
    network (``SANDBOX_CEILINGS__ALLOW_NETWORK=true`` turns it on)."""

    @field_validator("memory", "disk")
    @classmethod
    def _is_a_size(cls, value: str) -> str:
        parse_memory(value)
        return value

    def violation(self, limits: ResourceLimits) -> tuple[str, str] | None:
        """The first of `limits` over its ceiling, as (field, message), else None."""
        checks = (
            ("memory", parse_memory(limits.memory) > parse_memory(self.memory), self.memory),
            ("cpus", limits.cpus > self.cpus, f"{self.cpus:g}"),
            ("pids", limits.pids > self.pids, str(self.pids)),
            ("disk", parse_memory(limits.disk) > parse_memory(self.disk), self.disk),
        )
        for name, over, ceiling in checks:
            if over:
                asked = getattr(limits, name)
                return name, (
                    f"{asked!r} is over the server's ceiling of {ceiling} (setting ceilings.{name})"
                )
        return None


def _default_pid_budget() -> int:
    """Half the host's ``pid_max``: the rest stays for the host and its other users."""
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        pid_max = 32768  # the kernel's default where /proc is not Linux's
    return max(pid_max // 2, 16)


def host_memory_bytes() -> int | None:
    """The host's MemTotal (from /proc/meminfo), or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


MEMORY_OVERCOMMIT = 4
"""How many times the host's usable memory the default `memory_budget` lets limits add
up to. Limits are ceilings that sessions rarely reach together (a disk quota is RAM
only once written); 1 (``memory_budget`` = the usable memory) is no overcommit."""


def default_memory_budget(total: int | None, one_session: int) -> int:
    """`MEMORY_OVERCOMMIT` times MemTotal less a reserve (the larger of 2 GiB and 10%).

    Never below `one_session` (one session at the default limits), so a small
    host still runs one session; where MemTotal is unknown, 16 GiB is assumed.
    """
    total = total if total is not None else 16 * 1024**3
    usable = total - max(2 * 1024**3, total // 10)
    return max(MEMORY_OVERCOMMIT * usable, one_session)


class RagSettings(BaseModel):
    """The shared retrieval service (``rag`` sessions)."""

    model_config = ConfigDict(extra="forbid")

    corpus: Path | None = None
    """JSONL corpus (``{"id", "title", "text"}`` per line) of the shared default
    collection, mounted read-only; none means the demo corpus built into the image."""
    volume: str = ""
    """Docker volume holding the index; empty means ``sandbox-rag-<server_id>``."""
    limits: ResourceLimits = Field(
        default_factory=lambda: ResourceLimits(
            memory="2g", cpus=float(os.cpu_count() or 1), pids=1024
        )
    )
    """Limits of the service container, which serves every rag session at once
    (default: all the host's cores)."""
    session_max_bytes: int = Field(default=256 << 20, ge=1)
    """UTF-8 bytes of titles and texts one session's private collection may hold,
    each passage also counting its vector (1 KiB; dense search holds it in memory)
    (default 256 MiB); `rag:index` past it is refused (1002, field documents)."""
    index_max_documents: int = Field(default=100_000, ge=1, le=100_000)
    """Documents one `rag:index` call may carry (default and maximum 100,000)."""
    response_max_chars: int = Field(default=8_000_000, ge=1)
    """Characters of titles and texts one `rag:search` / `rag:batch_search` reply
    may carry; hits past it are cut and say so (default 8,000,000)."""

    @field_validator("corpus")
    @classmethod
    def _corpus_is_a_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            value = value.expanduser().resolve()
            if not value.is_file():
                raise ValueError(f"rag corpus {value} is not a file")
        return value


class PoolSettings(BaseModel):
    """A warm pool: started, healthy containers of one resource type and config."""

    model_config = ConfigDict(extra="forbid")

    resource: str
    """Resource type of the pool (``bash``, ``code``, ``vm``)."""
    size: int = Field(ge=0, le=256)
    """How many ready containers the pool keeps."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Session config the containers are made for; only sessions asking for the same
    (after defaults are filled in) are served from this pool."""


class SwarmSettings(BaseModel):
    """The Docker Swarm runtime (``runtime: swarm``): sessions as one-replica services."""

    model_config = ConfigDict(extra="forbid")

    session_network: str = Field(default="sandbox-swarm-sessions", min_length=1)
    """With `relay` off only (the server on the overlays itself, which cannot join an
    overlay per session): the attachable overlay network every session with network
    shares (egress through each node's ``docker_gwbridge``), created when missing.
    Through the relay, each session has an overlay of its own instead."""
    internal_network: str = Field(default="sandbox-swarm-agents", min_length=1)
    """With `relay` off only: the attachable, internal overlay every session without
    network shares (no egress). Through the relay, each has its own."""
    session_subnet: str = ""
    """With `relay` off only: subnet (CIDR) to create `session_network` with, e.g.
    ``10.20.0.0/18`` (16,382 addresses, one per session with network); empty: Swarm's
    default pool gives a /24, room for ~250. Used only when the server creates the
    network. (A session's own overlay gets a /24 of Swarm's default pool.)"""
    internal_subnet: str = ""
    """With `relay` off only: subnet (CIDR) to create `internal_network` with, as
    `session_subnet` (sessions without network, and the rag service)."""
    encrypted: bool = False
    """Create the overlay networks with IPsec encryption between nodes
    (``--opt encrypted``); costs CPU on every packet that crosses nodes."""
    relay: bool = True
    """Reach the agents through a relay container on the manager: joined to each
    session's own overlay network, published on 127.0.0.1 only, and opened by a
    per-server secret. Turn it off when the server itself runs on the overlay
    networks (``docker stack deploy``): it then connects to the agents directly,
    and the sessions share the two overlays above."""
    relay_image: str = ""
    """Image of the relay (any with ``python3``); empty: ``<image_namespace>/shell:latest``."""
    reservation_fraction: float = Field(default=0.1, ge=0.0, le=1.0)
    """Part of a session's cpus and memory (memory plus disk quota) reserved on its
    node: the scheduler places a service only where its reservation fits. 1 reserves
    the whole limit (no overcommit), 0 nothing."""
    placement: dict[str, list[str]] = Field(default_factory=dict)
    """Placement constraints per resource type, e.g. ``{vm: ["node.labels.sandbox.vm
    == true"]}``, to pin a type to the nodes labelled for it."""
    schedule_timeout_s: float = Field(default=15.0, gt=0)
    """How long a new service may wait for a node with room; past it the start
    fails with 1003 (the cluster is full) instead of staying pending."""
    registry: str = Field(
        default="", pattern=r"^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?)?$"
    )
    """Registry (``host:port``) every node pulls the session images from, filled by
    ``sandbox images build --push REGISTRY``: services run ``<registry>/<image>``
    (pinned to the digest the manager pushed, when it knows it). Empty: services run
    the manager's image id, which must be loaded into every node."""

    @field_validator("session_subnet", "internal_subnet")
    @classmethod
    def _a_subnet(cls, value: str) -> str:
        if value:
            try:
                network = ipaddress.ip_network(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a subnet like '10.20.0.0/18'") from None
            if network.num_addresses < 8:
                raise ValueError(f"{value!r} is too small for an overlay network")
        return value


def _default_screen_recording_dir() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "sandbox" / "screen-recordings"


class ScreenRecordingSettings(BaseModel):
    """Videos of ``vm`` sessions' screens (``vm:start_recording``, a session's
    ``recording: true``), kept by the server after the session ends."""

    model_config = ConfigDict(extra="forbid")

    dir: Path = Field(default_factory=_default_screen_recording_dir)
    """Where the videos are kept (``<recording id>.mp4`` and its ``.json``); AgentFlow's
    ``recording_path``. Put it on a volume to keep videos past the server."""
    fps: float = Field(default=DEFAULT_FPS, ge=1, le=MAX_FPS)
    """Frames per second of a recording when its call does not say."""
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1 << 20)
    """Largest video of one recording: ffmpeg stops there, and the server copies at
    most this (plus 1 MiB of slack) out of the container."""
    max_seconds: float = Field(default=DEFAULT_MAX_SECONDS, gt=0)
    """Longest one recording runs; it stops then."""
    copy_timeout_s: float = Field(default=120.0, gt=0)
    """Longest copying one video out of its container may take; past it the part
    copied is kept (``complete: false``)."""
    total_max_bytes: int = Field(default=20 * 1024**3, ge=0)
    """Most bytes of videos kept; past it the oldest are deleted."""
    max_age_s: float = Field(default=7 * 86400.0, gt=0)
    """Videos stopped longer ago than this are deleted (as trajectories are)."""


class LiveViewSettings(BaseModel):
    """The ``/ui`` page's live view of ``vm`` sessions: noVNC over a WebSocket
    (``/ui/vnc/{session_id}``), else refreshed screenshots."""

    model_config = ConfigDict(extra="forbid")

    vnc: bool = True
    """Offer the noVNC view (an x11vnc started in the session per viewer); off:
    refreshed screenshots only."""
    novnc_dir: Path = Path("/usr/share/novnc")
    """Where Debian's ``novnc`` package put noVNC (served at ``/ui/novnc/``);
    without it there the page shows refreshed screenshots."""
    viewers_per_session: int = Field(default=2, ge=1, le=MAX_VIEWERS)
    """Most noVNC viewers of one session at once (its agent allows at most
    `MAX_VIEWERS`, 4)."""
    viewers: int = Field(default=16, ge=1)
    """Most noVNC viewers of all sessions at once."""
    max_seconds: float = Field(default=3600.0, gt=0, le=MAX_VIEW_SECONDS)
    """Longest one noVNC view lasts; the page connects again after it."""
    control_grant_s: float = Field(default=60.0, gt=0, le=3600)
    """How long a grant of control (``POST /ui/control/{session_id}``) may wait
    to be used to open a view that sends input."""


def _default_images_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "images"


def _default_recording_dir() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "sandbox" / "recordings"


class Settings(BaseSettings):
    """Everything the server can be told; each field is also ``SANDBOX_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="SANDBOX_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    host: str = "127.0.0.1"
    """Address the API listens on; keep 127.0.0.1 unless an API key is set."""
    port: int = Field(default=18890, ge=1, le=65535)
    """Port the API listens on."""
    server_id: str = ""
    """Stamped on every container as ``sandbox.server``; a restarted server with the
    same id adopts them. Empty means ``<hostname>-<port>``."""
    api_key: SecretStr | None = None
    """When set, every endpoint but /health needs ``Authorization: Bearer <key>``; the
    key's tenant is ``default``."""
    api_keys: dict[str, SecretStr] = Field(default_factory=dict)
    """More API keys, one per tenant: ``{tenant name: key}``. A tenant sees and
    touches only its own workers' sessions; two tenants may use the same worker id."""
    admin_tenants: list[str] = Field(default_factory=lambda: [DEFAULT_TENANT])
    """Tenants allowed the operator's endpoints: ``/shutdown`` (which destroys every
    tenant's sessions) and ``/warmup`` with ``pool_size`` (pools serve everyone).
    Default: ``default``, the tenant of `api_key` and of every caller when no key
    is configured. Other tenants get 403 (code 1002, field ``Authorization``)."""
    insecure: bool = False
    """Allow ``sandbox serve`` to listen on a non-loopback address without any API
    key (``--insecure``); only where a firewall or a loopback-only port mapping
    keeps everyone else out."""
    config_file: Path | None = None
    """Profile file (JSON or YAML) these settings were read from."""

    session_ttl_s: float = Field(default=600.0, gt=0)
    """Idle seconds after which a session is destroyed; every call pushes it."""
    sweep_interval_s: float = Field(default=5.0, gt=0)
    """How often expired sessions are looked for."""
    default_timeout_s: float = Field(default=30.0, gt=0)
    """Timeout of a tool call that names none (below the client's 60 s HTTP timeout;
    longer calls pass ``timeout`` and the client waits accordingly)."""
    unknown_params: Literal["warn", "error"] = "warn"
    """A tool parameter the tool does not declare: ``warn`` ignores it and names it
    in the answer's ``meta.warnings`` (AgentFlow's pipelines add per-task values
    such as ``seed_path`` to every call); ``error`` refuses the call with 1002."""
    container_start_timeout_s: float = Field(default=60.0, gt=0)
    """How long a new container's agent may take to answer before the start fails."""
    keep_sessions_on_shutdown: bool = False
    """Leave session containers running at shutdown so the next start adopts them."""
    output_limit_bytes: int = Field(default=1_048_576, ge=1024)
    """Most bytes of stdout (and of stderr) a call returns; the rest is cut and flagged."""
    agent_reply_max_bytes: int = Field(default=64 * 1024**2, ge=64 * 1024)
    """Largest reply read from a container's agent; a larger one fails the call (2001).
    The default holds a 4K screenshot as base64 PNG (~33 MB at worst) or stdout and
    stderr at `output_limit_bytes` each even when JSON escaping inflates them 6x."""
    recovery_timeout_s: float = Field(default=10.0, gt=0)
    """At start, how long one container of an earlier run may take to say what it is;
    one that takes longer (a hung agent) is removed instead of adopted."""

    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    """Default container limits."""
    rag: RagSettings = Field(default_factory=RagSettings)
    """The shared retrieval service."""
    resource_types: list[str] | None = None
    """Resource types this server offers, e.g. ``[vm, rag]``; None (the default) is
    every one it has. A type left out has no sessions and no tools."""
    session_defaults: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Default session config per resource type, e.g. ``{vm: {screen_size: [1920,
    1080]}}``; a session's own config overrides it key by key."""
    warmup: list[str] = Field(default_factory=list)
    """Resource types warmed up once the server listens, as ``POST /warmup`` does:
    images built, shared services (``rag``) started. ``serve --warmup`` overrides it."""
    pools: list[PoolSettings] = Field(default_factory=list)
    """Warm pools filled at start, e.g. ``[{resource: vm, size: 4}]``; `/warmup` can
    set more (its ``pool_size``)."""
    pool_refill_concurrency: int = Field(default=2, ge=1, le=64)
    """Most pool containers starting at once, so refills never starve running sessions."""
    max_containers: int = Field(default=512, ge=1)
    """Most containers the server runs at once: sessions, pool members and services."""
    max_sessions_per_worker: int = Field(default=16, ge=1)
    """Most sessions one worker may hold at once."""
    ceilings: Ceilings = Field(default_factory=Ceilings)
    """The most a caller may ask for in a session config (memory, cpus, pids, disk,
    network)."""
    pid_budget: int = Field(default_factory=_default_pid_budget, ge=16)
    """Most pids the limits of all this server's containers may add up to, so that
    together they cannot exhaust the host (default: half of ``pid_max``)."""
    memory_budget: str = ""
    """Most memory (e.g. ``20g``) the memory limits of all this server's containers may
    add up to: sessions (memory plus disk, as tmpfs is RAM), pool members and shared
    services. Past it a cold start is 1003 and pools stop filling. Empty means 4 times
    the host's MemTotal less the larger of 2 GiB and 10% (at least one default
    session): limits overcommitted 4 to 1; set the usable RAM for no overcommit."""
    batch_concurrency: int = Field(default=8, ge=1, le=256)
    """Most actions of one parallel ``/execute/batch`` running at once."""
    batch_max_response_bytes: int = Field(default=32 * 1024**2, ge=1024)
    """Most bytes of results one batch returns; results past it are errors saying so."""

    image_namespace: str = "sandbox"
    """Images are tagged ``<namespace>/<name>:latest`` (``sandbox/shell:latest``)."""
    images_dir: Path = Field(default_factory=_default_images_dir)
    """Directory holding ``<name>/Dockerfile`` for every image."""
    socket_dir: Path = Path("/tmp/sandbox-agents")
    """Host directory for the Unix sockets through which the server reaches every
    agent (one subdirectory per container, with or without network). A server
    running in a container must see it at the same path as the host does."""
    session_network: str = Field(default="sandbox-sessions", min_length=1)
    """Docker bridge network that sessions with network join: egress only, created
    when missing with inter-container traffic off, so sessions cannot reach each
    other; the server never joins it (it reaches every agent through its socket)."""
    runtime: Literal["docker", "swarm"] = "docker"
    """Where session containers run: ``docker``, this host's engine (containers,
    agents over Unix sockets); ``swarm``, one-replica services on the nodes of the
    Docker Swarm this host's engine manages (agents over overlay networks; see
    `swarm`)."""
    swarm: SwarmSettings = Field(default_factory=SwarmSettings)
    """The swarm runtime's networks, relay, reservations and placement."""
    docker_threads: int = Field(default=32, ge=1, le=512)
    """Threads that run blocking Docker SDK calls."""

    dedup_ttl_s: float = Field(default=600.0, gt=0)
    """How long a finished request's response is kept for retries with its X-Request-ID."""
    dedup_max_bytes: int = Field(default=64 * 1024**2, ge=0)
    """Most bytes of responses kept for de-duplication; past it, the oldest finished
    ones go, and a response that would not fit is not kept."""
    dedup_max_entries: int = Field(default=4096, ge=0)
    """Most request ids remembered, running ones included (one caller's running ones
    at most half); past it, new requests run without de-duplication."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Server log level."""
    log_format: Literal["json", "text"] = "json"
    """``json``: one JSON object per line (time, level, logger, message, and the
    request's trace_id, worker and session); ``text``: one readable line each."""
    max_body_bytes: int = Field(default=64 * 1024**2, ge=1024)
    """Largest request body accepted; a larger one is answered 413 (code 1002, field
    ``body``) before it is read. Screenshots and ``rag:index`` batches are large."""

    recording: bool = False
    """Record every tool call of every session (a session's config ``record``
    overrides it either way): worker, session, tool, params (secrets redacted),
    result, timings and trace id, readable at ``/trajectories``."""
    recording_dir: Path = Field(default_factory=_default_recording_dir)
    """Directory of the recordings: an SQLite database (WAL mode) and the images as
    content-addressed files. Put it on a volume to keep recordings past the server."""
    recording_max_age_s: float = Field(default=7 * 86400.0, gt=0)
    """Trajectories not added to for this long are deleted (checked every minute)."""
    recording_max_bytes: int = Field(default=10 * 1024**3, ge=0)
    """Most bytes of recordings (steps and images); past it the least recently
    added-to trajectories are deleted."""
    screen_recording: ScreenRecordingSettings = Field(default_factory=ScreenRecordingSettings)
    """Screen videos of ``vm`` sessions (``SANDBOX_SCREEN_RECORDING__FPS=10``)."""
    live_view: LiveViewSettings = Field(default_factory=LiveViewSettings)
    """The ``/ui`` live view (``SANDBOX_LIVE_VIEW__VNC=false`` for screenshots only)."""
    recording_redact_keys: list[str] = Field(
        default_factory=lambda: ["password", "token", "api_key", "secret"]
    )
    """Params whose name is one of these, or starts or ends with one as a
    ``_``-separated part (``API_TOKEN``, ``db_password``), are stored as
    ``[redacted]``, at any depth (``env`` of ``bash:run`` too)."""

    @field_validator("memory_budget", mode="before")
    @classmethod
    def _budget_is_a_size(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # a byte count, as a profile may write it
        if isinstance(value, str) and value:
            parse_memory(value)
        return value

    @model_validator(mode="after")
    def _fill_server_id(self) -> Settings:
        if not self.server_id:
            self.server_id = f"{socket.gethostname()}-{self.port}"
        if not self.rag.volume:
            self.rag.volume = f"sandbox-rag-{_UNSAFE_NAME.sub('-', self.server_id)}"
        return self

    @model_validator(mode="after")
    def _limits_within_ceilings(self) -> Settings:
        violation = self.ceilings.violation(self.limits)
        if violation is not None:
            name, message = violation
            raise ValueError(f"limits.{name}: the default {message}")
        one_session = self.default_session_memory()
        if not self.memory_budget:
            self.memory_budget = str(default_memory_budget(host_memory_bytes(), one_session))
        elif self.memory_budget_bytes() < one_session:
            raise ValueError(
                f"memory_budget: {self.memory_budget} is below one session's default memory "
                f"plus disk ({one_session} bytes); no session could start"
            )
        if self.limits.pids > self.pid_budget:
            raise ValueError(
                f"pid_budget: {self.pid_budget} is below one session's default pids "
                f"({self.limits.pids}); no session could start"
            )
        return self

    @model_validator(mode="after")
    def _tenants_are_distinct(self) -> Settings:
        names = set(self.api_keys)
        if self.api_key is not None and DEFAULT_TENANT in names:
            raise ValueError(
                f"api_keys: {DEFAULT_TENANT!r} is api_key's tenant; name this key otherwise"
            )
        for name in names:
            if not _TENANT_NAME.fullmatch(name):
                raise ValueError(f"api_keys: tenant name {name!r} must be 1-64 of [A-Za-z0-9_.-]")
        for name in self.admin_tenants:
            if not _TENANT_NAME.fullmatch(name):
                raise ValueError(
                    f"admin_tenants: tenant name {name!r} must be 1-64 of [A-Za-z0-9_.-]"
                )
        keys = [key.get_secret_value() for key in self.tenant_keys().values()]
        if not all(keys):
            raise ValueError("api_keys: a key may not be empty")
        if len(set(keys)) != len(keys):
            raise ValueError("api_keys: two tenants share one key; give each its own")
        return self

    @model_validator(mode="after")
    def _resource_types_are_known(self) -> Settings:
        from .backends import RESOURCE_TYPES  # here: the backends import this module

        known = {resource.name: resource for resource in RESOURCE_TYPES}
        offered = self.resource_types if self.resource_types is not None else list(known)
        named = {
            "resource_types": self.resource_types or [],
            "warmup": self.warmup,
            "session_defaults": list(self.session_defaults),
            "pools": [pool.resource for pool in self.pools],
        }
        for field, names in named.items():
            unknown = [name for name in names if name not in known]
            if unknown:
                raise ValueError(
                    f"{field}: unknown resource type(s) {', '.join(unknown)}; "
                    f"known: {', '.join(sorted(known))}"
                )
        for field in ("warmup", "pools"):
            not_offered = [name for name in named[field] if name not in offered]
            if not_offered:
                raise ValueError(f"{field}: {', '.join(not_offered)} not among resource_types")
        for name, defaults in self.session_defaults.items():
            self.session_defaults[name] = _session_defaults(self, known[name], defaults)
        return self

    def memory_budget_bytes(self) -> int:
        """`memory_budget` in bytes."""
        return parse_memory(self.memory_budget)

    def default_session_memory(self) -> int:
        """The memory cgroup limit of a session at the default limits (memory + disk)."""
        return parse_memory(self.limits.memory) + parse_memory(self.limits.disk)

    def tenant_keys(self) -> dict[str, SecretStr]:
        """Every API key by tenant name; `api_key` is tenant ``default``."""
        keys = dict(self.api_keys)
        if self.api_key is not None:
            keys[DEFAULT_TENANT] = self.api_key
        return keys

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ProfileSource(settings_cls, init_settings))


def _session_defaults(
    settings: Settings, resource: ResourceType, defaults: dict[str, Any]
) -> dict[str, Any]:
    """`defaults` checked as `resource`'s session config and under the ceilings, normalised.

    Checked here, at start, so that a bad default fails the server once rather
    than every session create with a 1002 naming a field the caller never sent.
    """
    where = f"session_defaults.{resource.name}"
    try:
        config = resource.config_model.model_validate(defaults)
        config.enforce_ceilings(settings.ceilings, settings.limits, resource.default_network)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = f"{where}.{error['loc'][0]}" if error["loc"] else where
        raise ValueError(f"{field}: {error['msg'].removeprefix('Value error, ')}") from None
    except InvalidParams as exc:
        raise ValueError(f"{where}: {exc.message}") from None
    dumped: dict[str, Any] = config.model_dump(mode="json", exclude_unset=True)
    return dumped


class _ProfileSource(PydanticBaseSettingsSource):
    """Reads the profile file named by ``config_file`` (keyword or environment)."""

    def __init__(self, settings_cls: type[BaseSettings], init: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._init = init

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole mapping

    def __call__(self) -> dict[str, Any]:
        path = self._init().get("config_file") or os.environ.get("SANDBOX_CONFIG_FILE")
        if not path:
            return {}
        return read_profile(Path(path)).values
