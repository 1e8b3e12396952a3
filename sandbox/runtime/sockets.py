"""Host directories holding the agents' Unix sockets: how the server reaches every agent.

Every container, with network or without, gets a fresh host directory mounted at
`AGENT_SOCKET_DIR`; its agent reads its token there and listens on ``agent.sock``
in it, and the server connects to that socket. No agent listens on a network, so
nothing on a network can reach one. One directory per container, under
``<root>/<server id>/``, removed with the container.

Who may reach a directory: on the host, the server's own user alone (the
``<server id>`` directory is 0700); in the container, root alone (the images make
the mount's parent ``/run/sandbox`` root's, 0700), not the session user. The
directory itself is open (0777) because the agent that must create its socket
there is a root without capabilities (or, in the rag image, uid 1000): neither
may write a directory of another owner that is not open to all.

The root (``/tmp/sandbox-agents`` by default) may be shared with other servers
and users, and in /tmp whoever makes it first owns it; so the server checks what
it relies on, not the root: its own directory must be a real directory owned by
the server's user and writable by no one else (`check_private`), else it refuses
to use it.

What is in a directory was written by its container, so removing it may take
long (a compromised agent can leave hundreds of thousands of files, or a deep
tree): every removal runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from ..errors import BackendError
from .docker import AGENT_SOCKET_DIR, AGENT_SOCKET_ENV

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_UNIX = "unix://"
# A Unix socket path holds at most 107 bytes; keep ours well inside that.
_MAX_SERVER_PART = 24

log = logging.getLogger(__name__)


def _rmtree(directory: Path) -> None:
    """Remove `directory` and whatever its container left in it, never raising.

    shutil's fd-based removal recurses once per level: a tree deeper than the
    interpreter's recursion limit stays behind (logged) instead of failing the
    destroy that removes it.
    """
    try:
        shutil.rmtree(directory, ignore_errors=True)
    except RecursionError:
        log.warning("socket directory %s is too deep to remove; left in place", directory)


def check_private(path: Path, st: os.stat_result, *, directory: bool) -> None:
    """Refuse state of the server's (`st`, from lstat or fstat of `path`) that another
    user could have planted or may change: a symlink, another kind of file, another
    owner than the server's effective user, or group/world write permission.

    Raises:
        BackendError: Saying which, and that the operator must remove it.
    """
    kind = "directory" if directory else "regular file"
    problem = None
    if stat.S_ISLNK(st.st_mode):
        problem = "is a symlink"
    elif (stat.S_ISDIR if directory else stat.S_ISREG)(st.st_mode) is False:
        problem = f"is not a {kind}"
    elif st.st_uid != os.geteuid():
        problem = f"is owned by uid {st.st_uid}, not by this server's uid {os.geteuid()}"
    elif st.st_mode & 0o022:
        problem = f"is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    if problem is not None:
        raise BackendError(
            f"{path} {problem}: another user may have made it to control this server's "
            f"state; remove it (or choose another socket_dir) and start again"
        )


class SocketDirs:
    """Creates and removes the per-container socket directories of one server.

    Args:
        root: The host directory under which every server keeps its own.
        server_id: This server's id (its directories are kept apart).
    """

    def __init__(self, root: Path, server_id: str) -> None:
        self.base = root / _UNSAFE.sub("-", server_id)[:_MAX_SERVER_PART]
        self._root_checked = False

    def prepare(self) -> None:
        """Make this server's directory (0700), or check the one there is its own.

        Raises:
            BackendError: It is a symlink, not a directory, another user's, or
                writable by others (see `check_private`).
        """
        root = self.base.parent
        root.mkdir(parents=True, exist_ok=True)
        if not self._root_checked:
            self._root_checked = True
            owner = root.stat().st_uid
            if owner not in (os.geteuid(), 0):
                # Shared roots are legitimate (a server container's user made it), but
                # its owner can rename what is in it: say so once.
                log.warning(
                    "socket root %s belongs to uid %d, who can replace this server's "
                    "directories in it; give each server a root of its own to avoid that",
                    root,
                    owner,
                )
        with contextlib.suppress(FileExistsError):
            self.base.mkdir(mode=0o700)
        check_private(self.base, os.lstat(self.base), directory=True)
        # The way in is the server's alone, whatever the umask made of it.
        os.chmod(self.base, 0o700)

    def create(self) -> Path:
        """A new, empty directory the container's agent can create its socket in."""
        self.prepare()
        directory = self.base / secrets.token_hex(6)
        directory.mkdir()
        # Not sticky: the agent removes the token file the server wrote.
        os.chmod(directory, 0o777)
        return directory

    @staticmethod
    def mount(directory: Path) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        """Environment and volume that put `directory` at the agent's socket path."""
        return (
            {AGENT_SOCKET_ENV: f"{AGENT_SOCKET_DIR}/agent.sock"},
            {str(directory): {"bind": AGENT_SOCKET_DIR, "mode": "rw"}},
        )

    async def remove_for(self, agent_url: str | None) -> None:
        """Remove the directory of the agent at `agent_url` if it is one of ours."""
        directory = self._directory_of(agent_url)
        if directory is not None:
            await asyncio.to_thread(_rmtree, directory)

    async def remove(self, directory: Path) -> None:
        """Remove one directory made by `create`."""
        if directory.parent == self.base:
            await asyncio.to_thread(_rmtree, directory)

    async def prune(self, keep: Iterable[str | None]) -> int:
        """Remove every directory not used by the agents at `keep`; returns how many."""
        used = {self._directory_of(url) for url in keep}
        return await asyncio.to_thread(self._prune, used)

    def _prune(self, used: set[Path | None]) -> int:
        removed = 0
        if self.base.is_dir():
            for directory in self.base.iterdir():
                if directory not in used:
                    _rmtree(directory)
                    removed += 1
        return removed

    def close(self) -> None:
        """Remove this server's (empty) directory when it stops without sessions."""
        with contextlib.suppress(OSError):
            self.base.rmdir()

    def _directory_of(self, agent_url: str | None) -> Path | None:
        if not agent_url or not agent_url.startswith(_UNIX):
            return None
        directory = Path(agent_url.removeprefix(_UNIX)).parent
        return directory if directory.parent == self.base else None
