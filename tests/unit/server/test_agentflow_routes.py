"""What AgentFlow's client sends and reads, answered by our server (their paths, /api/v1)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.errors import ErrorCode

from .conftest import Harness, make_settings, open_harness

V1 = "/api/v1"


async def test_a_created_or_existing_session_reads_as_active(harness: Harness) -> None:
    # Their client's body: session_config, and custom_name even when it is None.
    body: dict[str, object] = {
        "worker_id": "w1",
        "resource_type": "bash",
        "session_config": {},
        "custom_name": None,
    }
    created = await harness.post(f"{V1}/session/create", body)
    again = await harness.post(f"{V1}/session/create", body)
    assert (created["code"], created["data"]["session_status"]) == (0, "active")
    assert created["data"]["status"] == "created"
    assert (again["code"], again["data"]["session_status"]) == (0, "active")
    assert again["data"]["status"] == "exists"


async def test_the_tool_list_is_at_the_top_level_as_well_as_in_data(harness: Harness) -> None:
    response = (await harness.client.get(f"{V1}/tools?include_hidden=False")).json()
    assert response["code"] == 0
    assert response["tools"] == response["data"]["tools"]
    assert response["count"] == len(response["tools"]) > 0
    assert "bash:run" in {tool["name"] for tool in response["tools"]}


@pytest.mark.parametrize("name", ["bash:run", "bash.run", "bash_run"])
async def test_one_tools_schema_is_served_by_any_of_its_names(harness: Harness, name: str) -> None:
    response = await harness.client.get(f"{V1}/tools/{name}/schema")
    body = response.json()
    assert (response.status_code, body["code"]) == (200, 0)
    assert body["name"] == body["data"]["name"] == "bash:run"
    assert body["parameters"]["required"] == ["command"]
    assert body["description"]


async def test_an_unknown_tools_schema_is_1001(harness: Harness) -> None:
    response = await harness.client.get(f"{V1}/tools/bash:teleport/schema")
    assert (response.status_code, response.json()["code"]) == (404, ErrorCode.TOOL_NOT_FOUND)


async def test_warmup_with_null_backends_warms_every_resource_type(harness: Harness) -> None:
    # Every image there already: nothing to build (or to fetch wheels for) in a unit test.
    harness.runtime.images.update(
        f"sandbox/{image}:latest" for image in ("shell", "desktop", "rag")
    )
    envelope = await harness.post(f"{V1}/warmup", {"backends": None})
    assert envelope["code"] == 0, envelope
    assert set(envelope["data"]["resources"]) == {"bash", "code", "vm", "rag"}


async def test_init_resource_opens_a_session_with_its_init_config(harness: Harness) -> None:
    body = {"worker_id": "w1", "resource_type": "bash", "init_config": {"memory": "256m"}}
    envelope = await harness.post(f"{V1}/init/resource", body)
    assert envelope["code"] == 0, envelope
    assert envelope["data"]["session_status"] == "active"
    assert envelope["data"]["config_applied"]["memory"] == "256m"
    listed = await harness.post(f"{V1}/session/list", {"worker_id": "w1"})
    assert [s["resource_type"] for s in listed["data"]["sessions"]] == ["bash"]


async def test_init_batch_reports_each_resource_on_its_own(harness: Harness) -> None:
    body = {
        "worker_id": "w1",
        "resource_configs": {
            "bash": {"content": {"memory": "256m"}},  # their wrapped form
            "code": {},
            "gpu": {},
        },
    }
    envelope = await harness.post(f"{V1}/init/batch", body)
    assert envelope["code"] == 0, envelope
    results = envelope["data"]["results"]
    assert results["bash"]["status"] == results["code"]["status"] == "success"
    assert results["bash"]["config_applied"]["memory"] == "256m"
    assert results["gpu"]["status"] == "error"
    assert results["gpu"]["code"] == ErrorCode.INVALID_PARAMS
    assert "gpu" in results["gpu"]["message"]
    assert (envelope["data"]["total"], envelope["data"]["success_count"]) == (3, 2)


@pytest.fixture
async def configured(tmp_path: Path) -> AsyncIterator[tuple[Harness, Path]]:
    profile = tmp_path / "server.json"
    profile.write_text(json.dumps({"session_ttl_s": 120, "api_key": "s3cret"}))
    h = await open_harness(make_settings(config_file=profile))
    async with h.app.router.lifespan_context(h.app), h.client:
        yield h, profile


async def test_init_from_config_reads_only_the_servers_own_file_with_secrets_masked(
    configured: tuple[Harness, Path], tmp_path: Path
) -> None:
    h, profile = configured
    auth = {"Authorization": "Bearer s3cret"}
    body = {"worker_id": "w1", "config_path": str(profile), "override_params": {"x": 1}}
    envelope = await h.post(f"{V1}/init/from-config", body, headers=auth)
    assert envelope["code"] == 0, envelope
    config = envelope["data"]["config"]
    assert (config["session_ttl_s"], config["x"]) == (120, 1)
    assert "s3cret" not in json.dumps(envelope)
    other = tmp_path / "other.json"
    other.write_text("{}")
    for path in (str(other), "/etc/passwd"):
        refused = await h.post(
            f"{V1}/init/from-config", {"worker_id": "w1", "config_path": path}, headers=auth
        )
        assert (refused["_status"], refused["code"]) == (400, ErrorCode.INVALID_PARAMS)
        assert refused["data"]["field"] == "config_path"


async def test_vm_wait_without_seconds_waits_one_second(harness: Harness) -> None:
    envelope = await harness.post(f"{V1}/execute", {"worker_id": "w1", "action": "vm:wait"})
    assert envelope["code"] == 0, envelope
    # The fake agent echoes what it was sent.
    assert envelope["data"]["params"] == {"seconds": 1.0}


async def test_a_list_of_pyautogui_programs_in_command_runs_as_commands(
    harness: Harness,
) -> None:
    programs = ["pyautogui.moveTo(10, 10)", "pyautogui.click()"]
    body = {"worker_id": "w1", "action": "vm:pyautogui", "params": {"command": programs}}
    envelope = await harness.post(f"{V1}/execute", body)
    assert envelope["code"] == 0, envelope
    assert envelope["data"]["params"]["commands"] == programs
    assert "command" not in envelope["data"]["params"]
    both = {"command": programs, "commands": programs}
    refused = await harness.post(f"{V1}/execute", {**body, "params": both})
    assert (refused["code"], refused["data"]["field"]) == (
        ErrorCode.INVALID_PARAMS,
        "params.command",
    )


async def test_null_for_an_optional_parameter_means_its_default(harness: Harness) -> None:
    body = {"worker_id": "w1", "action": "vm:wait", "params": {"seconds": None}}
    envelope = await harness.post(f"{V1}/execute", body)
    assert envelope["data"]["params"] == {"seconds": 1.0}
    required = {"worker_id": "w1", "action": "bash:run", "params": {"command": None}}
    refused = await harness.post(f"{V1}/execute", required)
    assert (refused["code"], refused["data"]["field"]) == (
        ErrorCode.INVALID_PARAMS,
        "params.command",
    )


async def test_a_config_files_resources_and_defaults_shape_what_is_served() -> None:
    settings = make_settings(
        resource_types=["vm", "bash"], session_defaults={"vm": {"screen_size": [1920, 1080]}}
    )
    h = await open_harness(settings)
    async with h.app.router.lifespan_context(h.app), h.client:
        tools = (await h.client.get(f"{V1}/tools")).json()["tools"]
        assert {tool["resource_type"] for tool in tools} == {"vm", "bash"}
        vm = await h.post(f"{V1}/session/create", {"worker_id": "w1", "resource_type": "vm"})
        assert vm["data"]["config_applied"]["screen_size"] == [1920, 1080]
        own = {"worker_id": "w2", "resource_type": "vm", "config": {"screen_size": [800, 600]}}
        mine = await h.post(f"{V1}/session/create", own)
        assert mine["data"]["config_applied"]["screen_size"] == [800, 600]
        rag = await h.post(f"{V1}/session/create", {"worker_id": "w1", "resource_type": "rag"})
        assert (rag["code"], rag["data"]["field"]) == (ErrorCode.INVALID_PARAMS, "resource_type")
