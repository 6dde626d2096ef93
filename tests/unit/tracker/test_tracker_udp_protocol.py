"""UDP tracker protocol (BEP 15): golden packets, connection ids, hostile datagrams."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seedcast.config import TrackerConfig
from seedcast.tracker.swarms import Tracker
from seedcast.tracker.udp_protocol import PROTOCOL_ID, UdpTracker

CLIENT = ("127.0.40.1", 40000)
INFO_HASH = b"I" * 20
SECRET = b"s" * 32


@pytest.fixture
def udp() -> UdpTracker:
    return UdpTracker(Tracker(TrackerConfig()), SECRET)


def connect(udp: UdpTracker, client: tuple[str, int] = CLIENT, now: float = 0.0) -> int:
    reply = udp.handle_datagram(
        struct.pack(">QII", PROTOCOL_ID, 0, 77), client, now, random.Random()
    )
    assert reply is not None
    action, transaction_id, connection_id = struct.unpack(">IIQ", reply)
    assert (action, transaction_id) == (0, 77)
    return int(connection_id)


def announce_packet(
    connection_id: int,
    *,
    peer_id: bytes = b"P" * 20,
    left: int = 100,
    event: int = 2,
    port: int = 6881,
    numwant: int = -1,
    ip: int = 0,
) -> bytes:
    return struct.pack(
        ">QII20s20sQQQIIIiH",
        connection_id,
        1,
        5,
        INFO_HASH,
        peer_id,
        0,
        left,
        0,
        event,
        ip,
        0xABCD,
        numwant,
        port,
    )


def test_connect_then_announce(udp: UdpTracker) -> None:
    rng = random.Random(0)
    other = ("127.0.40.2", 50000)
    udp.handle_datagram(
        announce_packet(connect(udp, other), peer_id=b"Q" * 20, port=7000), other, 1.0, rng
    )
    reply = udp.handle_datagram(announce_packet(connect(udp)), CLIENT, 1.0, rng)
    assert reply is not None
    action, transaction_id, interval, leechers, seeders = struct.unpack_from(">IIIII", reply)
    assert (action, transaction_id, leechers, seeders) == (1, 5, 2, 0)
    assert 27 <= interval <= 33
    assert reply[20:] == bytes([127, 0, 40, 2]) + (7000).to_bytes(2, "big")
    assert udp.tracker.statistics().announces == {"started": 2}


def test_connection_ids_are_bound_to_client_and_expire(udp: UdpTracker) -> None:
    rng = random.Random(0)
    connection_id = connect(udp, now=0.0)
    elsewhere = ("127.0.40.9", 40000)
    reply = udp.handle_datagram(announce_packet(connection_id), elsewhere, 1.0, rng)
    assert reply is not None
    assert struct.unpack_from(">I", reply)[0] == 3
    assert len(reply) <= 98
    # Accepted for at least two minutes, refused after three.
    assert (
        udp.handle_datagram(announce_packet(connection_id), CLIENT, 179.0, rng)[:4] == b"\0\0\0\1"
    )  # type: ignore[index]
    late = udp.handle_datagram(announce_packet(connection_id), CLIENT, 180.0, rng)
    assert late is not None
    assert late[:4] == b"\0\0\0\3"
    assert udp.tracker.statistics().errors == {"udp_bad_connection_id": 2}


def test_another_secret_does_not_accept_our_ids(udp: UdpTracker) -> None:
    other = UdpTracker(udp.tracker, b"t" * 32)
    reply = other.handle_datagram(announce_packet(connect(udp)), CLIENT, 0.0, random.Random())
    assert reply is not None
    assert reply[:4] == b"\0\0\0\3"


def test_scrape(udp: UdpTracker) -> None:
    rng = random.Random(0)
    connection_id = connect(udp)
    udp.handle_datagram(announce_packet(connection_id, left=0), CLIENT, 0.0, rng)
    unknown = b"U" * 20
    packet = struct.pack(">QII", connection_id, 2, 9) + INFO_HASH + unknown
    reply = udp.handle_datagram(packet, CLIENT, 0.0, rng)
    assert reply == struct.pack(">II", 2, 9) + struct.pack(">III", 1, 0, 0) + bytes(12)


def test_bad_packets(udp: UdpTracker) -> None:
    rng = random.Random(0)
    assert udp.handle_datagram(b"short", CLIENT, 0.0, rng) is None
    assert udp.handle_datagram(struct.pack(">QII", 1234, 0, 1), CLIENT, 0.0, rng) is None
    connection_id = connect(udp)
    for packet in (
        struct.pack(">QII", connection_id, 9, 1),  # unknown action
        announce_packet(connection_id)[:60],  # truncated announce
        announce_packet(connection_id, port=0),
        struct.pack(">QII", connection_id, 2, 1),  # scrape of nothing
        struct.pack(">QII", connection_id, 2, 1) + b"x" * 21,
        struct.pack(">QII", connection_id, 2, 1) + b"x" * 20 * 75,
    ):
        reply = udp.handle_datagram(packet, CLIENT, 0.0, rng)
        assert reply is not None
        assert reply[:4] == b"\0\0\0\3"
        assert len(reply) <= len(packet)
    assert udp.tracker.statistics().peers == 0


def test_ip_field_honoured_only_under_the_rules(udp: UdpTracker) -> None:
    rng = random.Random(0)
    connection_id = connect(udp)
    elsewhere = int.from_bytes(bytes([8, 8, 8, 8]), "big")
    udp.handle_datagram(announce_packet(connection_id, ip=elsewhere), CLIENT, 0.0, rng)
    (swarm,) = udp.tracker._swarms.values()
    (peer,) = swarm.peers.values()
    assert peer.address.ip == "127.0.40.1"


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=200), valid_id=st.booleans())
def test_any_datagram_is_answered_or_dropped(data: bytes, valid_id: bool) -> None:
    udp = UdpTracker(Tracker(TrackerConfig()), SECRET)
    if valid_id and len(data) >= 12:
        data = udp.connection_id(CLIENT, 0.0).to_bytes(8, "big") + data[8:]
    reply = udp.handle_datagram(data, CLIENT, 0.0, random.Random(0))
    assert reply is None or isinstance(reply, bytes)
    udp.tracker.check_invariants()
