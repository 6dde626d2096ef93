"""DNS and tracker attacks on real processes: alive, bounded, serving, counted."""

from __future__ import annotations

import random
import socket
import time
import urllib.parse
from pathlib import Path

import dns.message
import dns.query
from adversary import http_get, report, running_role

MIB = 2**20


def _udp_burst(address: tuple[str, int], packets: list[bytes], source: str) -> tuple[int, int]:
    """Send every packet, collect replies for a moment; (bytes sent, bytes received)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * MIB)
    sent = received = 0
    for packet in packets:
        sent += sock.sendto(packet, address)
    sock.settimeout(0.5)
    try:
        while True:
            received += len(sock.recv(65535))
    except TimeoutError:
        pass
    sock.close()
    return sent, received


def _answered(address: tuple[str, int], source: str) -> bool:
    query = dns.message.make_query("www.netcinema.test", "A")
    response = dns.query.udp(query, address[0], port=address[1], timeout=3, source=source)
    return bool(response.answer)


def test_dns_amplification_is_bounded_and_others_still_served(tmp_path: Path) -> None:
    with running_role(
        tmp_path, "dns", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--no-health-checks"
    ) as server:
        dns_address, metrics = server.addresses[0], server.addresses[1]
        before = server.rss()
        query = dns.message.make_query("netcinema.test", "ANY", use_edns=0, payload=4096)
        sent, received = _udp_burst(dns_address, [query.to_wire()] * 3000, "127.0.0.1")
        factor = received / sent
        limited = server.metric("seedcast_dns_rate_limited_total", metrics)
        started = time.monotonic()
        assert _answered(dns_address, "127.0.99.1")  # another /24 is not starved
        recovery = time.monotonic() - started
        assert limited >= 2000
        assert factor < 3.0  # RRL: most of the flood is dropped or slipped (tiny TC)
        garbage = random.Random(7)
        packets = [garbage.randbytes(garbage.randrange(0, 600)) for _ in range(2000)]
        packets += [b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c"]  # pointer loop
        packets += [b"\x00\x02\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff"]  # huge counts
        _udp_burst(dns_address, packets, "127.0.98.1")
        assert server.alive()
        assert _answered(dns_address, "127.0.97.1")
        after = server.rss()
        assert after - before < 32 * MIB
        report(f"DNS ANY flood x3000 (amplification {factor:.2f}x) + 2000 garbage",
               f"{int(limited)} rate-limited, others served", before, after, recovery)  # fmt: skip


def _announce(
    address: tuple[str, int], info_hash: bytes, peer_id: bytes, port: int, *, source: str
) -> tuple[int, bytes]:
    query = urllib.parse.urlencode(
        {
            "info_hash": info_hash,
            "peer_id": peer_id,
            "port": port,
            "uploaded": 0,
            "downloaded": 0,
            "left": 100,
            "compact": 1,
            "numwant": 200,
        }
    )
    return http_get(address, f"/announce?{query}", source=source)


def test_tracker_flood_of_fresh_peer_ids_keeps_real_peers(tmp_path: Path) -> None:
    with running_role(tmp_path, "tracker", "127.0.0.1:0") as tracker:
        before = tracker.rss()
        info_hash = b"\x11" * 20
        for _ in range(2):  # a real peer: announces, and again (verified)
            status, _ = _announce(tracker.address, info_hash, b"R" * 20, 7000, source="127.0.0.5")
            assert status == 200
        for index in range(600):  # fresh ids and ports from one address
            _announce(
                tracker.address, info_hash, b"F%019d" % index, 10000 + index, source="127.0.0.6"
            )
        hostile = [
            "info_hash=abc&peer_id=" + "a" * 20 + "&port=1",
            "info_hash=" + "%11" * 20 + "&peer_id=short&port=1",
            "info_hash=" + "%11" * 20 + "&peer_id=" + "b" * 20 + "&port=0",
            "info_hash=" + "%11" * 20 + "&peer_id=" + "b" * 20 + "&port=65536",
            "info_hash=" + "%11" * 20 + "&peer_id=" + "b" * 20 + "&port=1&numwant=99999999999",
            "info_hash=%zz&&&==&port=%",
            "&".join("info_hash=" + "%22" * 20 for _ in range(5000)),
        ]
        for query in hostile:
            status, _ = http_get(tracker.address, f"/announce?{query}", source="127.0.0.7")
            assert status in (200, 400, 414, 431)
        scrape = "&".join(
            f"info_hash={'%%%02x' % (i % 256) * 20}" for i in range(200)
        )  # ~14 KiB: under the head limit
        status, _ = http_get(tracker.address, f"/scrape?{scrape}", source="127.0.0.7")
        assert status == 200
        status, body = _announce(tracker.address, info_hash, b"N" * 20, 7001, source="127.0.0.8")
        assert status == 200
        real = socket.inet_aton("127.0.0.5") + (7000).to_bytes(2, "big")
        assert real in body  # the verified peer is still handed out
        peers = tracker.metric("seedcast_tracker_peers")
        assert peers <= 16 + 2 + 1
        assert tracker.metric("seedcast_tracker_peers_displaced_total") >= 600 - 16
        assert tracker.metric("seedcast_tracker_errors_total") >= 4
        after = tracker.rss()
        assert after - before < 32 * MIB
        report("tracker: 600 fresh ids from one address + bad queries + 200-hash scrape",
               f"{int(peers)} peers kept, real one listed", before, after, None)  # fmt: skip
