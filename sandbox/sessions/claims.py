"""Claims of pool containers, signed so that no container can forge one.

A warm pool's container is started before anyone asks for it, so its labels name
no worker; when a session claims it, the server stores the claim (worker, session
id, name, config, tenant: every field of the session's labels) in the container's
agent, since labels cannot change on a running container. After a restart that
claim is all the server has to go on, and the container could have rewritten it
to name another worker's session. So the claim is stored with an HMAC-SHA256 over
the server id, the container id and the whole claim, keyed by a secret only the
server reads: a container can neither write a claim of its own nor replay one
taken from another container, and fields added to the claim later are covered
without a change here.

The secret is one random key per server id in a 0600 file beside the server's
socket directories (``<socket_dir>/<server>.claim-key``): the server's own state,
which survives a restart as the containers do, and which no container can read
(each mounts only its own socket subdirectory, and containers with network mount
none). Losing the file loses nothing but the claims: they no longer verify, so
the containers are removed, never adopted by the wrong worker. The socket root
may be shared (in /tmp, whoever makes it first owns it), so a key file that is a
symlink, another user's or writable by others is refused at start, never used.

A signature proves that a claim was made, not that none was: a claimed container
that later shows no claim at all would pass for an unclaimed pool member and be
handed to the next worker, with the files of the last one. So each claim also
leaves a marker in the server's own state (`ClaimedContainers`); a pool container
with a marker and no valid claim is refused like a forged one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..runtime.sockets import check_private

log = logging.getLogger(__name__)

_KEY_BYTES = 32
_CONTAINER_ID = re.compile(r"[A-Za-z0-9]{1,64}")


class ForgedClaim(ValueError):
    """A stored claim whose MAC does not verify for this server and container."""


class ClaimSigner:
    """Signs claims for containers and verifies what containers give back.

    Args:
        key: The server's secret.
        server_id: This server's id, bound into every MAC.
    """

    def __init__(self, key: bytes, server_id: str) -> None:
        self._key = key
        self._server_id = server_id

    @classmethod
    def load(cls, path: Path, server_id: str) -> ClaimSigner:
        """The signer keyed by the secret in `path`, made (mode 0600) on first use.

        Raises:
            BackendError: The file there is not one this server could have made
                (see `check_private`).
            ValueError: The file holds no key.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            return cls(_read_key(path), server_id)
        key = secrets.token_bytes(_KEY_BYTES)
        with os.fdopen(fd, "w") as file:
            file.write(key.hex())
        log.info("made a new claim key in %s", path)
        return cls(key, server_id)

    def sign(self, container_id: str, claim: dict[str, str]) -> dict[str, Any]:
        """What to store in the container: the claim and its MAC."""
        return {"claim": dict(claim), "mac": self._mac(container_id, claim)}

    def verify(self, container_id: str, stored: object) -> dict[str, str]:
        """The claim `stored` holds, if this server signed it for this container.

        Raises:
            ForgedClaim: Not a signed claim, signed for another container or
                server, or changed since.
        """
        if not isinstance(stored, dict) or set(stored) != {"claim", "mac"}:
            raise ForgedClaim("not a signed claim")
        claim, mac = stored["claim"], stored["mac"]
        if not isinstance(claim, dict) or not isinstance(mac, str):
            raise ForgedClaim("not a signed claim")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in claim.items()):
            raise ForgedClaim("a claim holds strings only")
        if not hmac.compare_digest(self._mac(container_id, claim), mac):
            raise ForgedClaim("its MAC does not verify for this container")
        return dict(claim)

    def _mac(self, container_id: str, claim: dict[str, str]) -> str:
        message = json.dumps(
            {"server": self._server_id, "container": container_id, "claim": claim},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()


class ClaimedContainers:
    """The pool containers this server claimed: one empty file each, in `directory`.

    Args:
        directory: Where the markers live (``<socket_dir>/<server>.claimed``, beside
            the claim key, where no container can write).

    Raises:
        BackendError: `directory` exists and is not the server's own (`check_private`).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        if directory.exists() or directory.is_symlink():
            # Markers another user could delete would let a claimed container pass
            # for an unclaimed one (see the module's docstring).
            check_private(directory, os.lstat(directory), directory=True)

    def add(self, container_id: str) -> None:
        """Record that `container_id` was claimed (before its claim is stored)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.directory / _checked(container_id)).touch()

    def discard(self, container_id: str) -> None:
        """Forget a container that is gone."""
        if _CONTAINER_ID.fullmatch(container_id):
            (self.directory / container_id).unlink(missing_ok=True)

    def __contains__(self, container_id: object) -> bool:
        if not isinstance(container_id, str) or not _CONTAINER_ID.fullmatch(container_id):
            return False
        return (self.directory / container_id).exists()

    def prune(self, keep: Iterable[str | None]) -> None:
        """Forget every container but those in `keep`."""
        kept = set(keep)
        if self.directory.is_dir():
            for marker in self.directory.iterdir():
                if marker.name not in kept:
                    marker.unlink(missing_ok=True)

    def remove_all(self) -> None:
        """Drop the record (a clean stop leaves no claimed container)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _read_key(path: Path) -> bytes:
    """The key in an existing key file, once the file proves to be the server's own."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        check_private(path, os.lstat(path), directory=False)  # names a symlink as such
        raise
    with os.fdopen(fd, "rb") as file:
        st = os.fstat(fd)
        check_private(path, st, directory=False)
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o600)  # a key others could read signs nothing
        text = file.read(4 * _KEY_BYTES + 2)  # a hex key and a newline, no more
    try:
        key = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) < _KEY_BYTES:
        raise ValueError(f"the claim key in {path} is not a key of {_KEY_BYTES} bytes; remove it")
    return key


def _checked(container_id: str) -> str:
    if not _CONTAINER_ID.fullmatch(container_id):
        raise ValueError(f"{container_id!r} is not a container id")
    return container_id
