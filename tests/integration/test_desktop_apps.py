"""The desktop's applications: they run as the session user, and Chromium's DevTools
port answers on the container's loopback only, even in a session with network."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator

import docker
import pytest

from sandbox import Sandbox

from .support import ServerProcess, created, ok, wait_until, worker

DEVTOOLS_PORT = 9222
BLANK_PAGE = {
    "func": "exact_match",
    "result": {"type": "chromium_page", "field": "url"},
    "expected": {"type": "literal", "value": "about:blank"},
}
"""Scores 1.0 while Chromium shows an empty page (read through DevTools)."""


@pytest.fixture
def networked_vm(networked_server: ServerProcess) -> Iterator[tuple[Sandbox, str]]:
    """A desktop with network, and its session id."""
    with worker(networked_server, "apps") as sandbox:
        summary = created(sandbox.create_session_sync("vm", {"network": True}), "vm")
        yield sandbox, summary["session_id"]


def test_apps_run_as_the_session_user_and_devtools_is_loopback_only(
    networked_vm: tuple[Sandbox, str], docker_client: docker.DockerClient
) -> None:
    sb, session_id = networked_vm
    for command in ("chromium about:blank", "mousepad", "thunar", "lxterminal"):
        ok(sb, "vm:launch", command=command, wait_for_window=True)
    # Listening TCP sockets on the DevTools port (state 0A), by local address.
    listening = wait_until(
        sb,
        f"awk '$4 == \"0A\" && $2 ~ /:{DEVTOOLS_PORT:04X}$/ {{print $2}}' "
        "/proc/net/tcp /proc/net/tcp6 | grep .",
        timeout=30,
    ).split()
    assert listening == [f"0100007F:{DEVTOOLS_PORT:04X}"]

    owners = ok(
        sb,
        "vm:run_command",
        command="ps -eo user:20,comm | grep -E ' (chromium|mousepad|thunar|lxterminal)$'",
    )["stdout"].splitlines()
    programs = {line.split()[1] for line in owners}
    assert programs == {"chromium", "mousepad", "thunar", "lxterminal"}
    assert {line.split()[0] for line in owners} == {"sandbox"}, owners

    # From outside the container (this host, on the sessions' bridge): refused.
    (container,) = docker_client.containers.list(filters={"label": f"sandbox.session={session_id}"})
    addresses = [
        network["IPAddress"]
        for network in container.attrs["NetworkSettings"]["Networks"].values()
        if network.get("IPAddress")
    ]
    assert addresses, container.attrs["NetworkSettings"]
    for address in addresses:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, DEVTOOLS_PORT), 3).close()
    # ... while inside it the page getter reaches DevTools.
    page = ok(sb, "vm:evaluate", evaluator=BLANK_PAGE)
    assert page["score"] == 1.0, page


def test_without_chromium_the_page_getter_scores_0_and_download_fails_clearly(
    server: ServerProcess,
) -> None:
    with Sandbox(server_url=server.url, worker_id=f"apps-{secrets.token_hex(3)}") as sb:
        try:
            created(sb.create_session_sync("vm"), "vm")
            answer = ok(sb, "vm:evaluate", evaluator=BLANK_PAGE)
            assert answer["score"] == 0.0
            assert answer["metrics"][0]["result"]["missing"] is True

            step = {
                "type": "download",
                "parameters": {"files": [{"url": "https://example.org/a.csv", "path": "~/a.csv"}]},
            }
            envelope = sb.execute_sync("vm:setup", {"steps": [step]})
            assert envelope["code"] == 2001, envelope
            assert envelope["message"].startswith(
                "the tool failed inside the container: steps.0 (download) failed: "
                "cannot download https://example.org/a.csv: "
            ), envelope
            listing = ok(sb, "vm:run_command", command="ls -A ~")["stdout"]
            assert "a.csv" not in listing  # nothing half-written is left
        finally:
            sb.destroy_session_sync()
