"""The server's own state in a shared socket root: nothing another user planted is used.

In /tmp whoever makes the root first owns it, and could leave a claim key (to
forge claims) or this server's directory (to watch or swap its agents' sockets).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.errors import BackendError
from sandbox.runtime.sockets import SocketDirs
from sandbox.sessions.claims import ClaimedContainers, ClaimSigner
from tests.unit.server.conftest import make_settings, open_harness

OTHER_UID = 12345
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def _key(path: Path) -> Path:
    path.write_text(os.urandom(32).hex())
    path.chmod(0o600)
    return path


def test_a_symlinked_key_is_refused(tmp_path: Path) -> None:
    target = _key(tmp_path / "elsewhere")
    (tmp_path / "srv.claim-key").symlink_to(target)
    with pytest.raises(BackendError, match="is a symlink"):
        ClaimSigner.load(tmp_path / "srv.claim-key", "srv")


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_a_key_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = _key(tmp_path / "srv.claim-key")
    path.chmod(mode)
    with pytest.raises(BackendError, match="writable by others"):
        ClaimSigner.load(path, "srv")


@needs_root
def test_a_key_of_another_user_is_refused(tmp_path: Path) -> None:
    path = _key(tmp_path / "srv.claim-key")
    os.chown(path, OTHER_UID, OTHER_UID)
    with pytest.raises(BackendError, match=f"owned by uid {OTHER_UID}"):
        ClaimSigner.load(path, "srv")


@pytest.mark.parametrize("content", ["not hex at all", "abcd", "\xff" * 10])
def test_a_file_holding_no_key_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "srv.claim-key"
    path.write_text(content, encoding="latin-1")
    path.chmod(0o600)
    with pytest.raises(ValueError, match="not a key of 32 bytes"):
        ClaimSigner.load(path, "srv")


def test_the_servers_own_directory_is_made_private(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv").chmod(0o755)  # an earlier run's, made under another umask
    sockets = SocketDirs(tmp_path, "srv")
    sockets.create()
    assert (sockets.base.stat().st_mode & 0o777) == 0o700


def test_a_symlink_in_place_of_the_servers_directory_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "srv").symlink_to(elsewhere)
    with pytest.raises(BackendError, match="is a symlink"):
        SocketDirs(tmp_path, "srv").create()
    assert list(elsewhere.iterdir()) == [], "nothing is made through the link"


def test_a_servers_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv").chmod(0o777)
    with pytest.raises(BackendError, match="writable by others"):
        SocketDirs(tmp_path, "srv").prepare()


@needs_root
def test_a_servers_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir(mode=0o700)
    os.chown(tmp_path / "srv", OTHER_UID, OTHER_UID)
    with pytest.raises(BackendError, match=f"owned by uid {OTHER_UID}"):
        SocketDirs(tmp_path, "srv").prepare()


@needs_root
def test_a_shared_root_of_another_user_is_accepted(tmp_path: Path) -> None:
    # CI: the server runs as root in a root left owned by the compose tests' uid 10001.
    os.chown(tmp_path, 10001, 10001)
    directory = SocketDirs(tmp_path, "srv").create()
    assert directory.parent == tmp_path / "srv"
    assert (directory.parent.stat().st_uid, directory.parent.stat().st_mode & 0o777) == (0, 0o700)
    signer = ClaimSigner.load(tmp_path / "srv.claim-key", "srv")
    again = ClaimSigner.load(tmp_path / "srv.claim-key", "srv")
    assert again.verify("c1", signer.sign("c1", {"sandbox.worker": "w1"})) == {
        "sandbox.worker": "w1"
    }, "the key made in the shared root is the one read back"


@needs_root
def test_claim_markers_of_another_user_are_refused(tmp_path: Path) -> None:
    (tmp_path / "srv.claimed").mkdir(mode=0o700)
    os.chown(tmp_path / "srv.claimed", OTHER_UID, OTHER_UID)
    with pytest.raises(BackendError, match=r"srv\.claimed"):
        ClaimedContainers(tmp_path / "srv.claimed")


async def test_the_server_refuses_to_start_on_a_planted_directory(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "unit").symlink_to(elsewhere)  # make_settings' server id is "unit"
    h = await open_harness(make_settings(socket_dir=tmp_path))
    with pytest.raises(BackendError, match="unit is a symlink"):
        async with h.app.router.lifespan_context(h.app):
            pass
    await h.client.aclose()
