"""PeerWire: golden bytes, two wires back to back, hostile input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seedcast.errors import LocalProtocolError, RemoteProtocolError
from seedcast.peer.messages import (
    BLOCK_SIZE,
    MAX_MESSAGE_LENGTH,
    AllowedFast,
    Bitfield,
    BlockRef,
    Cancel,
    Choke,
    ConnectionClosed,
    Handshake,
    Have,
    HaveAll,
    Interested,
    KeepAlive,
    MessageId,
    NotInterested,
    Piece,
    Port,
    RejectRequest,
    Request,
    RequestsDropped,
    Unchoke,
    UnknownMessage,
)
from seedcast.peer.wire import PeerWire, TorrentShape

INFO_HASH = bytes(range(20))
OTHER_HASH = bytes(range(1, 21))
CLIENT_ID = b"-SC0100-client000001"
SERVER_ID = b"-SC0100-server000001"
SHAPE = TorrentShape(INFO_HASH, piece_length=4 * BLOCK_SIZE, total_length=10 * 4 * BLOCK_SIZE - 100)


def handshake_bytes(
    info_hash: bytes = INFO_HASH, peer_id: bytes = SERVER_ID, fast: bool = True
) -> bytes:
    reserved = bytearray(8)
    if fast:
        reserved[7] |= 0x04
    return b"\x13BitTorrent protocol" + bytes(reserved) + info_hash + peer_id


def pair(*, client_fast: bool = True, server_fast: bool = True) -> tuple[PeerWire, PeerWire]:
    """A client (outgoing) and a server (incoming) wire, handshakes exchanged."""
    client = PeerWire(CLIENT_ID, SHAPE, fast=client_fast)
    server = PeerWire(SERVER_ID, {INFO_HASH: SHAPE, OTHER_HASH: SHAPE}, fast=server_fast)
    data = client.send(client.handshake(INFO_HASH))
    (received,) = server.receive_data(data)
    assert isinstance(received, Handshake)
    assert received.peer_id == CLIENT_ID
    (answer,) = client.receive_data(server.send(server.handshake(received.info_hash)))
    assert isinstance(answer, Handshake)
    return client, server


def transfer(source: PeerWire, target: PeerWire, *events: object) -> list[object]:
    data = b"".join(source.send(event) for event in events)  # type: ignore[arg-type]
    return list(target.receive_data(data))


# -- golden bytes -------------------------------------------------------------


def test_handshake_golden_bytes() -> None:
    client = PeerWire(CLIENT_ID, SHAPE)
    data = client.send(client.handshake(INFO_HASH))
    assert (
        data == b"\x13BitTorrent protocol\x00\x00\x00\x00\x00\x00\x00\x04" + INFO_HASH + CLIENT_ID
    )


def test_message_golden_bytes() -> None:
    client, server = pair()
    assert client.send(Bitfield(b"\xff\xc0")) == b"\x00\x00\x00\x03\x05\xff\xc0"
    assert client.send(KeepAlive()) == b"\x00\x00\x00\x00"
    assert client.send(Interested()) == b"\x00\x00\x00\x01\x02"
    assert client.send(NotInterested()) == b"\x00\x00\x00\x01\x03"
    assert client.send(Have(3)) == b"\x00\x00\x00\x05\x04\x00\x00\x00\x03"
    assert client.send(Unchoke()) == b"\x00\x00\x00\x01\x01"
    assert client.send(Choke()) == b"\x00\x00\x00\x01\x00"
    assert client.send(Port(6881)) == b"\x00\x00\x00\x03\x09\x1a\xe1"
    server.send(HaveAll())
    server.send(Unchoke())
    client.receive_data(b"\x00\x00\x00\x01\x0e\x00\x00\x00\x01\x01")
    request = client.send(Request(BlockRef(1, 16384, 16384)))
    assert request == b"\x00\x00\x00\x0d\x06" + struct.pack(">III", 1, 16384, 16384)
    cancel = client.send(Cancel(BlockRef(1, 16384, 16384)))
    assert cancel == b"\x00\x00\x00\x0d\x08" + struct.pack(">III", 1, 16384, 16384)


def test_message_id_tolerates_unknown_values() -> None:
    unknown = MessageId(42)
    assert unknown == 42
    assert not unknown.known
    assert MessageId.PIECE.known
    with pytest.raises(ValueError):
        MessageId(300)


# -- back to back ---------------------------------------------------------------


def test_fast_negotiated_only_when_both_offer_it() -> None:
    client, server = pair()
    assert client.fast
    assert server.fast
    client, server = pair(client_fast=False)
    assert not client.fast
    assert not server.fast


def test_request_piece_round_trip() -> None:
    client, server = pair()
    assert transfer(server, client, Bitfield.from_indices([0, 9], 10), Unchoke()) == [
        Bitfield.from_indices([0, 9], 10),
        Unchoke(),
    ]
    assert transfer(client, server, Interested()) == [Interested()]
    assert server.peer_interested
    assert not client.peer_choking
    block = BlockRef(9, 0, BLOCK_SIZE)
    assert transfer(client, server, Request(block)) == [Request(block)]
    assert block in server.remote_requests
    data = bytes([7]) * BLOCK_SIZE
    (piece,) = transfer(server, client, Piece(9, 0, data))
    assert piece == Piece(9, 0, data)
    assert not client.our_requests
    assert not server.remote_requests


def test_last_piece_is_shorter() -> None:
    client, server = pair()
    transfer(server, client, HaveAll(), Unchoke())
    last = SHAPE.piece_size(9)
    assert last == 4 * BLOCK_SIZE - 100
    tail = BlockRef(9, 3 * BLOCK_SIZE, BLOCK_SIZE - 100)
    assert transfer(client, server, Request(tail)) == [Request(tail)]
    with pytest.raises(LocalProtocolError):
        client.send(Request(BlockRef(9, 3 * BLOCK_SIZE, BLOCK_SIZE)))


def test_choke_with_fast_rejects_pending_requests() -> None:
    client, server = pair()
    transfer(server, client, HaveAll(), Unchoke())
    blocks = [BlockRef(0, 0, BLOCK_SIZE), BlockRef(0, BLOCK_SIZE, BLOCK_SIZE)]
    transfer(client, server, *(Request(block) for block in blocks))
    events = transfer(server, client, Choke())
    assert events == [Choke(), RejectRequest(blocks[0]), RejectRequest(blocks[1])]
    assert not client.our_requests
    assert not server.remote_requests


def test_choke_without_fast_drops_requests() -> None:
    client, server = pair(server_fast=False)
    transfer(server, client, Bitfield.from_indices(range(10), 10), Unchoke())
    block = BlockRef(2, 0, BLOCK_SIZE)
    transfer(client, server, Request(block))
    assert transfer(server, client, Choke()) == [Choke(), RequestsDropped((block,))]
    # the server discards requests that arrive while it chokes
    server.send(Unchoke())
    client.receive_data(b"\x00\x00\x00\x01\x01")
    server.send(Choke())
    assert server.receive_data(client.send(Request(block))) == []


def test_cancelled_request_may_still_be_answered() -> None:
    client, server = pair()
    transfer(server, client, HaveAll(), Unchoke())
    block = BlockRef(1, 0, BLOCK_SIZE)
    transfer(client, server, Request(block))
    piece_bytes = server.send(Piece(1, 0, bytes(BLOCK_SIZE)))
    assert transfer(client, server, Cancel(block)) == [Cancel(block)]
    assert client.receive_data(piece_bytes) == [Piece(1, 0, bytes(BLOCK_SIZE))]
    # cancelling something already answered sends nothing
    assert client.send(Cancel(block)) == b""


def test_allowed_fast_lets_us_request_while_choked() -> None:
    client, server = pair()
    transfer(server, client, HaveAll(), AllowedFast(4))
    client.send(Request(BlockRef(4, 0, BLOCK_SIZE)))
    with pytest.raises(LocalProtocolError):
        client.send(Request(BlockRef(5, 0, BLOCK_SIZE)))


def test_choke_keeps_requests_for_pieces_we_allowed_fast() -> None:
    client, server = pair()
    transfer(server, client, HaveAll(), AllowedFast(3), Unchoke())
    allowed, other = BlockRef(3, 0, BLOCK_SIZE), BlockRef(0, 0, BLOCK_SIZE)
    transfer(client, server, Request(allowed), Request(other))
    assert server.allowed_fast_out == {3}
    assert transfer(server, client, Choke()) == [Choke(), RejectRequest(other)]
    assert list(server.remote_requests) == [allowed]
    # still served while choked (BEP 6)
    assert transfer(server, client, Piece(3, 0, bytes(BLOCK_SIZE))) == [
        Piece(3, 0, bytes(BLOCK_SIZE))
    ]


def test_eof() -> None:
    client, _ = pair()
    assert client.receive_data(b"") == [ConnectionClosed()]
    assert client.receive_data(b"") == []


def test_unknown_messages_are_skipped() -> None:
    client, _ = pair()
    events = client.receive_data(b"\x00\x00\x00\x03\x14\x00x" + b"\x00\x00\x00\x01\x01")
    assert events == [UnknownMessage(20, b"\x00x"), Unchoke()]


def test_incoming_handshake_in_pieces() -> None:
    server = PeerWire(SERVER_ID, SHAPE)
    data = handshake_bytes(peer_id=CLIENT_ID) + b"\x00\x00\x00\x01\x02"
    events: list[object] = []
    for byte in data:
        for event in server.receive_data(bytes([byte])):
            events.append(event)
            if isinstance(event, Handshake):
                server.send(server.handshake(INFO_HASH))
                events.extend(server.pending_events())
    assert [type(event) for event in events] == [Handshake, Interested]


def test_incoming_parsing_pauses_until_our_handshake_is_sent() -> None:
    server = PeerWire(SERVER_ID, SHAPE)
    data = handshake_bytes(peer_id=CLIENT_ID) + b"\x00\x00\x00\x01\x0e"  # HAVE_ALL
    (event,) = server.receive_data(data)
    assert isinstance(event, Handshake)
    assert server.pending_events() == []
    server.send(server.handshake(INFO_HASH))
    assert server.fast
    assert server.pending_events() == [HaveAll()]


def test_cancel_with_fast_keeps_the_request_until_answered() -> None:
    client, server = pair()
    transfer(server, client, HaveAll(), Unchoke())
    block = BlockRef(1, 0, BLOCK_SIZE)
    transfer(client, server, Request(block))
    assert transfer(client, server, Cancel(block)) == [Cancel(block)]
    assert block in server.remote_requests
    assert transfer(server, client, RejectRequest(block)) == [RejectRequest(block)]
    assert not server.remote_requests


# -- our own misuse ---------------------------------------------------------------


def test_local_misuse_is_local_protocol_error() -> None:
    client = PeerWire(CLIENT_ID, SHAPE)
    with pytest.raises(LocalProtocolError):
        client.send(Interested())
    with pytest.raises(LocalProtocolError):
        client.send(client.handshake(OTHER_HASH))
    client, server = pair()
    server.send(Interested())
    with pytest.raises(LocalProtocolError):
        server.send(Bitfield(bytes(2)))
    with pytest.raises(LocalProtocolError):
        server.send(Piece(0, 0, b"x"))
    with pytest.raises(LocalProtocolError):
        client.send(Request(BlockRef(0, 0, BLOCK_SIZE)))  # choked


# -- hostile input -----------------------------------------------------------------


def established_server(*, fast: bool = True) -> PeerWire:
    server = PeerWire(SERVER_ID, SHAPE, fast=fast)
    server.receive_data(handshake_bytes(peer_id=CLIENT_ID, fast=fast))
    server.send(server.handshake(INFO_HASH))
    assert server.pending_events() == []
    return server


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET /announce HTTP/1.1\r\n", "handshake"),
        (b"\x13BitTorrent protocoX", "handshake"),
        (handshake_bytes(info_hash=bytes(20)), "info-hash"),
        (handshake_bytes(peer_id=SERVER_ID), "self-connection"),
    ],
)
def test_bad_handshakes(data: bytes, reason: str) -> None:
    server = PeerWire(SERVER_ID, SHAPE)
    with pytest.raises(RemoteProtocolError) as caught:
        server.receive_data(data)
    assert caught.value.reason == reason


def test_expected_peer_id_must_match() -> None:
    client = PeerWire(CLIENT_ID, SHAPE, expected_peer_id=b"x" * 20)
    client.send(client.handshake(INFO_HASH))
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive_data(handshake_bytes())
    assert caught.value.reason == "peer-id"


def test_outgoing_handshake_answer_must_name_our_torrent() -> None:
    client = PeerWire(CLIENT_ID, {INFO_HASH: SHAPE, OTHER_HASH: SHAPE})
    client.send(client.handshake(INFO_HASH))
    with pytest.raises(RemoteProtocolError):
        client.receive_data(handshake_bytes(info_hash=OTHER_HASH))


def message(message_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">IB", 1 + len(payload), message_id) + payload


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (struct.pack(">I", MAX_MESSAGE_LENGTH + 1), "oversized"),
        (struct.pack(">I", 0xFFFFFFFF), "oversized"),
        (message(4, struct.pack(">I", 10)), "range"),
        (message(4, b"\x00\x00"), "length"),
        (message(0, b"x"), "length"),
        (message(5, b"\xff"), "bitfield"),
        (message(5, b"\xff\xff"), "bitfield"),  # spare bits set (10 pieces)
        (message(6, struct.pack(">III", 0, 0, BLOCK_SIZE + 1)), "length"),
        (message(6, struct.pack(">III", 0, 0, 0)), "length"),
        (message(6, struct.pack(">III", 10, 0, 1)), "range"),
        (message(6, struct.pack(">III", 9, 4 * BLOCK_SIZE - 100, 1)), "range"),
        (message(7, struct.pack(">II", 0, 0) + b"x"), "unrequested"),
        (message(7, b"\x00\x00"), "length"),
        (message(7, struct.pack(">II", 0, 0) + bytes(BLOCK_SIZE + 1)), "length"),
        (message(0x10, struct.pack(">III", 0, 0, 16)), "unrequested"),
        (message(5, b"\xff\xc0") + message(5, b"\xff\xc0"), "order"),
        (message(1) + message(0x0E), "order"),
    ],
)
def test_hostile_messages(data: bytes, reason: str) -> None:
    server = established_server()
    with pytest.raises(RemoteProtocolError) as caught:
        server.receive_data(data)
    assert caught.value.reason == reason
    # the error is sticky
    with pytest.raises(RemoteProtocolError):
        server.receive_data(b"\x00\x00\x00\x00")


def test_fast_messages_need_the_extension() -> None:
    server = established_server(fast=False)
    with pytest.raises(RemoteProtocolError) as caught:
        server.receive_data(message(0x0E))
    assert caught.value.reason == "fast"


def test_request_flood_is_refused() -> None:
    server = PeerWire(SERVER_ID, SHAPE, max_remote_requests=3)
    server.receive_data(handshake_bytes(peer_id=CLIENT_ID))
    server.send(server.handshake(INFO_HASH))
    requests = b"".join(message(6, struct.pack(">III", 0, begin, 16)) for begin in range(0, 64, 16))
    with pytest.raises(RemoteProtocolError) as caught:
        server.receive_data(requests)
    assert caught.value.reason == "flood"


def test_oversized_prefix_detected_before_the_body_arrives() -> None:
    server = established_server()
    with pytest.raises(RemoteProtocolError):
        server.receive_data(struct.pack(">I", 2**31))
    assert server.buffered() == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.booleans())
def test_any_bytes_give_events_or_remote_protocol_error(data: bytes, one_at_a_time: bool) -> None:
    for start in (PeerWire(SERVER_ID, SHAPE), established_server()):
        chunks = [data[i : i + 1] for i in range(len(data))] if one_at_a_time else [data]
        try:
            for chunk in chunks:
                start.receive_data(chunk)
            start.receive_data(b"")
        except RemoteProtocolError:
            pass


_message_ids = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 20, 99])


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(_message_ids, st.binary(max_size=40)).map(lambda item: message(*item)),
        max_size=20,
    ),
    st.integers(min_value=1, max_value=64),
)
def test_framed_garbage_gives_events_or_remote_protocol_error(
    frames: list[bytes], chunk: int
) -> None:
    server = established_server()
    data = b"".join(frames)
    try:
        for start in range(0, len(data), chunk):
            for event in server.receive_data(data[start : start + chunk]):
                assert event is not None
    except RemoteProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.builds(Have, st.integers(0, 9)),
            st.just(Interested()),
            st.just(NotInterested()),
            st.just(Unchoke()),
            st.just(KeepAlive()),
            st.builds(Port, st.integers(0, 65535)),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_round_trip(events: list[object]) -> None:
    client, server = pair()
    data = b"".join(client.send(event) for event in events)  # type: ignore[arg-type]
    assert server.receive_data(data) == events


def test_send_haves_is_many_have_messages() -> None:
    client, server = pair()
    assert client.send_haves([1, 9, 0]) == b"".join(client.send(Have(index)) for index in (1, 9, 0))
    assert server.receive_data(client.send_haves([2, 3])) == [Have(2), Have(3)]
    with pytest.raises(LocalProtocolError):
        client.send_haves([10])
