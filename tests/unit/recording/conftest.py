"""A recording server in-process (fake runtime and agents) and a client that reaches it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox import HTTPClientConfig, HTTPServiceClient
from tests.unit.server.conftest import Harness, make_settings, open_harness
from tests.unit.server.test_trajectories import png

KEYS = {"alpha": "alpha-key-123", "beta": "beta-key-456"}
SCREEN = png(64, 48)
"""What the fake desktop's screenshot shows."""


@dataclass
class Recording:
    """A recording server and one client per tenant."""

    harness: Harness
    clients: dict[str, HTTPServiceClient]

    async def call(
        self, action: str, params: dict[str, Any], worker: str = "w1", tenant: str = "alpha"
    ) -> dict[str, Any]:
        result = await self.clients[tenant].execute(action, params, worker_id=worker)
        assert result.code == 0, result
        return dict(result)


async def _screenshot(params: dict[str, Any]) -> dict[str, Any]:
    return {"image": base64.b64encode(SCREEN).decode(), "width": 64, "height": 48}


@pytest.fixture
async def recording(tmp_path: Path) -> AsyncIterator[Recording]:
    settings = make_settings(recording=True, recording_dir=tmp_path / "store", api_keys=KEYS)
    h = await open_harness(settings)
    h.runtime.images.add("sandbox/desktop:latest")
    h.agents.handlers["vm.screenshot"] = _screenshot
    clients = {
        tenant: HTTPServiceClient(
            "http://sandbox",
            config=HTTPClientConfig(api_key=key, auto_heartbeat=False),
            transport=httpx.ASGITransport(app=h.app),
        )
        for tenant, key in KEYS.items()
    }
    async with h.app.router.lifespan_context(h.app), h.client:
        try:
            yield Recording(h, clients)
        finally:
            for client in clients.values():
                await client.close()
