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
from collections.abc import Iterable
from pathlib import Path

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


class SocketDirs:
    """Creates and removes the per-container socket directories of one server.

    Args:
        root: The host directory under which every server keeps its own.
        server_id: This server's id (its directories are kept apart).
    """

    def __init__(self, root: Path, server_id: str) -> None:
        self.base = root / _UNSAFE.sub("-", server_id)[:_MAX_SERVER_PART]

    def create(self) -> Path:
        """A new, empty directory the container's agent can create its socket in."""
        self.base.mkdir(parents=True, exist_ok=True)
        # The way in is the server's alone, whoever made the directory before.
        os.chmod(self.base, 0o700)
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
