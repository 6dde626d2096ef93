"""Swarms over real loopback sockets: transfers, caps, resume, hostile and lying peers."""

from __future__ import annotations

import random
import socket
import struct
from typing import TYPE_CHECKING, Any

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seedcast.peer._rawsocket import RawStream
from seedcast.peer.messages import BLOCK_SIZE, HaveAll, Piece, Request, Unchoke
from seedcast.peer.swarm import PieceCompleted, Swarm, SwarmSettings, new_peer_id
from seedcast.peer.wire import PeerWire

if TYPE_CHECKING:
    from conftest import TorrentFixture

TIMEOUT = 30


async def start(nursery: trio.Nursery, swarm: Swarm) -> tuple[str, int]:
    (address,) = await nursery.start(swarm.serve)
    host, port = address.rsplit(":", 1)
    return host, int(port)


async def test_seed_to_leecher(small_torrent: TorrentFixture) -> None:
    seed = small_torrent.seed()
    leecher = small_torrent.leecher("leecher")
    seen: list[PieceCompleted] = []
    leecher.add_piece_listener(seen.append)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            seed_address = await start(nursery, seed)
            await start(nursery, leecher)
            assert seed.complete
            assert not leecher.complete
            leecher.add_peer(*seed_address)
            await leecher.wait_complete()
            nursery.cancel_scope.cancel()
    small_torrent.assert_identical(small_torrent.tmp / "leecher")
    assert sorted(event.index for event in seen) == list(range(small_torrent.metainfo.piece_count))
    assert {event.source for event in seen} == {"peer"}
    statistics = leecher.statistics()
    assert statistics.complete
    # Trailing BEP 47 padding is never on the wire: each piece up to its file's end.
    metainfo = small_torrent.metainfo
    payload = sum(metainfo.piece_payload(index) for index in range(metainfo.piece_count))
    assert payload < metainfo.total_length
    assert statistics.bytes_downloaded == payload
    assert statistics.seconds_to_complete is not None
    assert seed.statistics().bytes_uploaded == payload
    assert not (small_torrent.tmp / "leecher" / "movie" / ".pad").exists()


async def test_leechers_trade_with_each_other_under_caps(small_torrent: TorrentFixture) -> None:
    total = small_torrent.metainfo.total_length
    # The seed can upload the file about once in the time allowed; leechers must trade.
    seed = small_torrent.seed(settings=SwarmSettings(upload_rate=total / 2))
    leechers = [
        small_torrent.leecher(f"l{number}", settings=SwarmSettings(upload_rate=total / 2))
        for number in range(3)
    ]
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            seed_address = await start(nursery, seed)
            addresses = [await start(nursery, leecher) for leecher in leechers]
            for number, leecher in enumerate(leechers):
                leecher.add_peer(*seed_address)
                for other in addresses[:number]:
                    leecher.add_peer(*other)
            for leecher in leechers:
                await leecher.wait_complete()
            nursery.cancel_scope.cancel()
    for leecher in leechers:
        small_torrent.assert_identical(small_torrent.tmp / leecher.name)
    assert sum(leecher.statistics().bytes_uploaded for leecher in leechers) > 0
    assert seed.statistics().bytes_uploaded < 3 * total


async def test_resume_downloads_only_what_is_missing(small_torrent: TorrentFixture) -> None:
    metainfo = small_torrent.metainfo
    source = small_torrent.storage(small_torrent.seed_dir)
    partial = small_torrent.storage(small_torrent.tmp / "leecher")
    for index in range(0, metainfo.piece_count, 2):
        assert partial.write_piece(index, source.read_piece(index))
    partial.close()
    seed = small_torrent.seed()
    leecher = small_torrent.leecher("leecher")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            seed_address = await start(nursery, seed)
            await start(nursery, leecher)
            assert leecher.statistics().pieces_have == (metainfo.piece_count + 1) // 2
            leecher.add_peer(*seed_address)
            await leecher.wait_complete()
            nursery.cancel_scope.cancel()
    small_torrent.assert_identical(small_torrent.tmp / "leecher")
    expected = sum(metainfo.piece_payload(index) for index in range(1, metainfo.piece_count, 2))
    assert leecher.statistics().bytes_downloaded == expected


def handshake(info_hash: bytes, *, fast: bool = False) -> bytes:
    reserved = b"\x00" * 7 + (b"\x04" if fast else b"\x00")
    return b"\x13BitTorrent protocol" + reserved + info_hash + b"-XX0000-hostile00000"


async def test_hostile_connections_never_kill_the_peer(small_torrent: TorrentFixture) -> None:
    info_hash = small_torrent.metainfo.info_hash
    attacks = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not BitTorrent
        b"\x00\x00\x00\x01\x02",  # a message before the handshake
        handshake(bytes(20)),  # a torrent we don't serve
        handshake(info_hash) + struct.pack(">I", 0xFFFFFFF0),  # oversized length prefix
        # a request for a piece we don't have (with the fast extension, so it is not
        # simply discarded as a request while choked)
        handshake(info_hash, fast=True)
        + b"\x00\x00\x00\x0d\x06"
        + struct.pack(">III", 0, 0, BLOCK_SIZE),
        handshake(info_hash) + b"\x00\x00\x00\x02\x05\xff",  # wrong bitfield size
        handshake(info_hash) + b"\x00\x00\x00\x0a\x07" + bytes(9),  # a piece never requested
        handshake(info_hash)[:30],  # truncated, then EOF
    ]
    leecher = small_torrent.leecher("victim")
    seed = small_torrent.seed()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            host, port = await start(nursery, leecher)
            for attack in attacks:
                stream = await trio.open_tcp_stream(host, port)
                await stream.send_all(attack)
                await stream.send_eof()
                # the victim closes the connection: reading ends
                while await stream.receive_some(65536):
                    pass
                await stream.aclose()
            # still alive and useful
            seed_address = await start(nursery, seed)
            leecher.add_peer(*seed_address)
            await leecher.wait_complete()
            nursery.cancel_scope.cancel()
    errors = leecher.statistics().protocol_errors
    assert sum(errors.values()) == len(attacks) - 1, repr(
        errors
    )  # a truncated handshake is no error
    assert {"handshake", "info-hash", "oversized", "request-missing", "bitfield"} <= set(errors)
    small_torrent.assert_identical(small_torrent.tmp / "victim")


async def lying_seed(
    small_torrent: TorrentFixture,
    host: str,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Says it has everything and serves garbage."""
    metainfo = small_torrent.metainfo
    listeners = await trio.open_tcp_listeners(0, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])

    async def serve_one(stream: trio.SocketStream) -> None:
        from seedcast.peer.wire import TorrentShape

        shape = TorrentShape(metainfo.info_hash, metainfo.piece_length, metainfo.total_length)
        wire = PeerWire(b"-XX0000-liar00000000", shape)
        async with stream:
            try:
                while data := await stream.receive_some(65536):
                    out = b""
                    for event in wire.receive_data(data):
                        if event.__class__.__name__ == "Handshake":
                            out += wire.send(wire.handshake(metainfo.info_hash))
                            out += wire.send(HaveAll()) + wire.send(Unchoke())
                        elif isinstance(event, Request):
                            block = event.block
                            out += wire.send(
                                Piece(block.index, block.begin, b"\xee" * block.length)
                            )
                    await stream.send_all(out)
            except (trio.BrokenResourceError, OSError):
                pass

    await trio.serve_listeners(serve_one, listeners)


async def test_lying_peer_is_banned_and_download_completes(small_torrent: TorrentFixture) -> None:
    leecher = small_torrent.leecher("leecher", host="127.0.40.2")
    seed = small_torrent.seed(host="127.0.40.1", settings=SwarmSettings(local_address="127.0.40.1"))
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            liar_port = await nursery.start(lying_seed, small_torrent, "127.0.40.66")
            await start(nursery, leecher)
            leecher.add_peer("127.0.40.66", liar_port)
            seed_address = await start(nursery, seed)
            leecher.add_peer(*seed_address)
            await leecher.wait_complete()
            nursery.cancel_scope.cancel()
    statistics = leecher.statistics()
    assert statistics.hash_failures >= 1
    assert statistics.bans == 1
    assert "127.0.40.66" in leecher._banned_hosts
    assert "127.0.40.1" not in leecher._banned_hosts
    small_torrent.assert_identical(small_torrent.tmp / "leecher")


async def test_connection_cap(small_torrent: TorrentFixture) -> None:
    total = small_torrent.metainfo.total_length
    seed = small_torrent.seed(settings=SwarmSettings(max_connections=1, upload_rate=total * 2))
    quick_retry = SwarmSettings(retry_seconds=0.1)
    leechers = [small_torrent.leecher(f"l{number}", settings=quick_retry) for number in range(2)]
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            seed_address = await start(nursery, seed)
            for leecher in leechers:
                await start(nursery, leecher)
            leechers[0].add_peer(*seed_address)
            await leechers[0].wait_piece(0)
            assert not leechers[0].complete
            leechers[1].add_peer(*seed_address)
            # refused while the first is there; served once it is done and leaves
            await leechers[0].wait_complete()
            await leechers[1].wait_complete()
            nursery.cancel_scope.cancel()
    assert seed.statistics().connections_refused >= 1
    small_torrent.assert_identical(small_torrent.tmp / "l1")


async def test_pieces_from_elsewhere_are_verified_and_shared(small_torrent: TorrentFixture) -> None:
    """The viewer agent's path: a piece fetched from the CDN joins the swarm."""
    metainfo = small_torrent.metainfo
    source = small_torrent.storage(small_torrent.seed_dir)
    first = small_torrent.leecher("first")
    second = small_torrent.leecher("second")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            first_address = await start(nursery, first)
            await start(nursery, second)
            assert not first.add_verified_piece(3, b"\x00" * metainfo.piece_size(3))
            assert first.statistics().hash_failures == 1
            assert first.add_verified_piece(3, source.read_piece(3), source="edge")
            assert first.read(3, 0, 10) == source.read_piece(3)[:10]
            second.picker.restrict_to_priority = True
            second.picker.set_deadline(3, trio.current_time() + 5)
            second.add_peer(*first_address)
            await second.wait_piece(3)
            nursery.cancel_scope.cancel()
    assert second.picker.has(3)
    assert second.statistics().pieces_have == 1
    assert new_peer_id(random.Random(1)).startswith(b"-SC0100-")


async def test_swarm_through_the_seedcast_tracker(
    small_torrent: TorrentFixture, config: Any
) -> None:
    from seedcast.tracker.server import TrackerService

    tracker = TrackerService(config, "tracker")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            (tracker_address,) = await nursery.start(
                lambda task_status: tracker.serve(["127.0.0.1:0"], task_status=task_status)
            )
            url = f"http://{tracker_address}/announce"
            peers = [
                small_torrent.swarm(
                    small_torrent.seed_dir if number == 1 else small_torrent.tmp / f"p{number}",
                    name=f"p{number}",
                    host=f"127.0.40.{number}",
                    settings=SwarmSettings(local_address=f"127.0.40.{number}"),
                    announce_urls=[url],
                )
                for number in (1, 2, 3)
            ]
            for peer in peers:
                await start(nursery, peer)
            for peer in peers[1:]:
                await peer.wait_complete()
            assert peers[2].last_announce is not None
            assert {peer.host for peer in peers[2].last_announce.peers} <= {
                "127.0.40.1",
                "127.0.40.2",
            }
            nursery.cancel_scope.cancel()
    for number in (2, 3):
        small_torrent.assert_identical(small_torrent.tmp / f"p{number}")
    assert tracker.tracker.statistics().announces.get("started") == 3


_frames = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 20, 77]),
        st.binary(max_size=24),
    ).map(lambda item: struct.pack(">IB", 1 + len(item[1]), item[0]) + item[1]),
    max_size=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frames=_frames, fast=st.booleans())
def test_fuzzed_messages_cost_a_connection_at_most(
    small_torrent: TorrentFixture, frames: list[bytes], fast: bool
) -> None:
    """Random framed messages after a valid handshake, straight into a live seed."""

    async def scenario() -> None:
        seed = small_torrent.seed()
        async with trio.open_nursery() as nursery:
            await nursery.start(seed.serve)
            ours, theirs = socket.socketpair()
            nursery.start_soon(seed._run_connection, RawStream(ours), ("127.0.0.9", 1), False)
            attacker = RawStream(theirs)
            info_hash = small_torrent.metainfo.info_hash
            await attacker.send_all(handshake(info_hash, fast=fast) + b"".join(frames))
            theirs.shutdown(socket.SHUT_WR)
            while await attacker.receive_some(65536):  # the seed answers, then hangs up
                pass
            await attacker.aclose()
            assert seed.statistics().peers_connected == 0
            nursery.cancel_scope.cancel()
        assert "internal" not in seed.statistics().protocol_errors

    trio.run(scenario)
