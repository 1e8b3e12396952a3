"""A session's own uid: chosen by the server, checked by the agent, named by the image."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.agent.desktop import early
from sandbox.agent.identity import (
    SESSION_UID_ENV,
    SESSION_UIDS,
    SESSION_USER_ENV,
    SessionUser,
    append_session_users,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a session user needs a root agent")
UID = SESSION_UIDS[7]


@needs_root
def test_the_servers_uid_replaces_the_images_but_keeps_the_name_and_home() -> None:
    user = SessionUser.current({SESSION_USER_ENV: "nobody", SESSION_UID_ENV: str(UID)})
    assert user == SessionUser(uid=UID, gid=UID, name="nobody", home="/nonexistent")
    assert user.popen_kwargs() == {"user": UID, "group": UID, "extra_groups": []}


@needs_root
@pytest.mark.parametrize("uid", ["0", "1000", str(SESSION_UIDS.stop), "-5", "12a"])
def test_a_uid_outside_the_session_range_stops_the_agent(uid: str) -> None:
    with pytest.raises(LookupError, match="is not a session uid"):
        SessionUser.current({SESSION_USER_ENV: "nobody", SESSION_UID_ENV: uid})


@needs_root
def test_without_a_uid_the_images_user_is_the_session_user() -> None:
    user = SessionUser.current({SESSION_USER_ENV: "nobody"})
    assert user is not None
    assert user.uid == 65534


@needs_root
def test_xvfb_starts_under_the_sessions_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(early.USER_ENV, "nobody")
    monkeypatch.setenv(early.UID_ENV, str(UID))
    assert early.session_user_prefix() == [
        "setpriv",
        f"--reuid={UID}",
        f"--regid={UID}",
        "--clear-groups",
        "--",
    ]


def test_the_image_names_every_session_uid_once(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\nsandbox:x:1000:1000::/home/sandbox:/bin/bash\n"
    )
    (tmp_path / "group").write_text("root:x:0:\nsandbox:x:1000:\n")
    assert append_session_users("sandbox", str(tmp_path)) == len(SESSION_UIDS)
    assert append_session_users("sandbox", str(tmp_path)) == 0, "a second run adds nothing"
    passwd = (tmp_path / "passwd").read_text().splitlines()
    group = (tmp_path / "group").read_text().splitlines()
    assert passwd[2] == f"sandbox:x:{SESSION_UIDS[0]}:{SESSION_UIDS[0]}::/home/sandbox:/bin/bash"
    assert len(passwd) == 2 + len(SESSION_UIDS)
    assert group[-1] == f"sandbox:x:{SESSION_UIDS[-1]}:"


def test_an_image_without_the_user_cannot_name_the_uids(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "group").write_text("root:x:0:\n")
    with pytest.raises(LookupError, match="no user 'sandbox'"):
        append_session_users("sandbox", str(tmp_path))
