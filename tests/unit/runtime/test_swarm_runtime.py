"""`SwarmRuntime` against a stand-in of a manager's API: what it asks Swarm for, and
how it reads what Swarm says (task states, nodes, addresses). The real swarm is
in tests/integration/test_swarm.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import docker.errors
import pytest

from sandbox.config import Settings
from sandbox.errors import BackendError, ErrorCode
from sandbox.runtime.base import (
    AGENT_TOKEN_FILE,
    LABEL_RESOURCE,
    LABEL_SERVER,
    ClusterFull,
    ContainerSpec,
)
from sandbox.runtime.swarm import SwarmRuntime
from sandbox.runtime.swarm_overlays import SPARES_PER_KIND
from sandbox.runtime.swarm_services import (
    AGENT_PORT,
    network_targets,
    service_mounts,
    service_name,
    service_record,
)
from sandbox.server.app import make_runtime

NETWORK_IDS = {"sandbox-swarm-sessions": "net-egress", "sandbox-swarm-agents": "net-internal"}
ADDRESSES = {"net-": "10.0.2.7/24", "ovl-": "10.0.5.7/24"}
"""A task's address on a shared overlay, or on its own."""


class FakeSwarmAPI:
    """The low-level API calls the runtime makes, with tasks in a state the test sets."""

    def __init__(self, task_state: str = "running", err: str = "") -> None:
        self.task_state = task_state
        self.err = err
        self.node_state = "ready"
        self.by_id: dict[str, dict[str, Any]] = {}
        self.secret_data: dict[str, bytes] = {}
        self.created: list[dict[str, Any]] = []
        self.overlays: dict[str, dict[str, Any]] = {}
        self.relay_joined: list[str] = []
        self.in_use_for = 0
        """How many removals of an overlay fail as in use before one succeeds."""

    def info(self) -> dict[str, Any]:
        return {"Swarm": {"LocalNodeState": "active", "ControlAvailable": True}}

    def networks(
        self, names: list[str] | None = None, filters: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        if filters is not None:
            wanted = dict(label.split("=", 1) for label in filters["label"])
            return [
                {"Id": network_id}
                for network_id, attrs in self.overlays.items()
                if wanted.items() <= attrs["Labels"].items()
            ]
        assert names is not None
        return [{"Name": names[0], "Id": NETWORK_IDS[names[0]]}]

    def create_network(self, name: str, **kwargs: Any) -> dict[str, str]:
        network_id = f"ovl-{name}"
        assert network_id not in self.overlays, "made twice"
        self.overlays[network_id] = {"Id": network_id, "Labels": kwargs["labels"], **kwargs}
        return {"Id": network_id}

    def remove_network(self, network_id: str) -> None:
        if network_id not in self.overlays:
            raise docker.errors.NotFound("no such network")
        if network_id in self.relay_joined:
            raise docker.errors.APIError("network has active endpoints")
        if self.in_use_for > 0:
            self.in_use_for -= 1
            raise docker.errors.APIError("network has active endpoints")
        del self.overlays[network_id]

    def inspect_network(self, network_id: str) -> dict[str, Any]:
        if network_id.startswith("ovl-"):
            if network_id not in self.overlays:
                raise docker.errors.NotFound("no such network")
            return self.overlays[network_id]
        internal = network_id == "net-internal"
        subnet = "10.0.2.0/24" if internal else "10.0.1.0/24"
        return {
            "Id": network_id,
            "Driver": "overlay",
            "Attachable": True,
            "Internal": internal,
            "IPAM": {"Config": [{"Subnet": subnet}]},
        }

    def inspect_image(self, image: str) -> dict[str, Any]:
        return {"Id": "sha256:feed"}

    def create_secret(self, name: str, data: bytes, labels: dict[str, str]) -> dict[str, str]:
        self.secret_data[name] = data
        return {"ID": name}

    def remove_secret(self, secret_id: str) -> None:
        del self.secret_data[secret_id]

    def create_service(self, **kwargs: Any) -> dict[str, str]:
        self.created.append(kwargs)
        service_id = f"svc{len(self.created)}"
        task = kwargs["task_template"]
        self.by_id[service_id] = {
            "ID": service_id,
            "Spec": {"Name": kwargs["name"], "Labels": kwargs["labels"], "TaskTemplate": task},
        }
        return {"ID": service_id}

    def inspect_service(self, service_id: str) -> dict[str, Any]:
        if service_id not in self.by_id:
            raise docker.errors.NotFound("no such service")
        return self.by_id[service_id]

    def remove_service(self, service_id: str) -> None:
        del self.by_id[service_id]

    def tasks(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        if filters["service"] not in self.by_id:
            return []
        task_template = self.by_id[filters["service"]]["Spec"]["TaskTemplate"]
        targets = [network["Target"] for network in task_template["Networks"]]
        return [
            {
                "CreatedAt": "1",
                "NodeID": "node1",
                "Status": {"State": self.task_state, "Err": self.err},
                "NetworksAttachments": [
                    {"Network": {"ID": "net-other"}, "Addresses": ["10.9.0.9/24"]},
                    *(
                        {"Network": {"ID": target}, "Addresses": [ADDRESSES[target[:4]]]}
                        for target in targets
                    ),
                ],
            }
        ]

    def services(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.by_id.values())

    def secrets(self, filters: dict[str, Any]) -> list[dict[str, str]]:
        return [{"ID": name} for name in self.secret_data]

    def inspect_node(self, node_id: str) -> dict[str, Any]:
        return {"Status": {"State": self.node_state}, "Description": {"Hostname": "node-a"}}

    # The relay's container: it starts, says it listens, and joins networks.

    def containers(self, all: bool, filters: dict[str, Any]) -> list[dict[str, str]]:
        return [{"Id": "relay"}] if self.relay_joined else []

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def create_container(self, image: str, **kwargs: Any) -> dict[str, str]:
        return {"Id": "relay"}

    def start(self, container_id: str) -> None:
        pass

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        ports = {"7400/tcp": [{"HostPort": "40000"}]}
        return {"State": {"Status": "running"}, "NetworkSettings": {"Ports": ports}}

    def logs(self, container_id: str, tail: int) -> bytes:
        return b"sandbox relay listening on 172.17.0.3:7400\n"

    def remove_container(self, container_id: str, force: bool) -> None:
        self.relay_joined.clear()  # its endpoints go with it

    def connect_container_to_network(self, container_id: str, network_id: str) -> None:
        assert container_id == "relay"
        self.relay_joined.append(network_id)

    def disconnect_container_from_network(
        self, container_id: str, network_id: str, force: bool
    ) -> None:
        assert container_id == "relay"
        self.relay_joined.remove(network_id)


class FakeClient:
    def __init__(self, api: FakeSwarmAPI) -> None:
        self.api = api

    def close(self) -> None:
        pass


def _runtime(api: FakeSwarmAPI, relay: bool = False, **kwargs: Any) -> SwarmRuntime:
    return SwarmRuntime(
        server_id="srv", relay=relay, client_factory=lambda: FakeClient(api), **kwargs
    )


def _spec(network: bool = False, resource: str = "bash") -> ContainerSpec:
    return ContainerSpec(
        image="ns/shell:latest",
        name="sandbox-srv-bash-w1-001",
        labels={LABEL_SERVER: "srv", LABEL_RESOURCE: resource},
        environment={"A": "1"},
        memory_bytes=3 << 30,
        nano_cpus=2_000_000_000,
        pids_limit=256,
        network=network,
        token="tok",
        capabilities=("SETUID", "KILL"),
        read_only=True,
        tmpfs={"/home": "size=2147483648,exec,nosuid,nodev,mode=1777"},
    )


async def test_a_spec_becomes_a_one_replica_service_with_its_limits_and_secret() -> None:
    api = FakeSwarmAPI()
    runtime = _runtime(api, reservation_fraction=0.5, placement={"bash": ["node.labels.b==1"]})
    try:
        record = await runtime.start(_spec())
    finally:
        runtime.close()
    assert record.running
    assert record.agent_url == f"http://10.0.2.7:{AGENT_PORT}"  # the address on our network
    (created,) = api.created
    task = created["task_template"]
    container = task["ContainerSpec"]
    assert created["mode"] == {"replicated": {"Replicas": 1}}
    assert task["RestartPolicy"]["Condition"] == "none"
    assert container["Image"] == "sha256:feed"  # by id: no node pulls it
    assert container["CapabilityDrop"] == ["ALL"]
    assert container["CapabilityAdd"] == ["CAP_SETUID", "CAP_KILL"]
    assert container["Env"] == ["A=1", "SANDBOX_AGENT_HOST=0.0.0.0", "SANDBOX_AGENT_PORT=8765"]
    (secret,) = container["Secrets"]
    assert secret["File"]["Name"] == AGENT_TOKEN_FILE
    assert api.secret_data == {"sandbox-srv-bash-w1-001.token": b"tok"}
    resources = task["Resources"]
    assert resources["Limits"] == {"NanoCPUs": 2_000_000_000, "MemoryBytes": 3 << 30, "Pids": 256}
    assert resources["Reservations"] == {"NanoCPUs": 1_000_000_000, "MemoryBytes": 3 << 29}
    assert task["Placement"]["Constraints"] == ["node.labels.b==1"]
    assert [network["Target"] for network in task["Networks"]] == ["net-internal"]


async def test_secrets_no_service_uses_are_removed_at_start() -> None:
    api = FakeSwarmAPI()
    api.secret_data["left-by-a-crash.token"] = b"old"
    runtime = _runtime(api)
    try:
        await runtime.start(_spec())
    finally:
        runtime.close()
    assert list(api.secret_data) == ["sandbox-srv-bash-w1-001.token"]


async def test_a_session_with_network_joins_the_egress_overlay() -> None:
    api = FakeSwarmAPI()
    runtime = _runtime(api)
    try:
        await runtime.start(_spec(network=True))
    finally:
        runtime.close()
    (network,) = api.created[0]["task_template"]["Networks"]
    assert network["Target"] == "net-egress"


async def test_no_node_with_room_is_1003_within_the_deadline_and_nothing_is_left() -> None:
    api = FakeSwarmAPI("pending", "no suitable node (insufficient resources on 1 node)")
    runtime = _runtime(api, schedule_timeout_s=0.2)
    try:
        with pytest.raises(ClusterFull, match="full") as caught:
            await runtime.start(_spec())
    finally:
        runtime.close()
    assert caught.value.code == ErrorCode.SESSION_ERROR
    assert "insufficient resources" in caught.value.message
    assert api.by_id == {}
    assert api.secret_data == {}


async def test_a_node_without_the_image_is_named() -> None:
    api = FakeSwarmAPI("rejected", "No such image: sha256:feed")
    runtime = _runtime(api)
    try:
        with pytest.raises(BackendError, match="node node-a has no image ns/shell:latest"):
            await runtime.start(_spec())
    finally:
        runtime.close()
    assert api.by_id == {}


async def test_a_task_on_a_node_that_is_down_is_lost() -> None:
    api = FakeSwarmAPI()
    runtime = _runtime(api)
    try:
        record = await runtime.start(_spec())
        api.node_state = "down"
        lost = await runtime.inspect(record.id)
        await runtime.remove(record.id)
        assert await runtime.inspect(record.id) is None
        await runtime.remove(record.id)  # gone already: fine
    finally:
        runtime.close()
    assert lost is not None
    assert not lost.running
    assert "node is down" in lost.describe_exit()
    assert api.secret_data == {}


def test_a_failed_task_reports_its_exit_code() -> None:
    service = {"ID": "s", "Spec": {"Name": "n", "Labels": {"a": "b"}}}
    task = {"Status": {"State": "failed", "ContainerStatus": {"ExitCode": 137}}}
    record = service_record(service, task, False)
    assert (record.running, record.exit_code, record.labels) == (False, 137, {"a": "b"})
    assert record.agent_url is None


async def test_a_task_placed_but_never_started_fails_after_the_start_timeout() -> None:
    api = FakeSwarmAPI("preparing")
    runtime = _runtime(api, schedule_timeout_s=0.05, start_timeout_s=0.3)
    try:
        with pytest.raises(BackendError, match="did not start") as caught:
            await runtime.start(_spec())
    finally:
        runtime.close()
    assert not isinstance(caught.value, ClusterFull)  # it had a node: not a full cluster
    assert api.by_id == {}


def test_a_task_still_starting_is_not_running_yet() -> None:
    service = {"ID": "s", "Spec": {"Name": "n"}}
    record = service_record(service, {"Status": {"State": "starting"}}, False)
    assert (record.running, record.status, record.lost) == (False, "starting", False)
    lost = service_record(service, {"Status": {"State": "starting"}}, True)
    assert lost.lost


def test_service_names_fit_swarm_and_stay_distinct() -> None:
    long_a = "sandbox-" + "w" * 120 + "-a"
    long_b = "sandbox-" + "w" * 120 + "-b"
    assert service_name("sandbox-srv_1-bash-w.1") == "sandbox-srv-1-bash-w-1"
    assert len(service_name(long_a)) <= 57
    assert service_name(long_a) != service_name(long_b)


def test_volumes_and_tmpfs_become_mounts() -> None:
    spec = ContainerSpec(
        image="i",
        name="n",
        labels={LABEL_SERVER: "srv", "sandbox.service": "rag", "sandbox.token": "t"},
        environment={},
        memory_bytes=1 << 30,
        nano_cpus=1,
        pids_limit=16,
        network=False,
        volumes={"/srv/corpus": {"bind": "/corpus", "mode": "ro"}, "idx": {"bind": "/data"}},
        tmpfs={"/home": "size=1024,exec"},
    )
    mounts = service_mounts(spec)
    assert [(m["Type"], m["Target"], m["ReadOnly"]) for m in mounts] == [
        ("bind", "/corpus", True),
        ("volume", "/data", False),
        ("tmpfs", "/home", False),
    ]
    assert mounts[2]["TmpfsOptions"] == {"SizeBytes": 1024, "Mode": 0o1777}
    # The volume the node makes is found by its server's label; the token is no label of it.
    assert mounts[1]["VolumeOptions"]["Labels"] == {LABEL_SERVER: "srv", "sandbox.service": "rag"}


def test_the_setting_picks_the_runtime() -> None:
    docker_runtime = make_runtime(Settings(memory_budget="64g"))
    swarm_runtime = make_runtime(Settings(runtime="swarm", memory_budget="64g"))
    try:
        assert docker_runtime.agent_transport == "unix"
        assert docker_runtime.agent_network() is None
        assert swarm_runtime.agent_transport == "tcp"
        assert swarm_runtime.agent_network() is not None  # the relay
    finally:
        docker_runtime.close()
        swarm_runtime.close()


def test_swarm_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="reservation_fraction"):
        Settings(runtime="swarm", swarm={"reservation_fraction": 2})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="runtime"):
        Settings(runtime="kubernetes")  # type: ignore[arg-type]


class FakeRegistryAPI(FakeSwarmAPI):
    """The manager after `sandbox images build --push reg:5000`: the pushed tag has a digest."""

    def __init__(self, digests: list[str] | None) -> None:
        super().__init__()
        self.digests = digests

    def inspect_image(self, image: str) -> dict[str, Any]:
        if image.startswith("reg:5000/"):
            if self.digests is None:
                raise docker.errors.ImageNotFound("no such image")
            return {"Id": "sha256:feed", "RepoDigests": self.digests}
        return super().inspect_image(image)


@pytest.mark.parametrize(
    ("digests", "expected"),
    [
        # Pinned to what the manager pushed there (not another registry's digest).
        (
            ["other:1/ns/shell@sha256:0ther", "reg:5000/ns/shell@sha256:beef"],
            "reg:5000/ns/shell@sha256:beef",
        ),
        ([], "reg:5000/ns/shell:latest"),  # tagged, never pushed from here
        (None, "reg:5000/ns/shell:latest"),  # pushed from elsewhere
    ],
)
async def test_with_a_registry_nodes_pull_the_image_by_the_pushed_digest(
    digests: list[str] | None, expected: str
) -> None:
    api = FakeRegistryAPI(digests)
    runtime = _runtime(api, registry="reg:5000")
    try:
        await runtime.start(_spec())
    finally:
        runtime.close()
    (created,) = api.created
    assert created["task_template"]["ContainerSpec"]["Image"] == expected


def test_the_registry_setting_reaches_the_runtime() -> None:
    settings = Settings.model_validate({"runtime": "swarm", "swarm": {"registry": "10.0.0.1:5000"}})
    runtime = make_runtime(settings)
    try:
        assert isinstance(runtime, SwarmRuntime)
        assert runtime._registry == "10.0.0.1:5000"
    finally:
        runtime.close()


@pytest.mark.parametrize("bad", ["http://reg:5000", "reg:5000/ns", "-reg", "reg:port"])
def test_a_registry_that_is_not_host_port_is_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises(ValueError, match="registry"):
        Settings.model_validate({"runtime": "swarm", "swarm": {"registry": bad}})


class FakeNoNetworksAPI(FakeSwarmAPI):
    """A swarm where the overlays do not exist yet: the runtime creates them."""

    def __init__(self) -> None:
        super().__init__()
        self.networks_made: dict[str, dict[str, Any]] = {}

    def networks(
        self, names: list[str] | None = None, filters: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        if filters is not None:
            return []
        assert names is not None
        made = names[0] in self.networks_made
        return [{"Name": names[0], "Id": NETWORK_IDS[names[0]]}] if made else []

    def create_network(self, name: str, **kwargs: Any) -> dict[str, str]:
        self.networks_made[name] = kwargs
        return {"Id": NETWORK_IDS[name]}


async def test_the_overlays_are_created_with_the_subnets_asked_for_or_swarms_default() -> None:
    api = FakeNoNetworksAPI()
    runtime = _runtime(api, internal_subnet="10.20.0.0/18")
    try:
        await runtime.start(_spec())
    finally:
        runtime.close()
    internal = api.networks_made["sandbox-swarm-agents"]
    assert internal["internal"] is True
    assert [pool["Subnet"] for pool in internal["ipam"]["Config"]] == ["10.20.0.0/18"]
    assert api.networks_made["sandbox-swarm-sessions"]["ipam"] is None  # Swarm's /24


def test_the_subnet_settings_reach_the_runtime_and_bad_ones_name_the_setting() -> None:
    settings = Settings.model_validate(
        {"runtime": "swarm", "swarm": {"session_subnet": "10.21.0.0/18"}}
    )
    runtime = make_runtime(settings)
    try:
        assert isinstance(runtime, SwarmRuntime)
        assert runtime._subnet_of == {True: "10.21.0.0/18", False: ""}
    finally:
        runtime.close()
    with pytest.raises(ValueError, match=r"internal_subnet[\s\S]*'10.20.0.0/33' is not a subnet"):
        Settings.model_validate({"runtime": "swarm", "swarm": {"internal_subnet": "10.20.0.0/33"}})


# Through the relay (the default), every service has an overlay of its own.

OWN = {"sandbox.managed": "1", "sandbox.server": "srv", "sandbox.overlay": "1"}


@pytest.mark.parametrize("network", [False, True])
async def test_each_session_has_an_overlay_of_its_own_that_goes_with_it(network: bool) -> None:
    api = FakeSwarmAPI()
    runtime = _runtime(api, relay=True)
    try:
        record = await runtime.start(_spec(network=network))
        (attached,) = api.created[0]["task_template"]["Networks"]
        overlay = attached["Target"]
        made = api.overlays[overlay]
        assert (made["driver"], made["attachable"], made["Labels"]) == ("overlay", True, OWN)
        assert made["internal"] is not network  # without network: no egress
        assert overlay in api.relay_joined  # the relay reaches the agent there...
        assert record.agent_url == f"http://10.0.5.7:{AGENT_PORT}"  # ...at that address
        await _background_done(runtime)
        api.in_use_for = 3  # the task lets go of the network a little after its service
        await runtime.remove(record.id)
        await _background_done(runtime)
        assert overlay not in api.overlays
        assert overlay not in api.relay_joined
    finally:
        runtime.close()
    assert api.overlays == {}  # the spares went with the runtime
    assert api.relay_joined == []
    assert api.secret_data == {}


async def _background_done(runtime: SwarmRuntime) -> None:
    """Until the runtime's background work (spare overlays made, overlays removed) is done."""
    while runtime._background:
        await asyncio.gather(*runtime._background)


@pytest.mark.parametrize("network", [False, True])
async def test_a_start_takes_a_spare_overlay_the_relay_joined_and_another_is_made(
    network: bool,
) -> None:
    api = FakeSwarmAPI()
    runtime = _runtime(api, relay=True)
    try:
        first = await runtime.start(_spec(network=network))
        await _background_done(runtime)
        spares = set(api.overlays) - set(network_targets(api.by_id[first.id]))
        assert len(spares) == SPARES_PER_KIND
        assert spares <= set(api.relay_joined)
        assert {api.overlays[spare]["internal"] for spare in spares} == {not network}
        second = await runtime.start(_spec(network=network))
        (taken,) = network_targets(api.by_id[second.id])
        assert taken in spares  # made and joined before this start
        await _background_done(runtime)
        assert len(api.overlays) == 2 + SPARES_PER_KIND  # the two sessions' and the spares
    finally:
        runtime.close()
    assert set(api.overlays) == set(network_targets(api.by_id[first.id])) | {taken}


async def test_a_spare_made_while_the_runtime_closes_is_removed() -> None:
    api = FakeSwarmAPI()
    runtime = _runtime(api, relay=True)
    make = api.create_network

    def closing_meanwhile(name: str, **kwargs: Any) -> dict[str, str]:
        made = make(name, **kwargs)
        runtime.close()  # while a fill's thread makes the network
        return made

    try:
        await runtime.relay_address()
        api.create_network = closing_meanwhile  # type: ignore[method-assign]
        assert not runtime._overlays.add_spare(internal=True)
    finally:
        runtime.close()
    assert api.overlays == {}


async def test_a_service_that_cannot_start_leaves_no_overlay() -> None:
    api = FakeSwarmAPI("pending", "no suitable node")
    runtime = _runtime(api, relay=True, schedule_timeout_s=0.1)
    try:
        with pytest.raises(ClusterFull):
            await runtime.start(_spec())
    finally:
        runtime.close()
    assert (api.by_id, api.overlays, api.relay_joined) == ({}, {}, [])


async def test_after_a_restart_the_relay_joins_the_sessions_overlays_and_orphans_go() -> None:
    api = FakeSwarmAPI()
    first = _runtime(api, relay=True)
    try:
        kept = await first.start(_spec())
        await _background_done(first)
    finally:
        first.close()
    api.create_network("left-by-a-crash", labels=OWN)  # made, then the server died
    api.create_network("another-servers", labels={**OWN, "sandbox.server": "other"})
    api.relay_joined.clear()  # the old relay is gone with its server
    second = _runtime(api, relay=True)
    try:
        adopted = await second.inspect(kept.id)
        await second.relay_address()
        await _background_done(second)
        (overlay,) = network_targets(api.by_id[kept.id])
        assert api.relay_joined == [overlay]
    finally:
        second.close()
    assert adopted is not None
    assert adopted.agent_url == f"http://10.0.5.7:{AGENT_PORT}"
    assert sorted(api.overlays) == sorted(["ovl-another-servers", overlay])


# The relay starts once for every caller, whoever stops waiting for it.


class FakeSlowRelayAPI(FakeSwarmAPI):
    """A relay that says it listens `listens_after_s` after it is made; the first one
    made fails to start when `fail_first`."""

    def __init__(self, listens_after_s: float, fail_first: bool = False) -> None:
        super().__init__()
        self.listens_after_s = listens_after_s
        self.fail_next = fail_first
        self.relays_made = 0
        self.made_at = 0.0

    def create_container(self, image: str, **kwargs: Any) -> dict[str, str]:
        self.relays_made += 1
        if self.fail_next:
            self.fail_next = False
            raise docker.errors.APIError("no such image: ns/shell:latest")
        self.made_at = time.monotonic()
        return super().create_container(image, **kwargs)

    def logs(self, container_id: str, tail: int) -> bytes:
        if time.monotonic() - self.made_at < self.listens_after_s:
            return b""
        return super().logs(container_id, tail)


async def test_callers_that_stop_waiting_neither_cancel_nor_restart_the_relays_start() -> None:
    api = FakeSlowRelayAPI(listens_after_s=0.3)
    runtime = _runtime(api, relay=True)
    try:
        for _ in range(3):  # health checks whose deadline passes mid-start
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(runtime.relay_address(), 0.05)
        first, second = await asyncio.gather(runtime.relay_address(), runtime.relay_address())
        again = await runtime.relay_address()
    finally:
        runtime.close()
    assert first == second == again
    assert api.relays_made == 1


async def test_a_failed_relay_start_fails_its_callers_and_only_a_later_call_retries() -> None:
    api = FakeSlowRelayAPI(listens_after_s=0.1, fail_first=True)
    runtime = _runtime(api, relay=True)
    try:
        waiting = await asyncio.gather(
            runtime.relay_address(), runtime.relay_address(), return_exceptions=True
        )
        assert [type(result) for result in waiting] == [BackendError, BackendError]
        assert "no such image" in str(waiting[0])
        assert api.relays_made == 1  # one start, reported to both
        address = await runtime.relay_address()  # a later call starts again
    finally:
        runtime.close()
    assert address.port == 40000
    assert api.relays_made == 2


async def test_a_relay_that_stops_answering_is_replaced_once() -> None:
    api = FakeSlowRelayAPI(listens_after_s=0.0)
    runtime = _runtime(api, relay=True)
    try:
        old = await runtime.relay_address()
        runtime._relay_lost(old)
        runtime._relay_lost(old)  # two connections saw it: still one replacement
        new = await runtime.relay_address()
        runtime._relay_lost(old)  # a late report about the old one: the new one stays
        assert await runtime.relay_address() is new
    finally:
        runtime.close()
    assert new is not old
    assert api.relays_made == 2


async def test_a_crashed_runs_relay_goes_before_the_prune_so_its_spares_go_too() -> None:
    api = FakeSwarmAPI()
    crashed = _runtime(api, relay=True)
    kept = await crashed.start(_spec())
    await _background_done(crashed)
    assert len(api.overlays) == 1 + SPARES_PER_KIND  # joined by the relay left running
    restarted = _runtime(api, relay=True)
    try:
        await restarted.relay_address()
        await _background_done(restarted)
    finally:
        restarted.close()
        crashed._pool.shutdown()  # its threads only: the crash left the rest behind
    assert set(api.overlays) == set(network_targets(api.by_id[kept.id]))
