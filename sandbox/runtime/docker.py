"""The one place that talks to Docker.

`DockerRuntime` wraps `docker.DockerClient`: it runs every blocking SDK call in a
bounded thread pool (so the event loop never waits on Docker), stamps labels on
what it creates, and turns `docker` and `requests` exceptions into `BackendError`
here and nowhere else.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions

from ..errors import BackendError
from .agent_http import TcpConnect
from .base import (
    AGENT_CAPABILITIES,
    AGENT_SOCKET_DIR,
    AGENT_SOCKET_ENV,
    AGENT_TOKEN_FILE,
    AGENT_TOKEN_FILE_ENV,
    LABEL_AUTO,
    LABEL_CONFIG,
    LABEL_CREATED,
    LABEL_IMAGE,
    LABEL_MANAGED,
    LABEL_NAME,
    LABEL_POOL,
    LABEL_RESOURCE,
    LABEL_SERVER,
    LABEL_SERVICE,
    LABEL_SESSION,
    LABEL_TOKEN,
    LABEL_UID,
    LABEL_WORKER,
    SESSION_NETWORK_OPTIONS,
    AgentTransport,
    BuildContext,
    ContainerRecord,
    ContainerSpec,
    DockerUnavailable,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


class DockerRuntime:
    """Async facade over the blocking Docker SDK: the `Runtime` of one engine.

    Agents are reached over Unix sockets in host directories (`agent_transport`
    ``unix``), so every spec mounts one at `AGENT_SOCKET_DIR`.

    Args:
        threads: Size of the pool that runs SDK calls.
        session_network: The bridge network containers with network join, created
            when missing with inter-container traffic off; the server never joins it.
        client_factory: Builds the `docker.DockerClient`; tests may inject one.
    """

    def __init__(
        self,
        *,
        threads: int = 32,
        session_network: str = "sandbox-sessions",
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="docker")
        self._session_network = session_network
        self._network_ready = False
        self._client_factory = client_factory or functools.partial(
            docker.from_env, timeout=120, max_pool_size=threads
        )
        self._client: Any = None

    @property
    def agent_transport(self) -> AgentTransport:
        """Unix sockets in host directories: see `sockets`."""
        return "unix"

    def agent_network(self) -> TcpConnect | None:
        """None: no agent is reached over TCP."""
        return None

    # -- plumbing -------------------------------------------------------------

    def _docker(self) -> Any:
        if self._client is None:
            try:
                self._client = self._client_factory()
            except docker.errors.DockerException as exc:
                raise DockerUnavailable(f"cannot reach the Docker engine: {exc}") from exc
        return self._client

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(_translated, fn, *args, **kwargs)
        return await loop.run_in_executor(self._pool, call)

    def close(self) -> None:
        """Release the SDK client and the thread pool."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- engine ---------------------------------------------------------------

    async def ping(self, timeout: float = 5.0) -> bool:
        """Whether the engine answers within `timeout` seconds."""
        try:
            return await asyncio.wait_for(self._run(lambda: bool(self._docker().ping())), timeout)
        except (BackendError, TimeoutError):
            return False

    async def engine_version(self) -> str:
        """The engine's version string."""
        return await self._run(lambda: str(self._docker().version().get("Version", "?")))

    # -- containers -------------------------------------------------------------

    async def start(self, spec: ContainerSpec) -> ContainerRecord:
        """Create and start a container; on any failure nothing is left behind."""
        if spec.network and not self._network_ready:
            await self._run(self._ensure_network_blocking, self._session_network)
            self._network_ready = True
        return await self._run(self._start_blocking, spec)

    def _ensure_network_blocking(self, name: str) -> None:
        client = self._docker()
        # The name filter matches substrings: compare names exactly.
        found = [network for network in client.networks.list(names=[name]) if network.name == name]
        if not found:
            try:
                client.networks.create(
                    name,
                    driver="bridge",
                    options=SESSION_NETWORK_OPTIONS,
                    labels={LABEL_MANAGED: "1"},
                )
                return
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # created meanwhile by someone else
                    raise
            found = [client.networks.get(name)]
        options = (found[0].attrs or {}).get("Options") or {}
        if any(options.get(key) != value for key, value in SESSION_NETWORK_OPTIONS.items()):
            # A network made by someone else would let sessions reach each other
            # (or whatever else is on it): refuse rather than join.
            raise BackendError(
                f"the Docker network {name!r} exists without "
                "com.docker.network.bridge.enable_icc=false; remove it or name another "
                "(SANDBOX_SESSION_NETWORK)"
            )

    def _start_blocking(self, spec: ContainerSpec) -> ContainerRecord:
        client = self._docker()
        kwargs: dict[str, Any] = {
            "name": spec.name,
            "command": spec.command,
            "detach": True,
            "labels": spec.labels,
            "environment": spec.environment,
            "mem_limit": spec.memory_bytes,
            "memswap_limit": spec.memory_bytes,  # no swap: the limit is the limit
            "nano_cpus": spec.nano_cpus,
            "pids_limit": spec.pids_limit,
            "cap_drop": ["ALL"],
            "cap_add": list(spec.capabilities) or None,
            "security_opt": ["no-new-privileges"],
            "init": True,
            "read_only": spec.read_only,
            "tmpfs": spec.tmpfs or None,
            "volumes": spec.volumes or None,
            "shm_size": spec.shm_size,
        }
        if spec.network:
            kwargs["network"] = self._session_network
        else:
            kwargs["network_mode"] = "none"
        if spec.token is not None:
            _write_token(_socket_directory(spec), spec.token)
        container = client.containers.create(spec.image, **kwargs)
        try:
            container.start()
            container.reload()
        except BaseException:
            _remove_quietly(container)
            raise
        return _record(container.attrs)

    async def remove(self, container_id: str) -> None:
        """Kill and remove a container; a container that is already gone is fine."""
        await self._run(self._remove_blocking, container_id)

    def _remove_blocking(self, container_id: str) -> None:
        try:
            self._docker().api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise

    async def inspect(self, container_id: str) -> ContainerRecord | None:
        """The container's current record, or None when it no longer exists."""

        def blocking() -> ContainerRecord | None:
            try:
                attrs = self._docker().api.inspect_container(container_id)
            except docker.errors.NotFound:
                return None
            return _record(attrs)

        return await self._run(blocking)

    async def find(self, labels: dict[str, str]) -> list[ContainerRecord]:
        """Every container (running or not) carrying all of `labels`."""

        def blocking() -> list[ContainerRecord]:
            api = self._docker().api
            wanted = [f"{key}={value}" for key, value in labels.items()]
            found = []
            for summary in api.containers(all=True, filters={"label": wanted}):
                try:
                    found.append(_record(api.inspect_container(summary["Id"])))
                except docker.errors.NotFound:
                    continue  # removed between the list and the inspect
            return found

        return await self._run(blocking)

    async def logs_tail(self, container_id: str, lines: int = 20) -> str:
        """The container's last log lines (stdout and stderr), or '' if unavailable."""

        def blocking() -> str:
            try:
                raw = self._docker().api.logs(container_id, tail=lines)
            except docker.errors.NotFound:
                return ""
            return bytes(raw).decode("utf-8", "replace").strip()

        try:
            return await self._run(blocking)
        except BackendError:
            return ""

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        """Create the named volume `name` with `labels` unless it exists."""

        def blocking() -> None:
            client = self._docker()
            try:
                client.volumes.get(name)
            except docker.errors.NotFound:
                client.volumes.create(name=name, labels=labels)

        await self._run(blocking)

    # -- images -----------------------------------------------------------------

    async def image_exists(self, image: str) -> bool:
        """Whether `image` is present locally."""

        def blocking() -> bool:
            try:
                self._docker().api.inspect_image(image)
            except docker.errors.ImageNotFound:
                return False
            return True

        return await self._run(blocking)

    async def build_image(
        self,
        tag: str,
        context: BuildContext,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        """Build `tag` from `context`, reporting each output line to `on_progress`."""

        def blocking() -> None:
            stream = self._docker().api.build(
                fileobj=context.tar(),
                custom_context=True,
                dockerfile=context.dockerfile,
                tag=tag,
                rm=True,
                forcerm=True,
                decode=True,
                labels={LABEL_IMAGE: tag},
                buildargs=context.buildargs or None,
            )
            tail: list[str] = []
            for chunk in _build_lines(stream):
                tail = [*tail[-19:], chunk]
                if on_progress is not None:
                    on_progress(chunk)
            if not self._image_present(tag):
                raise BackendError(f"building {tag} failed:\n" + "\n".join(tail))

        await self._run(blocking)

    async def push_image(
        self, image: str, registry: str, on_progress: Callable[[str], None] | None = None
    ) -> str:
        """Tag `image` as ``<registry>/<image>`` and push it there; returns that reference.

        Raises:
            BackendError: The image is missing or the registry refused or was unreachable.
        """

        def blocking() -> str:
            api = self._docker().api
            reference = f"{registry}/{image}"
            repository, _, tag = reference.rpartition(":")
            try:
                api.tag(image, repository, tag)
                stream = api.push(repository, tag=tag, stream=True, decode=True)
                for event in stream:
                    if event.get("error"):
                        raise BackendError(f"pushing {reference} failed: {event['error']}")
                    if on_progress is not None and event.get("status") and not event.get("id"):
                        on_progress(str(event["status"]))
            except docker.errors.APIError as error:
                raise BackendError(f"pushing {reference} failed: {error.explanation}") from error
            return reference

        return await self._run(blocking)

    def _image_present(self, tag: str) -> bool:
        try:
            self._docker().api.inspect_image(tag)
        except docker.errors.ImageNotFound:
            return False
        return True


def _socket_directory(spec: ContainerSpec) -> Path:
    """The host directory `spec` mounts at `AGENT_SOCKET_DIR`."""
    for source, mount in spec.volumes.items():
        if mount.get("bind") == AGENT_SOCKET_DIR:
            return Path(source)
    raise BackendError(f"container {spec.name} has no agent socket directory to reach it by")


def _write_token(directory: Path, token: str) -> None:
    """Put the token where the agent reads it at start.

    Readable by all (0644): the agent may be a capability-less root or uid 1000,
    neither able to read another owner's private file; what guards the token is
    the way to it (the server's 0700 directory on the host, root's 0700
    ``/run/sandbox`` in the container).
    """
    path = directory / os.path.basename(AGENT_TOKEN_FILE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.fchmod(fd, 0o644)  # whatever the umask
        os.write(fd, token.encode())
    finally:
        os.close(fd)


def _build_lines(stream: Iterator[dict[str, Any]]) -> Iterator[str]:
    for chunk in stream:
        if "error" in chunk:
            raise BackendError(f"image build failed: {str(chunk['error']).strip()}")
        text = str(chunk.get("stream", "")).strip()
        if text:
            yield text


def _translated(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run an SDK call, turning its exceptions into this package's errors."""
    try:
        return fn(*args, **kwargs)
    except BackendError:
        raise
    except docker.errors.ImageNotFound as exc:
        raise BackendError(
            f"image not found: {exc.explanation}; build it with `sandbox images build`"
        ) from exc
    except docker.errors.APIError as exc:
        raise BackendError(f"Docker refused: {exc.explanation or exc}") from exc
    except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
        raise DockerUnavailable(f"cannot reach the Docker engine: {exc}") from exc
    except requests.exceptions.RequestException as exc:
        raise DockerUnavailable(f"Docker engine did not answer: {exc}") from exc


def _remove_quietly(container: Any) -> None:
    try:
        container.remove(force=True, v=True)
    except Exception:  # the start already failed; report that, not this
        log.warning("could not remove failed container %s", container.id, exc_info=True)


def _record(attrs: dict[str, Any]) -> ContainerRecord:
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    status = str(state.get("Status", "unknown"))
    return ContainerRecord(
        id=str(attrs["Id"]),
        name=str(attrs.get("Name", "")).lstrip("/"),
        labels=dict(config.get("Labels") or {}),
        status=status,
        exit_code=None if status in ("running", "created") else state.get("ExitCode"),
        oom_killed=bool(state.get("OOMKilled")),
        agent_url=_agent_url(attrs),
    )


def _agent_url(attrs: dict[str, Any]) -> str | None:
    """Where the agent answers: the socket in its mounted socket directory, if any.

    Never an address on a network: a container without the mount is not one the
    server can (or would) talk to.
    """
    for mount in attrs.get("Mounts") or []:
        if mount.get("Destination") == AGENT_SOCKET_DIR and mount.get("Source"):
            return f"unix://{mount['Source']}/agent.sock"
    return None


# The shared types live in `base`; they are named here too, as before the split.
__all__ = [
    "AGENT_CAPABILITIES",
    "AGENT_SOCKET_DIR",
    "AGENT_SOCKET_ENV",
    "AGENT_TOKEN_FILE",
    "AGENT_TOKEN_FILE_ENV",
    "LABEL_AUTO",
    "LABEL_CONFIG",
    "LABEL_CREATED",
    "LABEL_IMAGE",
    "LABEL_MANAGED",
    "LABEL_NAME",
    "LABEL_POOL",
    "LABEL_RESOURCE",
    "LABEL_SERVER",
    "LABEL_SERVICE",
    "LABEL_SESSION",
    "LABEL_TOKEN",
    "LABEL_UID",
    "LABEL_WORKER",
    "SESSION_NETWORK_OPTIONS",
    "AgentTransport",
    "BuildContext",
    "ContainerRecord",
    "ContainerSpec",
    "DockerRuntime",
    "DockerUnavailable",
]
