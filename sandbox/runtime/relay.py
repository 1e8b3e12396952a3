"""The server's side of the swarm relay (`relay_server`): connections to agents through it.

`RelayBackend` is an httpcore network backend, so the agent client's ordinary
keep-alive pool works unchanged: each new TCP connection to an agent's overlay
address is a connection to the relay on 127.0.0.1 that names the agent in one
line and waits for ``OK``. Connections are kept alive as usual, so the relay's
cost is one line per connection plus one more hop per byte.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpcore

from .relay_server import MAGIC

_MAX_ANSWER = 128


@dataclass(frozen=True)
class RelayAddress:
    """Where the relay listens on this host, and the secret it asks for."""

    host: str
    port: int
    secret: str


class RelayBackend(httpcore.AsyncNetworkBackend):
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
        self._direct = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A stream to `host`:`port` (an agent on an overlay network), via the relay.

        Raises:
            httpcore.ConnectError: The relay refused or could not reach the agent.
        """
        relay = await self._locate()
        try:
            stream = await self._direct.connect_tcp(
                relay.host, relay.port, timeout=timeout, socket_options=socket_options
            )
        except httpcore.ConnectError:
            if self._unreachable is not None:
                self._unreachable(relay)
            raise
        try:
            await stream.write(f"{MAGIC} {relay.secret} {host} {port}\n".encode(), timeout)
            answer = await _read_line(stream, timeout)
        except BaseException:
            await stream.aclose()
            raise
        if answer != b"OK\n":
            await stream.aclose()
            why = answer.decode("ascii", "replace").strip()[:80] or "closed"
            raise httpcore.ConnectError(f"the swarm relay did not connect {host}:{port}: {why}")
        return stream

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Unix sockets are never relayed."""
        return await self._direct.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        """As the direct backend sleeps."""
        await self._direct.sleep(seconds)


async def _read_line(stream: httpcore.AsyncNetworkStream, timeout: float | None) -> bytes:
    """The relay's answer line. Nothing follows it before the server speaks (an agent
    answers requests only), so reading it never takes bytes of the agent's."""
    answer = b""
    while not answer.endswith(b"\n") and len(answer) < _MAX_ANSWER:
        chunk = await stream.read(_MAX_ANSWER - len(answer), timeout)
        if not chunk:
            break
        answer += chunk
    return answer


__all__ = ["MAGIC", "RelayAddress", "RelayBackend"]
