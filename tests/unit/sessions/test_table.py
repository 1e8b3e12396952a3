"""The session table: expiry by the injected clock, keys per tenant, sequence numbers."""

from __future__ import annotations

from sandbox.sessions.table import Session, SessionState, SessionTable

T0 = 1_700_000_000.0


def _session(worker: str = "w1", *, tenant: str = "default", ttl: float = 60.0) -> Session:
    return Session(
        session_id=f"bash_{worker}_001_00000000",
        session_name=worker,
        worker_id=worker,
        resource_type="bash",
        config={},
        token="t",
        created_at=T0,
        expires_at=T0 + ttl,
        last_used_at=T0,
        state=SessionState.READY,
        tenant=tenant,
    )


def test_touch_pushes_the_expiry_and_never_shortens_it() -> None:
    session = _session(ttl=600)
    session.touch(60, T0 + 10)
    assert (session.last_used_at, session.expires_at) == (T0 + 10, T0 + 600)
    session.touch(60, T0 + 590)
    assert (session.last_used_at, session.expires_at) == (T0 + 590, T0 + 650)


def test_only_ready_idle_sessions_past_their_expiry_are_expired() -> None:
    table = SessionTable()
    idle, busy, starting, fresh = (_session(w) for w in ("idle", "busy", "starting", "fresh"))
    busy.active_calls = 1
    starting.state = SessionState.STARTING
    fresh.expires_at = T0 + 120
    for session in (idle, busy, starting, fresh):
        table.put(session)
    assert table.expired(T0 + 59) == []
    assert table.expired(T0 + 60) == [idle], "due at its expiry, not a tick later"
    assert sorted(s.worker_id for s in table.expired(T0 + 120)) == ["fresh", "idle"]


def test_popping_a_replaced_session_leaves_its_successor() -> None:
    table = SessionTable()
    old, new = _session(), _session()
    table.put(old)
    table.put(new)
    assert table.pop(old.key, old) is None
    assert table.get(new.key) is new
    assert table.pop(new.key, new) is new
    assert len(table) == 0


def test_tenants_share_worker_ids_but_not_sessions_or_sequence_numbers() -> None:
    table = SessionTable()
    table.put(_session(tenant="alpha"))
    table.put(_session(tenant="beta"))
    assert [s.tenant for s in table.of_worker("w1", "alpha")] == ["alpha"]
    assert len(table.all()) == 2
    assert [table.next_seq("w1", "alpha"), table.next_seq("w1", "alpha")] == [1, 2]
    assert table.next_seq("w1", "beta") == 1
    table.note_seq("w1", 7, "beta")
    assert table.next_seq("w1", "beta") == 8
