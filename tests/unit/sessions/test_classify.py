"""Recovery classification: what each container of an earlier run is taken for.

Docker and the agents are faked; the records are what `docker ps` would list."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.backends import RESOURCE_TYPES
from sandbox.recording.videos import VideoStore
from sandbox.runtime.docker import (
    LABEL_MANAGED,
    LABEL_RESOURCE,
    LABEL_SERVER,
    LABEL_TOKEN,
    ContainerRecord,
)
from sandbox.runtime.images import ImageService
from sandbox.runtime.sockets import SocketDirs
from sandbox.sessions.claims import ClaimedContainers, ClaimSigner
from sandbox.sessions.containers import AgentContainers
from sandbox.sessions.context import SessionContext
from sandbox.sessions.labels import pool_labels
from sandbox.sessions.pools import WarmPools
from sandbox.sessions.recovery import Kind, Recovery
from sandbox.sessions.registry import ToolRegistry
from sandbox.sessions.screen_recordings import ScreenRecordings
from sandbox.sessions.service_sessions import ServiceSessions
from sandbox.sessions.services import SharedServices
from sandbox.sessions.table import SessionTable
from sandbox.sessions.tasks import Background
from tests.unit.fakes import FakeAgents, FakeRuntime
from tests.unit.server.conftest import make_settings

SESSION_ID = "bash_w1_004_0a0b0c0d"
SESSION_LABELS = {
    LABEL_RESOURCE: "bash",
    "sandbox.worker": "w1",
    "sandbox.session": SESSION_ID,
    "sandbox.config": "{}",
    "sandbox.created": "100.000",
    "sandbox.tenant": "acme",
}


class World:
    """A `Recovery` over fakes, and the claim signer the earlier run used."""

    def __init__(self, tmp: Path) -> None:
        self.runtime = FakeRuntime()
        self.agents = FakeAgents(self.runtime)
        settings = make_settings(socket_dir=tmp / "sockets")
        registry = ToolRegistry(RESOURCE_TYPES)
        sockets = SocketDirs(settings.socket_dir, settings.server_id)
        images = ImageService(self.runtime, tmp / "images", settings.image_namespace)
        containers = AgentContainers(settings, self.runtime, self.agents, images, sockets)
        self.table = SessionTable()
        self.signer = ClaimSigner.load(tmp / "key", settings.server_id)
        self.claimed = ClaimedContainers(tmp / "claimed")
        ctx = SessionContext(
            settings=settings,
            runtime=self.runtime,
            agents=self.agents,
            registry=registry,
            images=images,
            table=self.table,
            sockets=sockets,
            background=Background(),
            containers=containers,
            services=SharedServices(settings, self.runtime, self.agents, containers),
            pools=WarmPools(settings, containers, self.agents, lambda: False),
            claims=self.signer,
            claimed=self.claimed,
            recordings=ScreenRecordings(
                settings.screen_recording, self.agents, VideoStore(tmp / "videos", 0)
            ),
        )
        self.recovery = Recovery(ctx, ServiceSessions(ctx))

    def container(self, labels: dict[str, str], *, running: bool = True) -> ContainerRecord:
        number = len(self.runtime.containers) + 1
        record = ContainerRecord(
            id=f"c{number:03d}",
            name=f"sandbox-{number}",
            labels={
                LABEL_MANAGED: "1",
                LABEL_SERVER: "unit",
                LABEL_TOKEN: f"tok{number}",
                **labels,
            },
            status="running" if running else "exited",
            exit_code=None if running else 0,
            oom_killed=False,
            agent_url=f"http://agent-{number}",
        )
        self.runtime.containers[record.id] = record
        return record

    def pool_member(self, claim: dict[str, object] | None = None) -> ContainerRecord:
        config = ToolRegistry(RESOURCE_TYPES).validate_config(RESOURCE_TYPES[0], {})
        record = self.container({LABEL_RESOURCE: "bash", **pool_labels("bash-1", config, 1.0)})
        if claim is not None:
            self.agents.meta[str(record.agent_url)] = claim
        return record


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


async def test_a_service_container_is_left_to_the_service_adoption(world: World) -> None:
    record = world.container({"sandbox.service": "rag"})
    assert await world.recovery.classify(record) == (Kind.SERVICE, None)


async def test_a_labelled_session_container_whose_agent_answers_is_its_session(
    world: World,
) -> None:
    kind, session = await world.recovery.classify(world.container(SESSION_LABELS))
    assert kind is Kind.SESSION
    assert session is not None
    assert (session.tenant, session.worker_id, session.session_id) == ("acme", "w1", SESSION_ID)
    assert world.table.next_seq("w1", "acme") == 5, "new sessions number after the adopted one"


async def test_a_session_container_with_labels_no_server_writes_is_removed(
    world: World,
) -> None:
    record = world.container({**SESSION_LABELS, "sandbox.worker": "a/b"})
    assert await world.recovery.classify(record) == (Kind.SESSION, None)
    await world.recovery.recover()
    assert record.id not in world.runtime.containers


async def test_an_unclaimed_pool_member_goes_back_to_its_pool(world: World) -> None:
    record = world.pool_member()
    assert await world.recovery.classify(record) == (Kind.POOL, None)


async def test_a_claimed_pool_member_is_the_session_its_signed_claim_names(world: World) -> None:
    record = world.pool_member()
    world.agents.meta[str(record.agent_url)] = world.signer.sign(record.id, SESSION_LABELS)
    world.claimed.add(record.id)
    kind, session = await world.recovery.classify(record)
    assert kind is Kind.SESSION
    assert session is not None
    assert (session.container_id, session.worker_id) == (record.id, "w1")


@pytest.mark.parametrize("how", ["another container's claim", "unsigned", "wiped"])
async def test_a_pool_member_with_a_claim_that_does_not_verify_is_forged(
    world: World, how: str
) -> None:
    record = world.pool_member()
    world.claimed.add(record.id)
    stored: dict[str, object] = {
        "another container's claim": world.signer.sign("c999", SESSION_LABELS),
        "unsigned": dict(SESSION_LABELS),
        "wiped": {},  # the server claimed it: an empty claim is no way back into the pool
    }[how]
    world.agents.meta[str(record.agent_url)] = stored
    assert await world.recovery.classify(record) == (Kind.FORGED, None)


async def test_a_stopped_or_silent_pool_member_is_an_orphan(world: World) -> None:
    stopped = world.container({LABEL_RESOURCE: "bash", "sandbox.pool": "bash-1"}, running=False)
    assert await world.recovery.classify(stopped) == (Kind.ORPHAN, None)
    silent = world.pool_member()
    del world.runtime.containers[silent.id]  # its agent no longer answers
    assert await world.recovery.classify(silent) == (Kind.ORPHAN, None)
