"""AgentFlow's calls through `Sandbox` against the real app in-process (fake Docker)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sandbox import Sandbox, format_tool_result
from tests.unit.server.conftest import Harness, make_settings, open_harness


@pytest.fixture
async def app() -> AsyncIterator[Harness]:
    harness = await open_harness(make_settings())
    async with harness.app.router.lifespan_context(harness.app), harness.client:
        yield harness


@pytest.fixture
async def sb(app: Harness) -> AsyncIterator[Sandbox]:
    transport = httpx.ASGITransport(app=app.app)
    sandbox = Sandbox("http://sandbox", "runner-1", transport=transport)
    yield sandbox
    await sandbox.close()


async def test_a_rollout_worker_lifecycle(sb: Sandbox) -> None:
    await sb.start()
    summary = await sb.create_session({"bash": {}})

    assert (summary["status"], summary["success"], summary["total"]) == ("success", 1, 1)
    session = summary["sessions"]["bash"]
    assert session["created"] is True
    (listed,) = await sb.list_sessions()
    assert listed["session_id"] == session["session_id"]
    assert listed["resource_type"] == "bash"

    result = await sb.execute("bash-run", {"command": "echo hi"})
    assert format_tool_result(result) == "echo hi"
    assert result["meta"]["session_id"] == session["session_id"]

    again = await sb.create_session("bash")
    assert again["sessions"]["bash"]["created"] is False

    gone = await sb.destroy_session(["bash"])
    assert gone["details"]["bash"]["session_id"] == session["session_id"]
    assert gone["status"] == "success"
    assert await sb.list_sessions() == []


async def test_a_synthesis_seed_reinitializes_its_session(sb: Sandbox) -> None:
    await sb.create_session("bash", {"custom_name": "bash_seed1"})

    result = await sb.reinitialize("bash", {"custom_name": "bash_seed2"})

    assert result["status"] == "success", result
    assert result["new_session_name"] == "bash_seed2"
    assert result["old_session_id"] != result["new_session_id"]
    (listed,) = await sb.list_sessions()
    assert listed["session_name"] == "bash_seed2"


async def test_refused_configs_and_unknown_types_are_error_lines(sb: Sandbox) -> None:
    summary = await sb.create_session({"bash": {"memory": "1t"}, "quantum": {}, "code": {}})

    assert summary["status"] == "partial"
    assert summary["sessions"]["code"]["status"] == "success"
    assert summary["sessions"]["bash"]["code"] == 1002
    assert "memory" in summary["sessions"]["bash"]["error"]
    assert summary["sessions"]["quantum"]["code"] == 1002
    destroyed = await sb.destroy_session(["code", "vm"])
    assert destroyed["status"] == "partial"
    assert destroyed["details"]["vm"]["code"] == 1003


async def test_tools_come_back_as_a_list(sb: Sandbox) -> None:
    tools = await sb.get_tools()

    assert "bash:run" in {tool["name"] for tool in tools}
    assert all("parameters" in tool for tool in tools)


async def test_start_warms_the_configured_resources(app: Harness) -> None:
    transport = httpx.ASGITransport(app=app.app)
    sandbox = Sandbox("http://sandbox", "w", warmup_resources=["bash"], transport=transport)

    await sandbox.start()
    status = await sandbox.get_warmup_status()
    await sandbox.close()

    assert status["data"]["resources"]["bash"]["state"] == "ready"


async def test_agentflows_shutdown_flags_are_accepted(sb: Sandbox) -> None:
    await sb.create_session("bash")

    envelope = await sb.shutdown_server(force=True, cleanup_sessions=True)

    assert envelope["code"] == 0, envelope
    assert envelope["data"]["destroyed"] == 1
