"""The label codec: what a session writes into its container's labels reads back as
the same session, and a label set this server could not have written is no session."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from sandbox.backends import RESOURCE_TYPES
from sandbox.config import DEFAULT_TENANT, ResourceLimits
from sandbox.runtime.docker import LABEL_RESOURCE, LABEL_TOKEN, ContainerRecord
from sandbox.sessions.applied import applied_config
from sandbox.sessions.labels import (
    created_at,
    decode_config,
    pool_labels,
    session_from_labels,
    session_labels,
    session_seq,
)
from sandbox.sessions.registry import ToolRegistry
from sandbox.sessions.table import Session, SessionState, new_session_id

REGISTRY = ToolRegistry(RESOURCE_TYPES)
DEFAULTS = ResourceLimits()
NOW = 1_700_000_100.0
TTL = 600.0


def _session(resource: str = "vm", tenant: str = "acme", **config: Any) -> tuple[Session, Any]:
    kind = REGISTRY.resource(resource)
    validated = REGISTRY.validate_config(kind, config)
    session_id = new_session_id(resource, "w-1", 7)
    session = Session(
        session_id=session_id,
        session_name="my desk",
        worker_id="w-1",
        resource_type=resource,
        config=applied_config(kind, validated, DEFAULTS),
        token="tok",
        created_at=1_700_000_000.125,
        expires_at=0.0,
        last_used_at=0.0,
        auto_created=True,
        tenant=tenant,
    )
    return session, validated


def _record(labels: dict[str, str], *, status: str = "running") -> ContainerRecord:
    return ContainerRecord(
        id="c0ffee",
        name="sandbox-x",
        labels={LABEL_TOKEN: "tok", **labels},
        status=status,
        exit_code=None,
        oom_killed=False,
        agent_url="unix:///run/sandbox/x/agent.sock",
    )


def _decode(labels: dict[str, str], record: ContainerRecord | None = None) -> Session | None:
    record = record or _record(labels)
    return session_from_labels(labels, record, REGISTRY, DEFAULTS, ttl_s=TTL, now=NOW)


def _written(session: Session, config: Any) -> dict[str, str]:
    """The labels a cold start gives the container (build_spec adds the resource)."""
    return {LABEL_RESOURCE: session.resource_type, **session_labels(session, config)}


@pytest.mark.parametrize(
    ("resource", "tenant", "config"),
    [
        ("vm", "acme", {"screen_size": "1024x768", "pids": 64}),
        ("bash", DEFAULT_TENANT, {}),
        ("code", "t2", {"memory": "1g", "network": True}),
    ],
)
def test_labels_round_trip_to_the_same_session(
    resource: str, tenant: str, config: dict[str, Any]
) -> None:
    session, validated = _session(resource, tenant, **config)
    decoded = _decode(_written(session, validated))
    assert decoded is not None
    expected = replace(
        session,
        state=SessionState.READY,
        container_id="c0ffee",
        agent_url="unix:///run/sandbox/x/agent.sock",
        expires_at=NOW + TTL,
        last_used_at=NOW,
    )
    assert decoded == expected


def test_labels_hold_what_was_asked_and_the_decoder_fills_the_defaults() -> None:
    session, validated = _session("bash")
    labels = _written(session, validated)
    assert labels["sandbox.config"] == "{}", "defaults are the server's, not the container's"
    decoded = _decode(labels)
    assert decoded is not None
    assert decoded.config["pids"] == DEFAULTS.pids


def test_a_claim_merged_over_pool_labels_decodes_as_the_claimed_session() -> None:
    session, validated = _session("bash")
    pool = {LABEL_RESOURCE: "bash", **pool_labels("bash-0123456789", validated, 5.0)}
    claim = _written(session, validated)
    decoded = _decode({**pool, **claim})
    assert decoded is not None
    assert (decoded.session_id, decoded.worker_id, decoded.tenant) == (
        session.session_id,
        "w-1",
        "acme",
    )
    assert decoded.created_at == pytest.approx(session.created_at, abs=1e-3)


def test_labels_without_a_tenant_belong_to_the_default_tenant() -> None:
    session, validated = _session("bash")
    labels = _written(session, validated)
    del labels["sandbox.tenant"]  # written before tenants existed
    decoded = _decode(labels)
    assert decoded is not None
    assert decoded.tenant == DEFAULT_TENANT


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({LABEL_RESOURCE: "nosuch"}, "an unknown resource type"),
        ({LABEL_RESOURCE: "rag"}, "a shared type's sessions live in its service"),
        ({LABEL_RESOURCE: "bash", "sandbox.config": "{}"}, "a vm session id on a bash container"),
        ({"sandbox.worker": "bob/../alice"}, "a worker id the API refuses"),
        ({"sandbox.worker": ""}, "no worker"),
        ({"sandbox.session": "bash_w-1_007_nothex!!"}, "a session id no server makes"),
        ({"sandbox.config": "{not json"}, "unreadable config"),
        ({"sandbox.config": "[1, 2]"}, "a config that is not an object"),
        ({"sandbox.config": '{"pids": 1}'}, "a config the model refuses"),
        ({"sandbox.config": '{"privileged": true}'}, "a config field that does not exist"),
        ({"sandbox.created": "yesterday"}, "an unreadable creation time"),
        ({"sandbox.created": "nan"}, "a creation time that is no time"),
        ({"sandbox.created": "-5"}, "a negative creation time"),
    ],
)
def test_a_label_set_this_server_could_not_have_written_is_no_session(
    change: dict[str, str], why: str
) -> None:
    session, validated = _session("vm")
    labels = {**_written(session, validated), **change}
    assert _decode(labels) is None, why


def test_a_stopped_or_tokenless_container_is_no_session() -> None:
    session, validated = _session("bash")
    labels = _written(session, validated)
    assert _decode(labels, _record(labels, status="exited")) is None
    tokenless = _record(labels)
    del tokenless.labels[LABEL_TOKEN]
    assert _decode(labels, tokenless) is None


def test_pool_labels_decode_to_their_resource_and_config() -> None:
    kind = REGISTRY.resource("vm")
    config = REGISTRY.validate_config(kind, {"screen_size": "800x600"})
    labels = {LABEL_RESOURCE: "vm", **pool_labels("vm-abc", config, 12.5)}
    decoded = decode_config(labels, REGISTRY)
    assert decoded is not None
    assert decoded == (kind, config)
    assert created_at(labels) == 12.5
    assert created_at({}) is None


@pytest.mark.parametrize(
    ("session_id", "seq"),
    [
        ("bash_w1_001_ab12cd34", 1),
        ("my_type_worker_with_underscores_1234_00ff00ff", 1234),
        ("bash_w1_ab12cd34", None),
        ("whatever", None),
    ],
)
def test_session_seq_reads_the_sequence_number_back(session_id: str, seq: int | None) -> None:
    assert session_seq(session_id) == seq
