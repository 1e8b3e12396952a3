"""The swarm runtime on a real single-node swarm (this engine as its manager).

A real `sandbox serve` with ``SANDBOX_RUNTIME=swarm`` runs sessions as
one-replica services and reaches their agents over the overlay networks through
its relay. Every test removes what its server made (by label) in `finally`.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest

from sandbox import Sandbox
from tests.unit.agent.test_desktop_png import decode_png

from .support import ServerProcess, created, ok, start_server, wait_recovered, worker
from .swarm_support import (
    manager_swarm,
    networks_of,
    remove_swarm_state_of,
    services_of,
    session_overlays_of,
    wait_containers_gone,
    wait_networks_gone,
)

SHELL_IMAGE = f"{os.environ.get('SANDBOX_IMAGE_NAMESPACE', 'sandbox')}/shell:latest"
SWARM_ENV = {"SANDBOX_RUNTIME": "swarm", "SANDBOX_CEILINGS__ALLOW_NETWORK": "true"}


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    """The engine, a swarm manager for the module's duration."""
    client = docker.from_env(timeout=60)
    try:
        with manager_swarm(client):
            yield client
    finally:
        client.close()


@pytest.fixture
def swarm_server(engine: docker.DockerClient, tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server(tmp_path, env=SWARM_ENV)
    try:
        yield server
    finally:
        server.stop()
        remove_swarm_state_of(engine, server.server_id)


def run(sb: Sandbox, command: str) -> dict[str, object]:
    result = sb.execute_sync("bash:run", {"command": command})
    assert result["code"] == 0, result
    return dict(result["data"])


def default_route(sb: Sandbox) -> bool:
    """Whether the session's kernel has a default route (destination 0.0.0.0)."""
    routes = str(run(sb, "cat /proc/net/route")["stdout"]).splitlines()[1:]
    return any(line.split()[1] == "00000000" for line in routes)


def test_a_session_is_a_one_replica_service_reached_over_the_overlay(
    swarm_server: ServerProcess, engine: docker.DockerClient
) -> None:
    with Sandbox(server_url=swarm_server.url, worker_id="sw-a") as sb:
        run(sb, "cd /tmp && export MARK=kept")
        data = run(sb, 'echo "$MARK in $(pwd) as $(id -un)"; cat /run/sandbox/agent/token')
        assert data["stdout"] == "kept in /tmp as sandbox\n"
        assert "Permission denied" in str(data["stderr"])  # the token is the agent's alone

        (name,) = services_of(engine, swarm_server.server_id)
        spec = engine.services.get(name).attrs["Spec"]
        assert spec["Mode"]["Replicated"]["Replicas"] == 1
        assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
        assert spec["Labels"]["sandbox.worker"] == "sw-a"
        assert spec["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"] > 0
        assert spec["TaskTemplate"]["Resources"]["Limits"]["Pids"] == 512

        assert sb.destroy_session_sync("bash")["status"] == "success"
    assert services_of(engine, swarm_server.server_id) == []
    assert engine.secrets.list(filters={"label": f"sandbox.server={swarm_server.server_id}"}) == []


def test_without_network_a_session_has_no_route_out_and_with_network_it_has(
    swarm_server: ServerProcess,
) -> None:
    with Sandbox(server_url=swarm_server.url, worker_id="sw-net") as sb:
        assert not default_route(sb)
        failed = run(sb, "curl -sS -m 3 -o /dev/null http://192.0.2.2:9 || echo unreachable")
        assert "unreachable" in str(failed["stdout"])
    with Sandbox(server_url=swarm_server.url, worker_id="sw-net2") as sb:
        created(sb.create_session_sync("bash", {"network": True}), "bash")
        assert default_route(sb)


def test_no_session_can_open_the_relay(
    swarm_server: ServerProcess, engine: docker.DockerClient
) -> None:
    with Sandbox(server_url=swarm_server.url, worker_id="sw-probe") as sb:
        run(sb, "true")
        label = [f"sandbox.server={swarm_server.server_id}", "sandbox.relay=1"]
        (relay,) = engine.containers.list(filters={"label": label})
        networks = relay.attrs["NetworkSettings"]["Networks"]
        # The session (no network) shares its own overlay with the relay: the relay's
        # address there answers, and refuses the relay's port.
        (overlay,) = session_overlays_of(engine, swarm_server.server_id)
        address = networks[overlay]["IPAddress"]
        probe = run(sb, f"timeout 3 bash -c 'echo > /dev/tcp/{address}/7400' || true")
        assert "Connection refused" in str(probe["stderr"]), probe


def test_pool_claims_and_adoption_after_a_crash_with_orphans_removed(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    first = start_server(tmp_path, env=SWARM_ENV)
    try:
        with Sandbox(server_url=first.url, worker_id="sw-pool") as sb:
            warm = sb.warmup_sync(["bash"], pool_size=1, wait=True)
            assert warm["code"] == 0, warm
            assert len(services_of(engine, first.server_id)) == 1
            started = time.monotonic()
            created(sb.create_session_sync("bash"), "bash")
            assert time.monotonic() - started < 1.0  # a claim, not a cold start
            run(sb, "cd /tmp && echo survived > mark")
            session_id = sb.list_sessions_sync()[0]["session_id"]
        deadline = time.monotonic() + 60
        while len(services_of(engine, first.server_id)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # the pool refills beside the claimed member
        assert len(services_of(engine, first.server_id)) == 2
        first.stop(signal.SIGKILL)
        # A service of this server that is no session, pool member or service: an orphan.
        orphan = engine.services.create(
            SHELL_IMAGE,
            command=["sleep", "600"],
            name=f"orphan-{first.server_id}",
            labels={"sandbox.managed": "1", "sandbox.server": first.server_id},
            restart_policy=docker.types.RestartPolicy(condition="none"),
        )
        # An overlay of this server that no service uses (it died before making one).
        stray = engine.networks.create(
            f"stray-{first.server_id}",
            driver="overlay",
            attachable=True,
            internal=True,
            labels={
                "sandbox.managed": "1",
                "sandbox.server": first.server_id,
                "sandbox.overlay": "1",
            },
        )
        assert len(session_overlays_of(engine, first.server_id)) == 2  # the two services'
        assert stray.name in networks_of(engine, first.server_id)

        second = start_server(tmp_path, server_id=first.server_id, env=SWARM_ENV)
        try:
            wait_recovered(second)
            names = services_of(engine, first.server_id)
            assert orphan.name not in names
            with Sandbox(server_url=second.url, worker_id="sw-pool") as sb:
                (session,) = sb.list_sessions_sync()
                assert session["session_id"] == session_id
                assert run(sb, "cat mark; pwd")["stdout"] == "survived\n/tmp\n"
                assert stray.name not in networks_of(engine, first.server_id)
        finally:
            assert second.stop_gracefully(), second.log()
        assert services_of(engine, first.server_id) == []
        assert wait_containers_gone(engine, first.server_id) == []
        assert wait_networks_gone(engine, first.server_id) == []
    finally:
        remove_swarm_state_of(engine, first.server_id)


def test_a_full_cluster_is_a_session_error_within_the_scheduling_deadline(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    cores = int(engine.info()["NCPU"])
    server = start_server(
        tmp_path,
        env={
            **SWARM_ENV,
            "SANDBOX_SWARM__RESERVATION_FRACTION": "1",
            "SANDBOX_SWARM__SCHEDULE_TIMEOUT_S": "3",
            "SANDBOX_CEILINGS__CPUS": str(cores),
        },
    )
    try:
        with Sandbox(server_url=server.url, worker_id="sw-big") as sb:
            created(sb.create_session_sync("bash", {"cpus": cores}), "bash")
        started = time.monotonic()
        answer = httpx.post(
            f"{server.url}/session/create",
            json={"worker_id": "sw-big2", "resource_type": "bash", "config": {"cpus": cores}},
            timeout=60,
        ).json()
        assert answer["code"] == 1003, answer
        assert "full" in answer["message"]
        assert time.monotonic() - started < 10
        assert len(services_of(engine, server.server_id)) == 1  # the pending one is gone
    finally:
        server.stop()
        remove_swarm_state_of(engine, server.server_id)


def test_a_session_whose_container_dies_is_reported_and_replaced(
    swarm_server: ServerProcess, engine: docker.DockerClient
) -> None:
    with Sandbox(server_url=swarm_server.url, worker_id="sw-dead") as sb:
        run(sb, "true")
        label = {"label": [f"sandbox.server={swarm_server.server_id}", "sandbox.worker=sw-dead"]}
        (container,) = engine.containers.list(filters=label)
        container.kill()
        lost = sb.execute_sync("bash:run", {"command": "true"})
        assert lost["code"] in (1003, 2001), lost
        assert "gone" in str(lost["message"])
        assert run(sb, "echo fresh")["stdout"] == "fresh\n"  # a new session
        assert len(services_of(engine, swarm_server.server_id)) == 1


def test_a_removed_relay_is_replaced_and_the_session_kept(
    swarm_server: ServerProcess, engine: docker.DockerClient
) -> None:
    with Sandbox(server_url=swarm_server.url, worker_id="sw-relay") as sb:
        run(sb, "export MARK=still-here")
        label = [f"sandbox.server={swarm_server.server_id}", "sandbox.relay=1"]
        (relay,) = engine.containers.list(filters={"label": label})
        relay.remove(force=True)
        codes = []
        for _ in range(3):  # the calls that meet the dead relay fail (2001), then a new one
            answer = sb.execute_sync("bash:run", {"command": 'echo "$MARK"'})
            codes.append(answer["code"])
            if answer["code"] == 0:
                assert answer["data"]["stdout"] == "still-here\n"
                break
        assert codes[-1] == 0, codes
        assert set(codes[:-1]) <= {2001}, codes
        (replacement,) = engine.containers.list(filters={"label": label})
        assert replacement.id != relay.id


def test_the_shared_rag_service_is_a_service_too(
    swarm_server: ServerProcess, engine: docker.DockerClient
) -> None:
    with Sandbox(server_url=swarm_server.url, worker_id="sw-rag") as sb:
        documents = [{"id": "z1", "title": "Zebras", "text": "zebras graze on the savanna"}]
        indexed = sb.execute_sync("rag:index", {"documents": documents})
        assert indexed["code"] == 0, indexed
        found = sb.execute_sync("rag:search", {"query": "zebras", "collection": "session"})
        assert found["code"] == 0, found
        assert [hit["id"] for hit in found["data"]["results"]] == ["z1"]
    (name,) = services_of(engine, swarm_server.server_id)
    labels = engine.services.get(name).attrs["Spec"]["Labels"]
    assert labels["sandbox.service"] == "rag"
    (volume,) = engine.volumes.list(filters={"label": f"sandbox.server={swarm_server.server_id}"})
    assert volume.attrs["Labels"]["sandbox.service"] == "rag"  # the node made it, labelled


def test_a_vm_session_on_the_swarm_shows_its_desktop_through_shared_memory(
    swarm_server: ServerProcess, engine: docker.DockerClient
) -> None:
    with worker(swarm_server, "swarm-vm") as sb:
        created(sb.create_session_sync("vm", {"screen_size": [800, 600]}), "vm")
        launched = ok(sb, "vm:launch", command="xterm", wait_for_window=True)
        assert launched["window"], launched
        data = ok(sb, "vm:screenshot")
        width, height, rows = decode_png(base64.b64decode(data["image"]))
        assert (width, height) == (800, 600)
        assert len({row for row in rows}) > 10  # an xterm on the desktop, not a blank screen
        # The agent (root) and Xvfb (the session user) share the MIT-SHM segment in the
        # service's IPC namespace, as on one engine; /dev/shm is a tmpfs there too.
        (container,) = engine.containers.list(filters={"label": f"sandbox.worker={sb.worker_id}"})
        table = container.exec_run(["cat", "/proc/sysvipc/shm"], user="0").output.decode()
        attached = [int(line.split()[6]) for line in table.splitlines()[1:] if line.strip()]
        assert any(count >= 2 for count in attached), table
        mounts = container.exec_run(["cat", "/proc/mounts"], user="0").output.decode()
        assert any(line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in mounts.splitlines())


def test_through_the_relay_the_shared_overlays_of_the_settings_are_not_made(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    suffix = secrets.token_hex(3)
    networks = {"sessions": f"sandbox-test-egress-{suffix}", "agents": f"sandbox-test-{suffix}"}
    server = start_server(
        tmp_path,
        env={
            **SWARM_ENV,
            "SANDBOX_SWARM__SESSION_NETWORK": networks["sessions"],
            "SANDBOX_SWARM__INTERNAL_NETWORK": networks["agents"],
            "SANDBOX_SWARM__INTERNAL_SUBNET": "10.231.0.0/20",
        },
    )
    try:
        with Sandbox(server_url=server.url, worker_id="subnet") as sb:
            assert run(sb, "echo reached")["stdout"] == "reached\n"
            address = overlay_address(engine, server.server_id, "subnet")
            assert ipaddress.ip_address(address) not in ipaddress.ip_network("10.231.0.0/20")
        for name in networks.values():
            with pytest.raises(docker.errors.NotFound):
                engine.networks.get(name)
    finally:
        server.stop()
        remove_swarm_state_of(engine, server.server_id)
        for name in networks.values():
            with suppress(docker.errors.APIError):
                engine.networks.get(name).remove()


def overlay_address(engine: docker.DockerClient, server_id: str, worker_id: str) -> str:
    """The address of the worker's session on its overlay network."""
    filters = {"label": [f"sandbox.server={server_id}", f"sandbox.worker={worker_id}"]}
    (service,) = engine.services.list(filters=filters)
    (task,) = service.tasks()
    (attachment,) = task["NetworksAttachments"]
    (address,) = attachment["Addresses"]
    return str(ipaddress.ip_interface(address).ip)


def test_sessions_cannot_reach_each_other_and_their_overlays_go_with_them(
    swarm_server: ServerProcess, engine: docker.DockerClient
) -> None:
    server_id = swarm_server.server_id
    mark = f"mark-{secrets.token_hex(8)}"
    serve = (
        f"mkdir -p /tmp/www && echo {mark} > /tmp/www/mark && cd /tmp/www && "
        "(nohup python3 -m http.server 8080 >/dev/null 2>&1 &) ; sleep 1; echo started"
    )
    fetch = "curl -sS -m 3 http://{}:{}/mark || echo unreachable"
    with (
        Sandbox(server_url=swarm_server.url, worker_id="sw-iso-a") as a,
        Sandbox(server_url=swarm_server.url, worker_id="sw-iso-b") as b,
        Sandbox(server_url=swarm_server.url, worker_id="sw-iso-c") as c,
    ):
        assert run(a, serve)["stdout"] == "started\n"
        run(b, "true")
        created(c.create_session_sync("bash", {"network": True}), "bash")
        address = overlay_address(engine, server_id, "sw-iso-a")
        assert run(a, fetch.format(address, 8080))["stdout"] == f"{mark}\n"  # it serves
        for port in (8080, 8765):  # its server, and its agent
            # Without network: no route to it at all.
            probe = run(b, fetch.format(address, port))
            assert str(probe["stdout"]).splitlines() == ["unreachable"], probe
            # With network: out through its node, where the address is not the session's
            # (it may be anything's outside, so only the mark tells).
            probe = run(c, fetch.format(address, port))
            assert mark not in str(probe["stdout"]), probe
        # Each session is alone on an overlay of its own, which the relay joined.
        overlays = session_overlays_of(engine, server_id)
        assert len(overlays) == 3
        internal = {name: engine.networks.get(name).attrs["Internal"] for name in overlays}
        assert sorted(internal.values()) == [False, True, True]
        label = [f"sandbox.server={server_id}", "sandbox.relay=1"]
        (relay,) = engine.containers.list(filters={"label": label})
        assert {"bridge", *overlays} <= set(relay.attrs["NetworkSettings"]["Networks"])
        for sb in (a, b, c):
            assert run(sb, "echo still here")["stdout"] == "still here\n"
            assert sb.destroy_session_sync("bash")["status"] == "success"
    assert services_of(engine, server_id) == []
    # Removed a moment later, once the tasks let go of them (the spares stay).
    assert wait_networks_gone(engine, server_id, set(overlays)) == []


def test_with_encrypted_overlays_a_session_runs_on_an_encrypted_overlay(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    """On one node: nothing crosses nodes, so no IPsec state is needed. Between nodes
    it is not tested: this machine's kernel has no IPsec ESP (no ``CONFIG_INET_ESP``,
    no modules; ``ip xfrm state add ... proto esp`` answers "Requested type not
    found"), and the test swarm's other nodes run on the same kernel."""
    server = start_server(tmp_path, env={**SWARM_ENV, "SANDBOX_SWARM__ENCRYPTED": "true"})
    try:
        with Sandbox(server_url=server.url, worker_id="sw-sealed") as sb:
            assert run(sb, "echo sealed")["stdout"] == "sealed\n"
            (overlay,) = session_overlays_of(engine, server.server_id)
            options = engine.networks.get(overlay).attrs["Options"]
            assert "encrypted" in options, options
            # The spares made meanwhile are encrypted too.
            for name in networks_of(engine, server.server_id):
                assert "encrypted" in engine.networks.get(name).attrs["Options"], name
    finally:
        server.stop()
        remove_swarm_state_of(engine, server.server_id)
