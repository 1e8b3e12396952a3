"""The swarm relay: the server's one way into the overlay networks of a swarm's agents.

A server on a swarm manager's host cannot reach an overlay network: no host
process can. So the swarm runtime runs this program (standard library only; its
source is handed to ``python3 -c`` in any image that has Python) in one small
container on the manager, joined to both overlay networks and published on
127.0.0.1 only. The server opens a TCP connection to it and sends one line:

    SANDBOX-RELAY <secret> <ip> <port>\\n

The relay checks the secret (constant time), that the port is the agents' port
and that the address lies in one of the overlay networks it was given, connects,
answers ``OK\\n`` and from then on copies bytes both ways. Anything else is
answered ``NO <why>\\n`` and closed. Sessions share networks with the relay and
may connect to it, but without the secret they reach nothing through it.

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
    networks: list[ipaddress.IPv4Network],
) -> tuple[str, int] | str:
    """The (ip, port) `line` asks for, or why it is refused."""
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
    if not any(address in network for network in networks):
        return "network"
    return str(address), asked


class Relay:
    """Serves relay connections (see the module docstring)."""

    def __init__(self, secret: str, port: int, networks: list[ipaddress.IPv4Network]) -> None:
        self._secret = secret
        self._port = port
        self._networks = networks
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
            target = check(line, self._secret, self._port, self._networks)
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


async def serve(listen_port: int, relay: Relay) -> None:
    """Serve forever on the container's bridge address."""
    address = route_address()
    server = await asyncio.start_server(relay.handle, address, listen_port, backlog=1024)
    print(f"sandbox relay listening on {address}:{listen_port}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Read the settings from the environment and serve."""
    networks = [
        ipaddress.IPv4Network(cidr, strict=False)
        for cidr in os.environ["SANDBOX_RELAY_NETWORKS"].split(",")
        if cidr
    ]
    relay = Relay(
        os.environ["SANDBOX_RELAY_SECRET"],
        int(os.environ["SANDBOX_RELAY_AGENT_PORT"]),
        networks,
    )
    asyncio.run(serve(int(os.environ["SANDBOX_RELAY_PORT"]), relay))


if __name__ == "__main__":
    main()
