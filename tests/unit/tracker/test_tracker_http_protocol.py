"""HTTP tracker protocol: raw queries in, bencoded answers out; hostile queries."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import quote_from_bytes

import fastbencode
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seedcast.config import TrackerConfig
from seedcast.tracker._events import Rejected
from seedcast.tracker.http_protocol import (
    choose_ip,
    handle_announce,
    handle_scrape,
    parse_announce,
    parse_query,
)
from seedcast.tracker.swarms import Tracker

CLIENT = ("127.0.40.1", 40000)
INFO_HASH = bytes(range(20))  # includes bytes that must be percent-encoded
PEER_ID = b"-qB4630-\x00\xff&=+%?#/abc"


def query(**params: Any) -> str:
    base: dict[str, Any] = {
        "info_hash": INFO_HASH,
        "peer_id": PEER_ID,
        "port": 6881,
        "uploaded": 0,
        "downloaded": 0,
        "left": 1000,
    }
    base.update(params)
    parts = []
    for key, value in base.items():
        if value is None:
            continue
        raw = value if isinstance(value, bytes) else str(value).encode()
        parts.append(f"{key}={quote_from_bytes(raw, safe='')}")
    return "&".join(parts)


def decode(body: bytes) -> dict[bytes, Any]:
    value = fastbencode.bdecode(body)
    assert isinstance(value, dict)
    return value


@pytest.fixture
def tracker() -> Tracker:
    return Tracker(TrackerConfig())


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1)


def test_parse_query_is_bytewise() -> None:
    pairs = parse_query("info_hash=%00%FF%20a+b&x&=y&&k=%zz")
    assert pairs == [(b"info_hash", b"\x00\xff a b"), (b"x", b""), (b"", b"y"), (b"k", b"%zz")]


def test_parse_announce_round_trips_raw_bytes() -> None:
    parsed = parse_announce(query(event="started", numwant=10, key="abc"), CLIENT)
    assert parsed.info_hash == INFO_HASH
    assert parsed.peer_id == PEER_ID
    assert parsed.port == 6881
    assert parsed.left == 1000
    assert parsed.numwant == 10
    assert parsed.key == b"abc"
    assert parsed.ip == "127.0.40.1"
    assert parsed.event.label == "started"


def test_compact_answer(tracker: Tracker, rng: random.Random) -> None:
    other = query(peer_id=b"B" * 20, port=7000)
    handle_announce(tracker, other, ("127.0.40.2", 1), 0.0, rng)
    body = decode(handle_announce(tracker, query(compact=1), CLIENT, 1.0, rng))
    assert body[b"peers"] == bytes([127, 0, 40, 2]) + (7000).to_bytes(2, "big")
    assert body[b"complete"] == 0
    assert body[b"incomplete"] == 2
    assert 27 <= body[b"interval"] <= 33
    assert body[b"min interval"] == 5
    assert b"peers6" not in body


def test_dictionary_answer_with_and_without_peer_id(tracker: Tracker, rng: random.Random) -> None:
    handle_announce(tracker, query(peer_id=b"B" * 20, port=7000), ("127.0.40.2", 1), 0.0, rng)
    body = decode(handle_announce(tracker, query(compact=0), CLIENT, 1.0, rng))
    assert body[b"peers"] == [{b"ip": b"127.0.40.2", b"peer id": b"B" * 20, b"port": 7000}]
    body = decode(handle_announce(tracker, query(compact=0, no_peer_id=1), CLIENT, 1.0, rng))
    assert body[b"peers"] == [{b"ip": b"127.0.40.2", b"port": 7000}]


def test_ipv6_peers_go_in_peers6(tracker: Tracker, rng: random.Random) -> None:
    handle_announce(tracker, query(peer_id=b"B" * 20), ("::1", 1), 0.0, rng)
    body = decode(handle_announce(tracker, query(), CLIENT, 1.0, rng))
    assert body[b"peers"] == b""
    assert body[b"peers6"] == bytes(15) + b"\x01" + (6881).to_bytes(2, "big")


@pytest.mark.parametrize(
    ("params", "reason", "fragment"),
    [
        ({"info_hash": None}, "missing_info_hash", b"missing info_hash"),
        ({"info_hash": b"short"}, "bad_info_hash", b"20 bytes"),
        ({"info_hash": bytes(21)}, "bad_info_hash", b"20 bytes"),
        ({"peer_id": None}, "missing_peer_id", b"missing peer_id"),
        ({"peer_id": b"x" * 19}, "bad_peer_id", b"20 bytes"),
        ({"port": None}, "bad_port", b"port"),
        ({"port": 0}, "bad_port", b"port"),
        ({"port": 65536}, "bad_port", b"port"),
        ({"port": -1}, "bad_port", b"port"),
        ({"port": "http"}, "bad_port", b"port"),
        ({"port": "9" * 40}, "bad_port", b"port"),
        ({"event": "exploded"}, "bad_event", b"event"),
        ({"left": -5}, "bad_left", b"left"),
        ({"uploaded": "lots"}, "bad_uploaded", b"uploaded"),
        ({"downloaded": "9" * 30}, "bad_downloaded", b"downloaded"),
    ],
)
def test_bad_announces_get_failure_reason(
    tracker: Tracker, rng: random.Random, params: dict[str, Any], reason: str, fragment: bytes
) -> None:
    body = decode(handle_announce(tracker, query(**params), CLIENT, 0.0, rng))
    assert set(body) == {b"failure reason"}
    assert fragment in body[b"failure reason"]
    assert tracker.statistics().errors == {reason: 1}
    assert tracker.statistics().peers == 0


def test_not_allowed_says_never_retry(rng: random.Random) -> None:
    tracker = Tracker(TrackerConfig(allowlist=("11" * 20,)))
    body = decode(handle_announce(tracker, query(), CLIENT, 0.0, rng))
    assert body[b"retry in"] == b"never"
    assert tracker.statistics().errors == {"not_allowed": 1}


def test_lenient_fields(tracker: Tracker, rng: random.Random) -> None:
    body = decode(
        handle_announce(
            tracker, query(numwant="lots", left=None, uploaded=None, event=""), CLIENT, 0.0, rng
        )
    )
    assert b"failure reason" not in body


def test_too_many_parameters(tracker: Tracker, rng: random.Random) -> None:
    hostile = query() + "&x=1" * 100
    body = decode(handle_announce(tracker, hostile, CLIENT, 0.0, rng))
    assert b"failure reason" in body
    body = decode(handle_announce(tracker, "a" * 10000, CLIENT, 0.0, rng))
    assert b"failure reason" in body


@pytest.mark.parametrize(
    ("claimed", "source", "trust", "expected"),
    [
        (None, "127.0.40.1", False, "127.0.40.1"),
        (b"127.0.41.7", "127.0.40.1", False, "127.0.40.1"),  # loopback is no exception
        (b"127.0.41.7", "127.0.40.1", True, "127.0.41.7"),
        (b"8.8.8.8", "127.0.40.1", False, "127.0.40.1"),  # loopback can't point at others
        (b"10.0.0.9", "192.0.2.1", False, "192.0.2.1"),
        (b"10.0.0.9", "192.0.2.1", True, "10.0.0.9"),
        (b"::1", "127.0.0.1", True, "127.0.0.1"),  # family mismatch
        (b"example.com", "127.0.0.1", True, "127.0.0.1"),
        (b"\xff", "127.0.0.1", True, "127.0.0.1"),
        (None, "::ffff:127.0.0.5", False, "127.0.0.5"),
    ],
)
def test_choose_ip(claimed: bytes | None, source: str, trust: bool, expected: str) -> None:
    assert choose_ip(claimed, source, trust_ip_param=trust) == expected


def test_choose_ip_refuses_a_non_address_source() -> None:
    with pytest.raises(Rejected):
        choose_ip(None, "not-an-ip", trust_ip_param=False)


def test_scrape(tracker: Tracker, rng: random.Random) -> None:
    handle_announce(tracker, query(left=0), CLIENT, 0.0, rng)
    other = bytes([9]) * 20
    scrape_query = f"info_hash={quote_from_bytes(INFO_HASH)}&info_hash={quote_from_bytes(other)}"
    body = decode(handle_scrape(tracker, scrape_query, 0.0))
    assert body[b"files"][INFO_HASH] == {b"complete": 1, b"downloaded": 0, b"incomplete": 0}
    assert body[b"files"][other] == {b"complete": 0, b"downloaded": 0, b"incomplete": 0}
    assert body[b"flags"] == {b"min_request_interval": 5}
    everything = decode(handle_scrape(tracker, "", 0.0))
    assert list(everything[b"files"]) == [INFO_HASH]
    bad = decode(handle_scrape(tracker, "info_hash=abc", 0.0))
    assert b"failure reason" in bad
    assert tracker.statistics().errors == {"bad_info_hash": 1}
    assert tracker.statistics().scrapes == 2


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=300) | st.text(max_size=300))
def test_any_query_gets_a_bencoded_answer(raw: bytes | str) -> None:
    tracker = Tracker(TrackerConfig())
    rng = random.Random(0)
    for body in (
        handle_announce(tracker, raw, CLIENT, 0.0, rng),
        handle_scrape(tracker, raw, 0.0),
    ):
        assert isinstance(decode(body), dict)


@settings(max_examples=300, deadline=None)
@given(
    values=st.dictionaries(
        st.sampled_from(
            [
                "info_hash",
                "peer_id",
                "port",
                "left",
                "uploaded",
                "downloaded",
                "event",
                "numwant",
                "compact",
                "no_peer_id",
                "ip",
                "key",
            ]
        ),
        st.binary(max_size=24) | st.integers(min_value=-(2**70), max_value=2**70),
    )
)
def test_structured_hostile_announces(values: dict[str, Any]) -> None:
    tracker = Tracker(TrackerConfig())
    body = decode(handle_announce(tracker, query(**values), CLIENT, 0.0, random.Random(0)))
    if b"failure reason" in body:
        assert set(body) <= {b"failure reason", b"retry in"}
        assert sum(tracker.statistics().errors.values()) == 1
    else:
        assert isinstance(body[b"interval"], int)
    tracker.check_invariants()
