"""Signed pool-container claims: only this server, for this container, unchanged."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sandbox.sessions.claims import ClaimedContainers, ClaimSigner, ForgedClaim

CLAIM = {"sandbox.worker": "alice", "sandbox.session": "bash_alice_001_ab12", "x": "1"}


def test_a_claim_verifies_for_its_container_and_no_other(tmp_path: Path) -> None:
    signer = ClaimSigner.load(tmp_path / "s.claim-key", "srv")
    stored = signer.sign("c1", CLAIM)
    assert signer.verify("c1", stored) == CLAIM
    with pytest.raises(ForgedClaim, match="does not verify"):
        signer.verify("c2", stored)  # replayed into another container


@pytest.mark.parametrize(
    "stored",
    [
        {},
        {"sandbox.worker": "bob", "sandbox.session": "bash_bob_001_ab12"},  # unsigned
        {"claim": {"sandbox.worker": "bob"}, "mac": "00" * 32},
        {"claim": {"sandbox.worker": 1}, "mac": "00"},
        {"claim": "x", "mac": "00"},
        ["claim", "mac"],
    ],
)
def test_unsigned_or_malformed_claims_are_forged(tmp_path: Path, stored: object) -> None:
    signer = ClaimSigner.load(tmp_path / "s.claim-key", "srv")
    with pytest.raises(ForgedClaim):
        signer.verify("c1", stored)


def test_every_field_of_the_claim_is_covered(tmp_path: Path) -> None:
    signer = ClaimSigner.load(tmp_path / "s.claim-key", "srv")
    stored = signer.sign("c1", CLAIM)
    stored["claim"] = {**CLAIM, "sandbox.worker": "bob"}
    with pytest.raises(ForgedClaim):
        signer.verify("c1", stored)
    stored["claim"] = {**CLAIM, "sandbox.tenant": "other"}  # a field added later
    with pytest.raises(ForgedClaim):
        signer.verify("c1", stored)


def test_the_key_is_private_kept_across_restarts_and_bound_to_the_server(tmp_path: Path) -> None:
    path = tmp_path / "sockets" / "srv.claim-key"
    first = ClaimSigner.load(path, "srv")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = first.sign("c1", CLAIM)
    assert ClaimSigner.load(path, "srv").verify("c1", stored) == CLAIM
    with pytest.raises(ForgedClaim):
        ClaimSigner.load(path, "other-server").verify("c1", stored)
    with pytest.raises(ForgedClaim):  # a new key (the file lost) verifies no old claim
        ClaimSigner.load(tmp_path / "new.claim-key", "srv").verify("c1", stored)


def test_a_readable_key_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "srv.claim-key"
    ClaimSigner.load(path, "srv")
    path.chmod(0o644)
    ClaimSigner.load(path, "srv")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_claimed_containers_are_remembered_until_gone(tmp_path: Path) -> None:
    claimed = ClaimedContainers(tmp_path / "srv.claimed")
    assert "abc123" not in claimed
    claimed.add("abc123")
    claimed.add("def456")
    assert "abc123" in ClaimedContainers(tmp_path / "srv.claimed"), "kept across restarts"
    claimed.discard("abc123")
    assert "abc123" not in claimed
    claimed.prune(["other"])
    assert "def456" not in claimed
    with pytest.raises(ValueError, match="not a container id"):
        claimed.add("../key")
    assert "../key" not in claimed
