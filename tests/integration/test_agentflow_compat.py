"""A whole session driven the way AgentFlow's client drives it, on the real engine.

The requests are written out from reading AgentFlow's client (OpenDCAI/AgentFlow,
``sandbox/client.py`` and ``sandbox/sandbox.py``): their paths under /api/v1, their
bodies (``session_config``, ``custom_name: null``, ``backends: null``), the
per-task values their pipelines merge into every call's params; and each answer is
read as their client reads it. Their client raises on any HTTP status >= 400, so
every step must answer below 400.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .support import ServerProcess

V1 = "/api/v1"


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def call(http: httpx.Client, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """One request as their `_request` makes it: JSON in, JSON out, >= 400 is an error."""
    response = http.get(path) if method == "GET" else http.post(path, json=body)
    result: dict[str, Any] = response.json()
    assert response.status_code < 400, result
    return result


def test_their_client_drives_a_whole_session_without_an_error(
    http: httpx.Client, worker_id: str
) -> None:
    worker = {"worker_id": worker_id}
    # Sandbox.start: health, then warmup with no list.
    assert call(http, "GET", "/health")["data"]["status"] == "ok"
    call(http, "POST", f"{V1}/warmup", {"backends": None})

    # create_session("bash"): counted only with code 0 and session_status "active".
    body: dict[str, Any] = {
        **worker,
        "resource_type": "bash",
        "session_config": {},
        "custom_name": None,
    }
    created = call(http, "POST", f"{V1}/session/create", body)
    assert created["code"] == 0
    assert created["data"]["session_status"] == "active"

    # execute(action, params, **kwargs): the pipeline's per-task values ride along.
    params = {"command": "echo from-agentflow", "seed_path": "/data/seed/7.json", "task_id": 7}
    ran = call(http, "POST", f"{V1}/execute", {**worker, "action": "bash:run", "params": params})
    assert ran["code"] == 0, ran
    assert ran["data"]["stdout"] == "from-agentflow\n"
    assert ran["data"]["return_code"] == 0, "what their BashResult formatter reads"
    assert len(ran["meta"]["warnings"]) == 2

    # execute_batch, with their flags.
    actions = [
        {"action": "bash:run", "params": {"command": "pwd", "seed_path": "x"}},
        {"action": "code:execute", "params": {"code": "print(6 * 7)", "seed_path": "x"}},
    ]
    batch_body = {**worker, "actions": actions, "parallel": False, "stop_on_error": True}
    batch = call(http, "POST", f"{V1}/execute/batch", batch_body)
    assert [item["code"] for item in batch["data"]["results"]] == [0, 0]
    assert batch["data"]["results"][1]["data"]["stdout"] == "42\n"

    # list_sessions reads data.sessions; heartbeat, status, refresh.
    listed = call(http, "POST", f"{V1}/session/list", worker)
    assert {s["resource_type"] for s in listed["data"]["sessions"]} == {"bash", "code"}
    call(http, "POST", f"{V1}/lifecycle/heartbeat", worker)
    call(http, "POST", f"{V1}/lifecycle/status", worker)
    call(http, "POST", f"{V1}/session/refresh", {**worker, "resource_type": "bash"})

    # get_tools reads the list at the top level; get_tool_schema.
    tools = call(http, "GET", f"{V1}/tools?include_hidden=False")["tools"]
    assert "bash:run" in {tool["name"] for tool in tools}
    assert call(http, "GET", f"{V1}/tools/bash:run/schema")["name"] == "bash:run"

    # destroy_session per resource, then the worker's disconnect.
    for resource in ("bash", "code"):
        destroyed = call(
            http, "POST", f"{V1}/session/destroy", {**worker, "resource_type": resource}
        )
        assert destroyed["code"] == 0
    call(http, "POST", f"{V1}/worker/disconnect", worker)
    assert call(http, "POST", f"{V1}/session/list", worker)["data"]["sessions"] == []


def test_their_vm_and_rag_params_are_understood(http: httpx.Client, worker_id: str) -> None:
    worker = {"worker_id": worker_id}
    try:
        waited = call(http, "POST", f"{V1}/execute", {**worker, "action": "vm:wait", "params": {}})
        assert waited["data"] == {"waited": 1.0}
        typed = call(
            http,
            "POST",
            f"{V1}/execute",
            {**worker, "action": "vm:type", "params": {"text": "hi", "interval": 0.05}},
        )
        assert typed["code"] == 0, typed
        assert typed["meta"]["warnings"] is None, "interval is a parameter of ours too"
        programs = ["pyautogui.moveTo(20, 30)", "pyautogui.position()"]
        moved = call(
            http,
            "POST",
            f"{V1}/execute",
            {**worker, "action": "vm:pyautogui", "params": {"command": programs}},
        )
        assert "x=20, y=30" in str(moved["data"]["values"][-1]), moved  # from commands.1
        search = {"query": "debian package manager", "top_k": None}
        found = call(
            http, "POST", f"{V1}/execute", {**worker, "action": "rag:search", "params": search}
        )
        assert found["data"]["query"] == "debian package manager"
        assert found["data"]["context"], "their RAGSearchResult shows the context"
        queries = {"queries": ["shell", "compression tool"], "top_k": None}
        batch = call(
            http,
            "POST",
            f"{V1}/execute",
            {**worker, "action": "rag:batch_search", "params": queries},
        )
        assert batch["data"]["count"] == 2
        assert all(batch["data"]["contexts"])
    finally:
        call(http, "POST", f"{V1}/session/destroy", worker)
