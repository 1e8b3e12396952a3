"""Session uids: distinct among live containers, reused last, adopted from labels."""

from __future__ import annotations

import pytest

from sandbox.errors import ErrorCode, SessionError
from sandbox.runtime.docker import LABEL_UID, ContainerRecord
from sandbox.sessions.uids import SessionUids


def _record(container_id: str, uid: str | None) -> ContainerRecord:
    labels = {LABEL_UID: uid} if uid is not None else {}
    return ContainerRecord(container_id, container_id, labels, "running", None, False, None)


def test_live_containers_never_share_a_uid_and_a_freed_uid_is_reused_last() -> None:
    uids = SessionUids(range(500, 503))
    first, second = uids.take(), uids.take()
    uids.bind("a", first)
    uids.bind("b", second)
    assert first != second
    uids.release_container("a")
    assert uids.take() == 502  # not the uid just freed
    assert uids.take() == first


def test_a_full_range_is_a_session_error_until_a_container_goes() -> None:
    uids = SessionUids(range(500, 502))
    uids.bind("a", uids.take())
    uids.take()
    with pytest.raises(SessionError) as caught:
        uids.take()
    assert caught.value.code is ErrorCode.SESSION_ERROR
    assert "all 2 session uids are taken" in caught.value.message
    uids.release_container("a")
    assert uids.take() == 500


def test_a_start_that_failed_gives_its_uid_back() -> None:
    uids = SessionUids(range(500, 501))
    uids.release(uids.take())
    assert uids.take() == 500


def test_an_earlier_runs_containers_keep_their_labelled_uids() -> None:
    uids = SessionUids(range(500, 504))
    uids.adopt(
        [
            _record("a", "500"),
            _record("b", "502"),
            _record("old", "1000"),  # outside the range: an older server's container
            _record("forged", "x"),
            _record("none", None),
        ]
    )
    assert len(uids) == 2
    assert [uids.take(), uids.take()] == [501, 503]
    uids.release_container("b")
    assert uids.take() == 502
