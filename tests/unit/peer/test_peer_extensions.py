"""BEP 10 extension handshake and BEP 11 ut_pex payloads; hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.errors import RemoteProtocolError
from seedcast.peer.extensions import (
    MAX_PEX_PEERS,
    UT_PEX_ID,
    PexState,
    encode_handshake,
    encode_pex,
    parse_handshake,
    parse_pex,
)
from seedcast.peer.messages import Extended, HaveAll
from seedcast.peer.wire import PeerWire
from test_peer_wire import CLIENT_ID, INFO_HASH, SERVER_ID, SHAPE


def test_handshake_round_trip_and_libtorrent_shape() -> None:
    ours = parse_handshake(encode_handshake(6881, "Seedcast 0.1.0"))
    assert (ours.ut_pex, ours.port, ours.client) == (UT_PEX_ID, 6881, "Seedcast 0.1.0")
    # what libtorrent sends (other extensions, ipv6 fields, reqq...)
    theirs = parse_handshake(
        b"d1:md11:lt_donthavei7e11:ut_metadatai3e6:ut_pexi2ee1:pi51413e4:reqqi500e"
        b"1:v17:libtorrent/2.0.11e"
    )
    assert (theirs.ut_pex, theirs.port, theirs.client) == (2, 51413, "libtorrent/2.0.11")
    assert parse_handshake(b"d1:md6:ut_pexi0eee").ut_pex is None  # 0 = disabled


def test_pex_round_trip_and_libtorrent_flags() -> None:
    payload = encode_pex([("127.0.40.2", 6881), ("::1", 5)], [("10.0.0.1", 80)])
    message = parse_pex(payload)
    assert message.added == (("127.0.40.2", 6881),)
    assert message.dropped == (("10.0.0.1", 80),)
    assert parse_pex(b"d5:added6:\x7f\x00\x00\x01\x1a\xe17:added.f1:\x10e").added == (
        ("127.0.0.1", 6881),
    )


@pytest.mark.parametrize(
    "payload",
    [b"", b"garbage", b"li1ee", b"d1:mi3ee", b"d5:added5:12345e", b"d5:addedi1ee", b"x" * 70000],
)
def test_hostile_payloads_are_remote_protocol_errors(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as error:
        parse_pex(payload) if b"added" in payload else parse_handshake(payload)
    assert error.value.reason == "extension"


def test_pex_takes_at_most_fifty_peers_and_no_port_zero() -> None:
    many = b"".join(bytes([10, 0, n // 256, n % 256]) + b"\x1a\xe1" for n in range(500))
    assert len(parse_pex(b"d5:added3000:" + many + b"e").added) == MAX_PEX_PEERS
    assert parse_pex(b"d5:added6:\x7f\x00\x00\x01\x00\x00e").added == ()


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_remote_protocol_error(payload: bytes) -> None:
    for parse in (parse_handshake, parse_pex):
        try:
            parse(payload)
        except RemoteProtocolError:
            pass


def test_pex_state_sends_differences_only() -> None:
    state = PexState()
    first = parse_pex(state.update([("10.0.0.1", 1), ("10.0.0.2", 2)]) or b"")
    assert set(first.added) == {("10.0.0.1", 1), ("10.0.0.2", 2)}
    assert state.update([("10.0.0.1", 1), ("10.0.0.2", 2)]) is None
    second = parse_pex(state.update([("10.0.0.2", 2), ("10.0.0.3", 3)]) or b"")
    assert (second.added, second.dropped) == ((("10.0.0.3", 3),), (("10.0.0.1", 1),))
    big = [(f"10.1.{n // 256}.{n % 256}", 1) for n in range(120)]
    assert len(parse_pex(state.update(big) or b"").added) == MAX_PEX_PEERS


def test_extended_messages_may_precede_the_bitfield() -> None:
    client = PeerWire(CLIENT_ID, SHAPE, extensions=True)
    server = PeerWire(SERVER_ID, SHAPE, extensions=True)
    server.receive_data(client.send(client.handshake(INFO_HASH)))
    client.receive_data(server.send(server.handshake(INFO_HASH)))
    assert client.extended
    assert server.extended
    data = server.send(Extended(0, b"de")) + server.send(HaveAll())
    assert client.receive_data(data) == [Extended(0, b"de"), HaveAll()]
