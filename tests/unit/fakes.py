"""In-memory stand-ins for Docker and the agents, for unit tests only.

They subclass the real classes so a changed signature breaks these tests too.
Integration tests use the real engine.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from sandbox.errors import BackendError, SandboxTimeout
from sandbox.runtime.agent import AgentClient, AgentNotReady, AgentUnreachable
from sandbox.runtime.docker import (
    AGENT_SOCKET_DIR,
    BuildContext,
    ContainerRecord,
    ContainerSpec,
    DockerRuntime,
    DockerUnavailable,
)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class FakeRuntime(DockerRuntime):
    """Containers as records in a dict; `gates` hold a worker's start until set."""

    def __init__(self) -> None:
        super().__init__(threads=1)
        self.containers: dict[str, ContainerRecord] = {}
        self.specs: dict[str, ContainerSpec] = {}
        self.gates: dict[str, asyncio.Event] = {}
        self.images: set[str] = {"sandbox/shell:latest"}
        self.volumes: dict[str, dict[str, str]] = {}
        self.docker_up = True
        self.fail_start: str | None = None
        self._ids = itertools.count(1)

    def _docker(self) -> Any:
        raise AssertionError("a unit test reached for the real Docker engine")

    async def ping(self, timeout: float = 5.0) -> bool:
        return self.docker_up

    async def start(self, spec: ContainerSpec) -> ContainerRecord:
        gate = self.gates.get(spec.labels.get("sandbox.worker", ""))
        if gate is not None:
            await gate.wait()
        if self.fail_start:
            raise BackendError(self.fail_start)
        number = next(self._ids)
        # Like Docker: a container without network is reached through its socket mount.
        agent_url = f"http://agent-{number}"
        for source, mount in spec.volumes.items():
            if mount["bind"] == AGENT_SOCKET_DIR:
                agent_url = f"unix://{source}/agent.sock"
        record = ContainerRecord(
            id=f"c{number}",
            name=spec.name,
            labels=dict(spec.labels),
            status="running",
            exit_code=None,
            oom_killed=False,
            agent_url=agent_url,
        )
        self.containers[record.id] = record
        self.specs[record.id] = spec
        return record

    def kill(self, container_id: str, exit_code: int = 137, oom: bool = False) -> None:
        old = self.containers[container_id]
        self.containers[container_id] = ContainerRecord(
            id=old.id,
            name=old.name,
            labels=old.labels,
            status="exited",
            exit_code=exit_code,
            oom_killed=oom,
            agent_url=old.agent_url,
        )

    def running(self) -> list[ContainerRecord]:
        return [c for c in self.containers.values() if c.running]

    async def remove(self, container_id: str) -> None:
        self.containers.pop(container_id, None)

    async def inspect(self, container_id: str) -> ContainerRecord | None:
        return self.containers.get(container_id)

    async def find(self, labels: dict[str, str]) -> list[ContainerRecord]:
        if not self.docker_up:
            raise DockerUnavailable("cannot reach the Docker engine: connection refused")
        return [
            c
            for c in self.containers.values()
            if all(c.labels.get(key) == value for key, value in labels.items())
        ]

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        self.volumes[name] = labels

    async def logs_tail(self, container_id: str, lines: int = 20) -> str:
        return "fake log line"

    async def image_exists(self, image: str) -> bool:
        return image in self.images

    async def build_image(
        self,
        tag: str,
        context: BuildContext,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        if on_progress is not None:
            on_progress("Step 1/1 : fake")
        self.images.add(tag)


class FakeAgents(AgentClient):
    """Agents that echo; per-tool handlers override, `calls` counts each tool."""

    def __init__(self, runtime: FakeRuntime) -> None:
        super().__init__()
        self.runtime = runtime
        self.calls: Counter[str] = Counter()
        self.handlers: dict[str, Handler] = {
            "bash.run": self._run,
            "rag.open_session": self._open,
            "rag.close_session": self._close,
            "rag.sessions": self._sessions,
            "rag.search": self._search,
            "rag.status": self._status,
        }
        self.meta: dict[str, dict[str, Any]] = {}
        """What each agent (by URL) holds in `agent.meta`."""
        self.rag_indexing = 0
        """How many more searches the fake rag service refuses as still indexing."""
        self.rag_sessions: dict[str, str] = {}
        """What the fake rag service holds: session id -> worker id."""

    async def call(
        self, url: str, token: str, tool: str, params: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        container = next((c for c in self.runtime.containers.values() if c.agent_url == url), None)
        if container is None or not container.running:
            raise AgentUnreachable("connection refused")
        assert container.token == token
        self.calls[tool] += 1
        if tool == "agent.meta":  # per container, like the real agent's
            if "set" in params:
                self.meta[url] = dict(params["set"])
            return {"meta": dict(self.meta.get(url, {}))}
        handler = self.handlers.get(tool)
        if handler is None:
            return {"tool": tool, "params": params}
        return await handler(params)

    async def is_ready(self, url: str) -> bool:
        return any(c.agent_url == url and c.running for c in self.runtime.containers.values())

    @staticmethod
    async def _run(params: dict[str, Any]) -> dict[str, Any]:
        command = params["command"]
        if command.startswith("sleep"):
            raise SandboxTimeout(
                f"command did not finish within {params['timeout']:g}s and was killed",
                data={"stdout": "partial", "stderr": "", "exit_code": None},
            )
        if command == "boom":
            raise RuntimeError("unexpected failure with a secret traceback")
        return {"stdout": command + "\n", "stderr": "", "exit_code": 0, "cwd": "/home/sandbox"}

    async def _open(self, params: dict[str, Any]) -> dict[str, Any]:
        self.rag_sessions[params["session"]] = params["worker"]
        return {"session": params["session"], "documents": 0}

    async def _close(self, params: dict[str, Any]) -> dict[str, Any]:
        self.rag_sessions.pop(params["session"], None)
        return {"removed": 0}

    async def _sessions(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "sessions": [
                {"session": session, "worker": worker, "created_at": 1.0, "documents": 0}
                for session, worker in self.rag_sessions.items()
            ]
        }

    async def _search(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.rag_indexing:
            self.rag_indexing -= 1
            raise AgentNotReady("the default collection is still indexing: 1 of 2 documents")
        return {"results": [], "context": "", "echo": params}

    async def _status(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"state": "indexing" if self.rag_indexing else "ready"}


class FakeClock:
    """A wall clock that moves only when a test says so (sessions expire by it)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock `seconds` forward."""
        self.now += seconds
