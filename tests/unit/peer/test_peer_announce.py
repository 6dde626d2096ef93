"""Announce URL building and tracker response parsing (hostile responses included)."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

import fastbencode
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seedcast.errors import RemoteProtocolError
from seedcast.peer.announce import (
    AnnounceEvent,
    AnnounceRequest,
    PeerAddress,
    TrackerFailure,
    parse_announce_response,
)

INFO_HASH = bytes(range(236, 256))
PEER_ID = b"-SC0100-%&?= \x00\xff/abcd"


def test_announce_url_encodes_binary_fields() -> None:
    request = AnnounceRequest(INFO_HASH, PEER_ID, 6881, 10, 20, 30, AnnounceEvent.STARTED)
    url = request.url("http://127.0.30.1:6969/announce")
    parts = urlsplit(url)
    assert parts.path == "/announce"
    raw = dict(item.split("=", 1) for item in parts.query.split("&"))
    assert unquote_to_bytes(raw["info_hash"]) == INFO_HASH
    assert unquote_to_bytes(raw["peer_id"]) == PEER_ID
    query = parse_qs(parts.query)
    assert query["port"] == ["6881"]
    assert query["left"] == ["30"]
    assert query["event"] == ["started"]
    assert query["compact"] == ["1"]
    with pytest.raises(ValueError):
        request.url("udp://127.0.0.1:6969")


def test_compact_and_dictionary_peers() -> None:
    body = fastbencode.bencode(
        {
            b"interval": 30,
            b"min interval": 5,
            b"complete": 1,
            b"incomplete": 2,
            b"peers": bytes([127, 0, 40, 1, 0x1A, 0xE1, 127, 0, 40, 2, 0, 80]),
        }
    )
    response = parse_announce_response(body)
    assert response.interval == 30
    assert response.min_interval == 5
    assert response.peers == (PeerAddress("127.0.40.1", 6881), PeerAddress("127.0.40.2", 80))
    body = fastbencode.bencode(
        {b"interval": 30, b"peers": [{b"ip": b"127.0.0.1", b"port": 7000, b"peer id": b"x" * 20}]}
    )
    assert parse_announce_response(body).peers == (PeerAddress("127.0.0.1", 7000, b"x" * 20),)


def test_failure_reason() -> None:
    with pytest.raises(TrackerFailure, match="unknown torrent"):
        parse_announce_response(fastbencode.bencode({b"failure reason": b"unknown torrent"}))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>",
        b"l" * 100_000 + b"e" * 100_000,
        b"d5:peers5:abcdee",
        b"d8:intervali-1ee",
        b"d5:peersi3ee",
        b"d5:peersl4:spamee",
        b"d5:peersld2:ip3:bad4:porti1eeee",
        b"x" * (2 * 1024 * 1024),
    ],
)
def test_hostile_responses(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_announce_response(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_remote_protocol_error(body: bytes) -> None:
    try:
        parse_announce_response(body)
    except RemoteProtocolError:
        pass
