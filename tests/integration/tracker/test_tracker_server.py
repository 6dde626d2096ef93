"""The tracker over real loopback sockets: HTTP announce/scrape/healthz/metrics and UDP."""

from __future__ import annotations

import dataclasses
import random
import struct
from collections.abc import AsyncIterator
from urllib.parse import quote_from_bytes

import fastbencode
import h11
import pytest
import trio
from seedcast.config import ClusterConfig
from seedcast.tracker.server import TrackerService
from seedcast.tracker.udp_protocol import PROTOCOL_ID
from seedcast.units import parse_host_port

INFO_HASH = bytes(range(100, 120))


@pytest.fixture
async def service(config: ClusterConfig) -> AsyncIterator[TrackerService]:
    config = dataclasses.replace(
        config, tracker=dataclasses.replace(config.tracker, listen="127.0.0.1:0")
    )
    service = TrackerService(config, "tracker-test", rng=random.Random(3))
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(service.serve)
        service.test_address = parse_host_port(addresses[0])  # type: ignore[attr-defined]
        yield service
        nursery.cancel_scope.cancel()


async def http_get(
    address: tuple[str, int], targets: list[str], *, source: str = "127.0.0.1"
) -> list[tuple[int, dict[str, str], bytes]]:
    """GET each target in turn on one keep-alive connection bound to ``source``."""
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    with trio.fail_after(10):
        await sock.connect(address)
        stream = trio.SocketStream(sock)
        connection = h11.Connection(h11.CLIENT)
        answers = []
        async with stream:
            for target in targets:
                request = h11.Request(method="GET", target=target, headers=[("Host", "tracker")])
                await stream.send_all(
                    connection.send(request) + connection.send(h11.EndOfMessage())
                )
                status, headers, body = 0, {}, b""
                while True:
                    event = connection.next_event()
                    if event is h11.NEED_DATA:
                        connection.receive_data(await stream.receive_some(65536))
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                        headers = {k.decode(): v.decode() for k, v in event.headers}
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                answers.append((status, headers, body))
                connection.start_next_cycle()
    return answers


def announce_target(peer_id: bytes, port: int, **extra: str) -> str:
    query = (
        f"info_hash={quote_from_bytes(INFO_HASH, safe='')}"
        f"&peer_id={quote_from_bytes(peer_id, safe='')}&port={port}"
        "&uploaded=0&downloaded=0&left=100&compact=1"
    )
    for key, value in extra.items():
        query += f"&{key}={value}"
    return f"/announce?{query}"


async def test_http_announce_and_scrape(service: TrackerService) -> None:
    address = service.test_address  # type: ignore[attr-defined]
    [(status, headers, body)] = await http_get(
        address, [announce_target(b"A" * 20, 7001, event="started")], source="127.0.40.1"
    )
    assert status == 200
    assert headers["content-type"] == "text/plain"
    first = fastbencode.bdecode(body)
    assert first[b"peers"] == b""
    [(_, _, body)] = await http_get(
        address, [announce_target(b"B" * 20, 7002, event="started")], source="127.0.40.2"
    )
    second = fastbencode.bdecode(body)
    assert second[b"peers"] == bytes([127, 0, 40, 1]) + (7001).to_bytes(2, "big")
    assert second[b"incomplete"] == 2

    scrape_target = f"/scrape?info_hash={quote_from_bytes(INFO_HASH, safe='')}"
    answers = await http_get(address, [scrape_target, "/healthz", "/metrics", "/nope"])
    (
        (scrape_status, _, scrape_body),
        (health_status, _, health),
        (_, _, metrics),
        (missing, _, _),
    ) = answers
    assert scrape_status == 200
    assert fastbencode.bdecode(scrape_body)[b"files"][INFO_HASH][b"incomplete"] == 2
    assert health_status == 200
    assert health.startswith(b"ok")
    assert missing == 404
    text = metrics.decode()
    assert 'seedcast_tracker_announces_total{event="started"} 2.0' in text
    assert "seedcast_tracker_scrapes_total 1.0" in text
    assert f'seedcast_tracker_swarm_peers{{info_hash="{INFO_HASH.hex()}"}} 2.0' in text
    assert "seedcast_tracker_seeders 0.0" in text


async def test_bad_announce_is_a_bencoded_failure_with_status_200(service: TrackerService) -> None:
    address = service.test_address  # type: ignore[attr-defined]
    answers = await http_get(
        address,
        ["/announce?info_hash=short&peer_id=x&port=1", "/announce", "/announce?%ff%00=%zz&&&="],
    )
    for status, _, body in answers:
        assert status == 200
        assert b"failure reason" in fastbencode.bdecode(body)
    [(_, _, metrics)] = await http_get(address, ["/metrics"])
    assert 'seedcast_tracker_errors_total{reason="bad_info_hash"} 1.0' in metrics.decode()
    assert 'seedcast_tracker_errors_total{reason="missing_info_hash"} 2.0' in metrics.decode()


async def test_udp_connect_announce_scrape(service: TrackerService) -> None:
    address = service.test_address  # type: ignore[attr-defined]
    assert service.udp_address == address
    sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.40.3", 0))
    with sock, trio.fail_after(10):
        await sock.sendto(struct.pack(">QII", PROTOCOL_ID, 0, 11), address)
        reply, _ = await sock.recvfrom(2048)
        action, transaction_id, connection_id = struct.unpack(">IIQ", reply)
        assert (action, transaction_id) == (0, 11)
        packet = struct.pack(
            ">QII20s20sQQQIIIiH",
            connection_id,
            1,
            12,
            INFO_HASH,
            b"U" * 20,
            0,
            0,
            0,
            2,
            0,
            1,
            -1,
            7003,
        )
        await sock.sendto(packet, address)
        reply, _ = await sock.recvfrom(2048)
        action, transaction_id, _, leechers, seeders = struct.unpack_from(">IIIII", reply)
        assert (action, transaction_id, leechers, seeders) == (1, 12, 0, 1)
        await sock.sendto(struct.pack(">QII", connection_id, 2, 13) + INFO_HASH, address)
        reply, _ = await sock.recvfrom(2048)
        assert reply == struct.pack(">IIIII", 2, 13, 1, 0, 0)
        # Garbage never stops the loop.
        await sock.sendto(b"\x00" * 3, address)
        await sock.sendto(struct.pack(">QII", 99, 1, 14) + bytes(90), address)
        reply, _ = await sock.recvfrom(2048)
        assert reply[:8] == struct.pack(">II", 3, 14)
    # An HTTP leecher hears about the UDP seed.
    [(_, _, body)] = await http_get(
        address, [announce_target(b"H" * 20, 7004)], source="127.0.40.4"
    )
    assert fastbencode.bdecode(body)[b"peers"] == bytes([127, 0, 40, 3]) + (7003).to_bytes(2, "big")
