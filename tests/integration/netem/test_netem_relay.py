"""TCP and UDP relays on loopback: what goes through them waits its path's delay, or is lost.

Timings are asserted as lower bounds (a relay never delivers early) with
generous upper bounds, so a loaded machine does not fail them; the +-5 %
accuracy figures are printed by ``seedcast bench netem``.
"""

from __future__ import annotations

import random
import socket
from functools import partial

import trio
from seedcast.config import RegionConfig
from seedcast.netem.paths import PathProfile, Topology
from seedcast.netem.relay import TcpRelay, UdpRelay

CLIENT = "127.0.41.1"


def _topology(last_mile_ms: float, loss: float = 0.0) -> Topology:
    region = RegionConfig(
        name="eu", viewer_prefix="127.0.41.0/24", last_mile_ms=last_mile_ms, last_mile_loss=loss
    )
    return Topology([region])


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


async def _tcp_client(address: str) -> trio.SocketStream:
    host, port = address.rsplit(":", 1)
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await sock.bind((CLIENT, 0))
    await sock.connect((host, int(port)))
    return trio.SocketStream(sock)


async def test_tcp_relay_adds_the_handshake_then_one_rtt_per_round_trip(
    nursery: trio.Nursery,
) -> None:
    listeners = await nursery.start(partial(trio.serve_tcp, _echo, 0, host="127.0.0.1"))
    target_port = listeners[0].socket.getsockname()[1]
    relay = TcpRelay("127.0.0.1:0", f"127.0.0.1:{target_port}", _topology(50), target_region="eu")
    bound = await nursery.start(relay.serve)
    stream = await _tcp_client(bound)
    async with stream:
        started = trio.current_time()
        await stream.send_all(b"ping")
        assert await stream.receive_some(100) == b"ping"
        first = trio.current_time() - started
        started = trio.current_time()
        await stream.send_all(b"pong")
        assert await stream.receive_some(100) == b"pong"
        second = trio.current_time() - started
    # handshake (100 ms) + request/response (100 ms); then one RTT per exchange
    assert 0.199 <= first < 2.0
    assert 0.099 <= second < 2.0
    assert relay.statistics.connections == 1


async def test_tcp_relay_applies_a_changed_path_to_open_connections(
    nursery: trio.Nursery,
) -> None:
    listeners = await nursery.start(partial(trio.serve_tcp, _echo, 0, host="127.0.0.1"))
    target_port = listeners[0].socket.getsockname()[1]
    paths = _topology(0)
    relay = TcpRelay("127.0.0.1:0", f"127.0.0.1:{target_port}", paths, target_region="eu")
    bound = await nursery.start(relay.serve)
    stream = await _tcp_client(bound)
    async with stream:
        paths.set_path("eu", "eu", PathProfile(0.1))
        started = trio.current_time()
        await stream.send_all(b"x")
        assert await stream.receive_some(10) == b"x"
        assert trio.current_time() - started >= 0.199


async def test_tcp_relay_carries_a_large_transfer_intact(nursery: trio.Nursery) -> None:
    listeners = await nursery.start(partial(trio.serve_tcp, _echo, 0, host="127.0.0.1"))
    target_port = listeners[0].socket.getsockname()[1]
    relay = TcpRelay(
        "127.0.0.1:0",
        f"127.0.0.1:{target_port}",
        _topology(5, loss=0.05),
        target_region="eu",
        buffer=256 * 1024,
    )
    bound = await nursery.start(relay.serve)
    payload = random.Random(3).randbytes(3 * 1024 * 1024)
    stream = await _tcp_client(bound)
    received = bytearray()
    async with stream:

        async def send() -> None:
            await stream.send_all(payload)
            await stream.send_eof()

        async with trio.open_nursery() as inner:
            inner.start_soon(send)
            async for data in stream:
                received += data
    assert bytes(received) == payload
    assert relay.statistics.segments_late > 0  # loss became retransmission delay, not a gap


async def test_udp_relay_loses_about_the_configured_fraction(nursery: trio.Nursery) -> None:
    count = 10_000
    server = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await server.bind(("127.0.0.1", 0))
    target = f"127.0.0.1:{server.getsockname()[1]}"
    relay = UdpRelay(
        "127.0.0.1:0", target, _topology(1, loss=0.01), target_region="eu", rng=random.Random(5)
    )
    bound = await nursery.start(relay.serve)
    host, port = bound.rsplit(":", 1)
    client = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await client.bind((CLIENT, 0))
    received: set[int] = set()
    seen_sources: set[str] = set()
    arrived = trio.Event()

    async def receive() -> None:
        nonlocal arrived
        while True:
            data, source = await server.recvfrom(100)
            seen_sources.add(source[0])
            received.add(int(data))
            arrived.set()
            arrived = trio.Event()

    with server, client:
        nursery.start_soon(receive)
        for batch in range(0, count, 200):
            for index in range(batch, batch + 200):
                await client.sendto(str(index).encode(), (host, int(port)))
            # Pace by what arrived (not by time): the relay's queue stays small.
            with trio.move_on_after(5):
                while len(received) + relay.statistics.datagrams_lost < batch + 200:
                    await arrived.wait()
        lost = count - len(received)
    assert relay.statistics.datagrams == count
    assert lost >= relay.statistics.datagrams_lost  # the relay's drops are all missing
    assert 0.007 <= lost / count <= 0.013
    assert seen_sources == {CLIENT}  # the target sees the real client address


async def test_udp_relay_answers_come_back_after_the_return_delay(nursery: trio.Nursery) -> None:
    server = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await server.bind(("127.0.0.1", 0))

    async def echo() -> None:
        while True:
            data, source = await server.recvfrom(100)
            await server.sendto(data, source)

    relay = UdpRelay(
        "127.0.0.1:0", f"127.0.0.1:{server.getsockname()[1]}", _topology(40), target_region="eu"
    )
    bound = await nursery.start(relay.serve)
    host, port = bound.rsplit(":", 1)
    client = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with server, client:
        nursery.start_soon(echo)
        await client.bind((CLIENT, 0))
        started = trio.current_time()
        await client.sendto(b"hello", (host, int(port)))
        assert await client.recv(100) == b"hello"
        assert 0.079 <= trio.current_time() - started < 2.0
