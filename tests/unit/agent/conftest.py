"""Fixtures: a fresh in-process agent per test, with its own home directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Agent, AgentClient, start_agent


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def agent(home: Path) -> Iterator[Agent]:
    running = start_agent(home)
    try:
        yield running
    finally:
        running.client.close()
        running.server.close()


@pytest.fixture
def small_agent(home: Path) -> Iterator[Agent]:
    """An agent that returns at most 1000 bytes per stream or file."""
    running = start_agent(home, output_limit=1000)
    try:
        yield running
    finally:
        running.client.close()
        running.server.close()


@pytest.fixture
def client(agent: Agent) -> AgentClient:
    return agent.client
