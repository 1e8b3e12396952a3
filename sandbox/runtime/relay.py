"""The server's side of the swarm relay (`relay_server`): connections to agents through it.

`RelayBackend` opens the agent client's TCP connections (`agent_http.TcpConnect`),
so the ordinary keep-alive pool works unchanged: each new connection to an
agent's overlay address is a connection to the relay on 127.0.0.1 that names
the agent in one line and waits for ``OK``. Connections are kept alive as usual,
so the relay's cost is one line per connection plus one more hop per byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .agent_http import Streams, open_tcp
from .relay_server import MAGIC

_MAX_ANSWER = 128


@dataclass(frozen=True)
class RelayAddress:
    """Where the relay listens on this host, and the secret it asks for."""

    host: str
    port: int
    secret: str


class RelayRefused(ConnectionError):
    """The relay answered, but did not connect the agent (its reason is the message)."""


class RelayBackend:
    """Opens every TCP connection through the relay that `locate` returns.

    Args:
        locate: The relay's address, starting the relay first if need be.
        unreachable: Told when the relay itself does not answer (removed or dead), so
            that the next `locate` starts another.
    """

    def __init__(
        self,
        locate: Callable[[], Awaitable[RelayAddress]],
        unreachable: Callable[[RelayAddress], None] | None = None,
    ) -> None:
        self._locate = locate
        self._unreachable = unreachable

    async def __call__(self, host: str, port: int) -> Streams:
        """A connection to `host`:`port` (an agent on an overlay network), via the relay.

        Raises:
            OSError: The relay cannot be reached (`RelayRefused`: it could not reach
                the agent, or refused).
        """
        relay = await self._locate()
        try:
            reader, writer = await open_tcp(relay.host, relay.port)
        except OSError:
            if self._unreachable is not None:
                self._unreachable(relay)
            raise
        try:
            writer.write(f"{MAGIC} {relay.secret} {host} {port}\n".encode())
            answer = await _read_line(reader)
        except BaseException:
            writer.close()
            raise
        if answer != b"OK\n":
            writer.close()
            why = answer.decode("ascii", "replace").strip()[:80] or "closed"
            raise RelayRefused(f"the swarm relay did not connect {host}:{port}: {why}")
        return reader, writer


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    """The relay's answer line, at most `_MAX_ANSWER` bytes. Nothing follows it before
    the server speaks (an agent answers requests only), so reading it never takes
    bytes of the agent's."""
    answer = b""
    while not answer.endswith(b"\n") and len(answer) < _MAX_ANSWER:
        chunk = await reader.read(_MAX_ANSWER - len(answer))
        if not chunk:
            break
        answer += chunk
    return answer


__all__ = ["MAGIC", "RelayAddress", "RelayBackend"]
