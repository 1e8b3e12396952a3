"""The swarm relay: the server's one way into the overlay networks of a swarm's agents.

A server on a swarm manager's host cannot reach an overlay network: no host
process can. So the swarm runtime runs this program (standard library only; its
source is handed to ``python3 -c`` in any image that has Python) in one small
container on the manager, joined to each session's overlay network and published
on 127.0.0.1 only. The server opens a TCP connection to it and sends one line:

    SANDBOX-RELAY <secret> <ip> <port>\\n

The relay checks the secret (constant time), that the port is the agents' port
and that the address lies in one of the networks it has joined (its interfaces'
own subnets, read from ``/proc/net/route``, but the bridge it listens on: the
runtime joins it to each session's overlay and takes it out again), connects,
answers ``OK\\n`` and from then on copies bytes both ways. Anything else is
answered ``NO <why>\\n`` and closed. Each session shares its network with the
relay and may connect to it, but without the secret it reaches nothing through it.

What a peer sends before the secret is checked is bounded: one line of at most
`MAX_LINE` bytes within `HEADER_TIMEOUT_S` seconds, and at most
`MAX_CONNECTIONS` connections at once. After ``OK`` the bytes are the agent's
and the server's, which bounds what it reads itself (`agent`).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os
import socket
import sys
from collections.abc import Callable

MAX_LINE = 256
HEADER_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 0.5
"""Overlay peers answer in milliseconds; a SYN sent before a new task's address is up
would wait for the kernel's 1 s retransmit, so give up early and let the caller retry."""
MAX_CONNECTIONS = 4096
KEEPALIVE_IDLE_S = 5
KEEPALIVE_INTERVAL_S = 2
KEEPALIVE_PROBES = 3
USER_TIMEOUT_MS = 10_000
CHUNK = 1 << 16
MAGIC = "SANDBOX-RELAY"
MAX_ROUTES_BYTES = 16 << 20
"""Of ``/proc/net/route`` (128 bytes a line): room for every /24 of 10.0.0.0/8."""


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            writer.close()


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _watch_peer(writer: asyncio.StreamWriter) -> None:
    """Notice an agent whose node died: it sends no reset, so without probes a kept
    connection to it (and the server's call on it) would wait for the call's whole
    deadline. Idle, it is probed after `KEEPALIVE_IDLE_S`; data it does not
    acknowledge within `USER_TIMEOUT_MS` ends the connection. Either way the
    server's side is closed, and its call fails as unreachable."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
        ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
    ):
        option = getattr(socket, name, None)
        if option is not None:  # Linux has them all
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def check(
    line: bytes,
    secret: str,
    port: int,
    joined: Callable[[ipaddress.IPv4Address], bool],
) -> tuple[str, int] | str:
    """The (ip, port) `line` asks for, or why it is refused; `joined` (whether an
    address lies in a network the relay may connect into) is asked last."""
    parts = line.decode("ascii", "replace").split()
    if len(parts) != 4 or parts[0] != MAGIC:
        return "malformed"
    if not hmac.compare_digest(parts[1].encode(), secret.encode()):
        return "secret"
    try:
        address = ipaddress.IPv4Address(parts[2])
        asked = int(parts[3])
    except ValueError:
        return "address"
    if asked != port:
        return "port"
    if not joined(address):
        return "network"
    return str(address), asked


def joins(routes: str, listening: str, address: ipaddress.IPv4Address) -> bool:
    """Whether `address` lies in the subnet of one of this container's interfaces
    (``/proc/net/route`` text: its routes with no gateway), not counting the
    interface `listening` is on. Plain integers: at 10,000 sessions the table has
    10,000 lines, and it is read at every new connection."""
    listen = _route_int(ipaddress.IPv4Address(listening))
    wanted = _route_int(address)
    bridge: set[str] = set()
    found: set[str] = set()
    for line in routes.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or fields[2] != "00000000":  # via a gateway: not a subnet of ours
            continue
        try:
            destination, mask = int(fields[1], 16), int(fields[7], 16)
        except ValueError:
            continue
        if mask == 0:
            continue
        if listen & mask == destination:
            bridge.add(fields[0])
        if wanted & mask == destination:
            found.add(fields[0])
    return bool(found - bridge)


def _route_int(address: ipaddress.IPv4Address) -> int:
    """`address` as ``/proc/net/route`` writes one: its bytes read in the host's order."""
    return int.from_bytes(address.packed, sys.byteorder)


def read_routes() -> str:
    """This container's ``/proc/net/route`` (a line per network it is on)."""
    with open("/proc/net/route", encoding="ascii", errors="replace") as file:
        return file.read(MAX_ROUTES_BYTES)


class Relay:
    """Serves relay connections (see the module docstring).

    Args:
        secret: What the first line must carry.
        port: The only port it connects to.
        joined: Whether an address lies in a network it may connect into now, asked
            on every connection (a session's overlay is joined just before its
            service starts, and left when it goes).
    """

    def __init__(
        self, secret: str, port: int, joined: Callable[[ipaddress.IPv4Address], bool]
    ) -> None:
        self._secret = secret
        self._port = port
        self._joined = joined
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection: its request line, then the copying."""
        if self._slots.locked():
            writer.close()
            return
        async with self._slots:
            _nodelay(writer)
            try:
                line = await asyncio.wait_for(reader.readline(), HEADER_TIMEOUT_S)
            except (asyncio.TimeoutError, ValueError, ConnectionError, OSError):
                writer.close()
                return
            if len(line) > MAX_LINE or not line.endswith(b"\n"):
                writer.close()
                return
            target = check(line, self._secret, self._port, self._joined)
            if isinstance(target, str):
                await self._refuse(writer, target)
                return
            try:
                upstream_reader, upstream_writer = await asyncio.wait_for(
                    asyncio.open_connection(*target), CONNECT_TIMEOUT_S
                )
            except (asyncio.TimeoutError, OSError):
                await self._refuse(writer, "unreachable")
                return
            _nodelay(upstream_writer)
            _watch_peer(upstream_writer)
            try:
                writer.write(b"OK\n")
                await asyncio.gather(
                    _pipe(reader, upstream_writer),
                    _pipe(upstream_reader, writer),
                )
            finally:
                upstream_writer.close()
                writer.close()

    @staticmethod
    async def _refuse(writer: asyncio.StreamWriter, why: str) -> None:
        try:
            writer.write(f"NO {why}\n".encode())
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        writer.close()


def route_address() -> str:
    """This container's address on the network of its default route: the bridge its
    port is published from. The runtime joins the relay to the overlays only once it
    listens there, so sessions on them find no relay port to open (nor to fill with
    connections)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # a UDP connect only picks a route: nothing is sent
        return str(probe.getsockname()[0])


async def serve(listen_port: int, relay: Relay, address: str) -> None:
    """Serve forever on `address`, the container's bridge address."""
    server = await asyncio.start_server(relay.handle, address, listen_port, backlog=1024)
    print(f"sandbox relay listening on {address}:{listen_port}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Read the settings from the environment and serve."""
    address = route_address()
    relay = Relay(
        os.environ["SANDBOX_RELAY_SECRET"],
        int(os.environ["SANDBOX_RELAY_AGENT_PORT"]),
        lambda target: joins(read_routes(), address, target),
    )
    asyncio.run(serve(int(os.environ["SANDBOX_RELAY_PORT"]), relay, address))


if __name__ == "__main__":
    main()
