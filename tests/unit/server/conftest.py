from __future__ import annotations

import os
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PosixPath
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sandbox.config import Settings
from sandbox.server import create_app
from sandbox.sessions.table import Clock
from tests.unit.fakes import FakeAgents, FakeRuntime

SOCKET_ROOT = Path(tempfile.mkdtemp(prefix="sandbox-unit-sockets-"))


class DeletedOnSecondLook(PosixPath):
    """A path whose file is deleted as the server names it a second time: a DELETE
    or retention that runs between the server's finding the file and its sending it."""

    looks = 0

    def __fspath__(self) -> str:
        self.looks += 1
        if self.looks == 2:
            os.unlink(str(self))
        return str(self)


@dataclass
class Harness:
    app: FastAPI
    client: httpx.AsyncClient
    runtime: FakeRuntime
    agents: FakeAgents
    settings: Settings

    async def post(
        self, path: str, body: Mapping[str, object] | None = None, **kw: Any
    ) -> dict[str, Any]:
        response = await self.client.post(path, json=body if body is not None else {}, **kw)
        envelope: dict[str, Any] = response.json()
        envelope["_status"] = response.status_code
        return envelope


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "server_id": "unit",
        "sweep_interval_s": 3600,
        "socket_dir": SOCKET_ROOT,
        # Fixed, so the fakes' many sessions fit whatever this host's RAM.
        "memory_budget": "1024g",
    }
    base.update(overrides)
    return Settings(**base)


async def open_harness(
    settings: Settings, runtime: FakeRuntime | None = None, clock: Clock = time.time
) -> Harness:
    runtime = runtime or FakeRuntime()
    agents = FakeAgents(runtime)
    app = create_app(settings, runtime=runtime, agents=agents, clock=clock)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox")
    return Harness(app, client, runtime, agents, settings)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = await open_harness(make_settings())
    async with h.app.router.lifespan_context(h.app), h.client:
        yield h
