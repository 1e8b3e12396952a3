"""The HTTP contract: health, auth, routing, error envelopes, keep-alive."""

from __future__ import annotations

import http.client
import json
import socket

import httpx

from .harness import Agent, AgentClient


def test_health_needs_no_token_and_lists_tools(agent: Agent) -> None:
    response = httpx.get(f"{agent.url}/health")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "toolsets": ["agent", "shell"],
        "tools": [
            "agent.meta",
            "bash.read_file",
            "bash.run",
            "bash.write_file",
            "code.execute",
        ],
    }


def test_agent_meta_is_kept_and_set_only_once(client: AgentClient) -> None:
    assert client.call("agent.meta").data == {"meta": {}}
    refused = client.call("agent.meta", set=["not", "an", "object"])
    assert (refused.status, refused.error["field"]) == (400, "set")
    stored = client.call("agent.meta", set={"session_id": "s1", "worker_id": "w"})
    assert stored.data == {"meta": {"session_id": "s1", "worker_id": "w"}}
    again = client.call("agent.meta", set={"session_id": "s2", "worker_id": "other"})
    assert (again.status, again.error["field"]) == (400, "set")
    assert client.call("agent.meta").data["meta"]["session_id"] == "s1"


def test_call_without_token_is_401(agent: Agent) -> None:
    response = httpx.post(f"{agent.url}/call/bash.run", json={"command": "true", "timeout": 5})

    assert response.status_code == 401
    assert response.json()["error"]["kind"] == "unauthorized"


def test_call_with_wrong_token_is_401_and_runs_nothing(agent: Agent) -> None:
    marker = agent.home / "ran"
    response = httpx.post(
        f"{agent.url}/call/bash.run",
        json={"command": f"touch {marker}", "timeout": 5},
        headers={"Authorization": f"Bearer {agent.token}x"},
    )

    assert response.status_code == 401
    assert response.json()["ok"] is False
    assert response.json()["error"]["kind"] == "unauthorized"
    assert not marker.exists()


def test_token_must_use_the_bearer_scheme(agent: Agent) -> None:
    response = httpx.post(
        f"{agent.url}/call/bash.run",
        json={"command": "true", "timeout": 5},
        headers={"Authorization": f"Basic {agent.token}"},
    )

    assert response.status_code == 401


def test_unknown_tool_is_404(client: AgentClient) -> None:
    reply = client.call("bash.nope", command="true")

    assert reply.status == 404
    assert reply.error["kind"] == "not_found"
    assert "bash.nope" in reply.error["message"]


def test_unknown_route_is_404(agent: Agent) -> None:
    assert httpx.get(f"{agent.url}/nope").status_code == 404


def test_malformed_json_is_invalid_params(client: AgentClient) -> None:
    reply = client.post("/call/bash.run", b"{not json")

    assert reply.status == 400
    assert reply.error["kind"] == "invalid_params"


def test_non_object_body_is_invalid_params(client: AgentClient) -> None:
    reply = client.post("/call/bash.run", b'["echo", "hi"]')

    assert reply.status == 400
    assert reply.error["kind"] == "invalid_params"


def test_connection_survives_errors(client: AgentClient) -> None:
    statuses = [
        client.post("/call/bash.run", b"{}", token="wrong").status,
        client.call("nope").status,
        client.post("/call/bash.run", b"[").status,
        client.run("echo still here").status,
    ]

    assert statuses == [401, 404, 400, 200]


def test_missing_parameter_names_its_field(client: AgentClient) -> None:
    reply = client.call("bash.run", timeout=5)

    assert reply.status == 400
    assert reply.error["kind"] == "invalid_params"
    assert reply.error["field"] == "command"


def test_wrongly_typed_parameter_names_its_field(client: AgentClient) -> None:
    reply = client.call("bash.run", command="true", timeout="soon")

    assert reply.status == 400
    assert reply.error["field"] == "timeout"


def test_error_envelope_has_every_key(client: AgentClient) -> None:
    reply = client.call("bash.run", command=["ls"], timeout=5)

    assert set(reply.error) == {"kind", "message", "field", "data"}
    assert reply.error["data"] == {}


def test_oversized_body_is_413(agent: Agent) -> None:
    with socket.create_connection(("127.0.0.1", agent.server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /call/bash.run HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {agent.token}\r\n".encode()
            + f"Content-Length: {64 * 1024 * 1024 + 1}\r\n\r\n".encode()
        )
        reply = sock.recv(65536).decode()

    assert reply.startswith("HTTP/1.1 413 ")
    assert "Connection: close" in reply
    body = json.loads(reply.split("\r\n\r\n", 1)[1])
    assert body["error"]["kind"] == "invalid_params"


def test_chunked_body_is_accepted(agent: Agent) -> None:
    payload = json.dumps({"command": "echo chunked", "timeout": 5}).encode()
    response = httpx.post(
        f"{agent.url}/call/bash.run",
        content=iter([payload[:10], payload[10:]]),
        headers={"Authorization": f"Bearer {agent.token}"},
    )

    assert response.status_code == 200
    assert response.json()["data"]["stdout"] == "chunked\n"


def test_calls_share_one_kept_alive_connection(agent: Agent) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", agent.server.port, timeout=10)
    headers = {"Authorization": f"Bearer {agent.token}", "Content-Type": "application/json"}
    body = json.dumps({"command": "true", "timeout": 5})
    sock = None
    try:
        for _ in range(30):
            connection.request("POST", "/call/bash.run", body=body, headers=headers)
            response = connection.getresponse()
            payload = json.loads(response.read())
            assert payload["data"]["exit_code"] == 0
            assert sock is None or connection.sock is sock  # never reconnected
            sock = connection.sock
    finally:
        connection.close()
