"""The swarm relay, in-process: the agent client through a real relay to a real peer.

The relay (`relay_server.Relay`) listens on 127.0.0.1 and allows 127.0.0.0/8, so
the whole path (the client's `RelayBackend`, the request line, the relay's
checks and its copying) runs over real sockets; only the overlay network is
replaced by loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sandbox.runtime.agent import AgentClient, AgentUnreachable
from sandbox.runtime.relay import RelayAddress, RelayBackend
from sandbox.runtime.relay_server import MAX_LINE, Relay, check, joins

SECRET = "relay-secret"
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
OVERLAY = ipaddress.IPv4Network("10.0.1.0/24")


async def _agent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A peer answering every HTTP request with a small JSON body, keeping the connection."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            body = json.dumps({"ok": True, "data": {"echo": "hi"}}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Handlers:
    """Serves connections with a handler and lets a test wait until every one ended
    (Python 3.11's ``Server.wait_closed`` does not wait for them): a handler still
    copying when the loop closes would leave its sockets to the garbage collector."""

    def __init__(self, handle: Handler) -> None:
        self._handle = handle
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            await self._handle(reader, writer)
        finally:
            self._running.discard(task)

    async def ended(self) -> None:
        """Wait (at most 10 s) for every connection's handler to end."""
        if self._running:
            await asyncio.wait_for(asyncio.gather(*self._running, return_exceptions=True), 10.0)


@pytest.fixture
async def peers() -> AsyncIterator[tuple[int, int, list[int]]]:
    """(agent port, relay port, connections the agent accepted)."""
    accepted: list[int] = []

    async def counting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        await _agent(reader, writer)

    agents = Handlers(counting)
    agent = await asyncio.start_server(agents, "127.0.0.1", 0)
    agent_port = agent.sockets[0].getsockname()[1]
    relays = Handlers(Relay(SECRET, agent_port, LOOPBACK.__contains__).handle)
    server = await asyncio.start_server(relays, "127.0.0.1", 0)
    relay_port = server.sockets[0].getsockname()[1]
    try:
        yield agent_port, relay_port, accepted
    finally:
        server.close()
        agent.close()
        await relays.ended()  # each sees its client close, and closes its agent side
        await agents.ended()


def _client(relay_port: int, secret: str = SECRET) -> AgentClient:
    async def locate() -> RelayAddress:
        return RelayAddress("127.0.0.1", relay_port, secret)

    return AgentClient(network_backend=RelayBackend(locate), health_timeout_s=2.0)


async def test_calls_go_through_the_relay_on_one_kept_alive_connection(
    peers: tuple[int, int, list[int]],
) -> None:
    agent_port, relay_port, accepted = peers
    client = _client(relay_port)
    try:
        url = f"http://127.0.0.1:{agent_port}"
        for _ in range(3):
            data = await client.call(url, "token", "bash.run", {}, 5.0)
            assert data == {"echo": "hi"}
        assert accepted == [1]
    finally:
        await client.aclose()


async def test_a_wrong_secret_reaches_nothing(peers: tuple[int, int, list[int]]) -> None:
    agent_port, relay_port, accepted = peers
    client = _client(relay_port, secret="guessed")
    try:
        with pytest.raises(AgentUnreachable, match="secret"):
            await client.call(f"http://127.0.0.1:{agent_port}", "token", "bash.run", {}, 5.0)
        assert not await client.is_ready(f"http://127.0.0.1:{agent_port}")
        assert accepted == []
    finally:
        await client.aclose()


async def test_only_the_agent_port_is_relayed(peers: tuple[int, int, list[int]]) -> None:
    agent_port, relay_port, _ = peers
    client = _client(relay_port)
    try:
        with pytest.raises(AgentUnreachable, match="port"):
            await client.call(f"http://127.0.0.1:{agent_port + 1}", "t", "bash.run", {}, 5.0)
    finally:
        await client.aclose()


async def test_an_endless_first_line_is_cut_off(peers: tuple[int, int, list[int]]) -> None:
    _, relay_port, accepted = peers
    reader, writer = await asyncio.open_connection("127.0.0.1", relay_port)
    writer.write(b"x" * (MAX_LINE * 400))
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5.0) == b""  # closed, nothing relayed
    writer.close()
    assert accepted == []


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"GET / HTTP/1.1\n", "malformed"),
        (b"SANDBOX-RELAY nope 10.0.1.2 8765\n", "secret"),
        (b"SANDBOX-RELAY s 10.0.1.2 22\n", "port"),
        (b"SANDBOX-RELAY s 192.168.1.1 8765\n", "network"),
        (b"SANDBOX-RELAY s ::1 8765\n", "address"),
        (b"SANDBOX-RELAY s 10.0.1.2 http\n", "address"),
    ],
)
def test_the_request_line_is_checked(line: bytes, why: str) -> None:
    assert check(line, "s", 8765, OVERLAY.__contains__) == why


def test_a_good_request_line_names_its_target() -> None:
    line = b"SANDBOX-RELAY s 10.0.1.2 8765\n"
    assert check(line, "s", 8765, OVERLAY.__contains__) == ("10.0.1.2", 8765)


async def test_a_relay_that_does_not_answer_is_reported_once_per_connection() -> None:
    gone = RelayAddress("127.0.0.1", 1, SECRET)  # nothing listens on port 1
    reported: list[RelayAddress] = []

    async def locate() -> RelayAddress:
        return gone

    client = AgentClient(network_backend=RelayBackend(locate, reported.append))
    try:
        with pytest.raises(AgentUnreachable):
            await client.call("http://10.0.1.2:8765", "token", "bash.run", {}, 5.0)
    finally:
        await client.aclose()
    assert reported == [gone]


async def test_the_relay_follows_the_networks_it_joins_and_leaves() -> None:
    agents = Handlers(_agent)
    agent = await asyncio.start_server(agents, "127.0.0.1", 0)
    agent_port = agent.sockets[0].getsockname()[1]
    joined: list[ipaddress.IPv4Network] = []
    relay = Relay(SECRET, agent_port, lambda address: any(address in n for n in joined))
    relays = Handlers(relay.handle)
    server = await asyncio.start_server(relays, "127.0.0.1", 0)
    client = _client(server.sockets[0].getsockname()[1])
    url = f"http://127.0.0.1:{agent_port}"
    try:
        with pytest.raises(AgentUnreachable, match="network"):
            await client.call(url, "token", "bash.run", {}, 5.0)
        joined.append(LOOPBACK)  # the runtime joined the relay to the session's overlay
        assert await client.call(url, "token", "bash.run", {}, 5.0) == {"echo": "hi"}
        await client.aclose()
        joined.clear()  # ...and took it out again: asked anew, it is refused
        client = _client(server.sockets[0].getsockname()[1])
        with pytest.raises(AgentUnreachable, match="network"):
            await client.call(url, "token", "bash.run", {}, 5.0)
    finally:
        await client.aclose()
        server.close()
        agent.close()
        await relays.ended()
        await agents.ended()


# /proc/net/route of a relay (x86, little-endian): its bridge 172.17.0.0/16 with the
# default route, and two sessions' overlays 10.0.5.0/24 and 10.0.9.0/24.
ROUTES = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010011AC\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth1\t0005000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth2\t0009000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth2\t0000000B\t0109000A\t0003\t0\t0\t0\t000000FF\t0\t0\t0
"""


@pytest.mark.skipif(sys.byteorder != "little", reason="the sample is a little-endian host's")
@pytest.mark.parametrize(
    ("address", "joined"),
    [
        ("10.0.5.7", True),  # a session's overlay
        ("10.0.9.250", True),  # another's
        ("10.0.6.1", False),  # no network of the relay's
        ("172.17.0.5", False),  # its bridge: never
        ("11.0.0.9", False),  # routed through a gateway: not a network it is on
    ],
)
def test_the_relay_connects_only_into_the_subnets_of_its_interfaces_but_the_bridge(
    address: str, joined: bool
) -> None:
    assert joins(ROUTES, "172.17.0.3", ipaddress.IPv4Address(address)) is joined
    assert not joins(ROUTES.splitlines()[0], "172.17.0.3", ipaddress.IPv4Address(address))
