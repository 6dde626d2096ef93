"""A real seeding peer process under attack (#21): it stays up and legitimate peers get served.

Each attack opens real sockets to ``seedcast peer --seed`` from loopback
addresses of its own, then an honest in-process leecher must still download
everything, and the attack must show in the process's /metrics.
"""

from __future__ import annotations

import re
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

import pytest
import trio
from seedcast.peer.messages import BLOCK_SIZE
from seedcast.peer.swarm import SwarmSettings

if TYPE_CHECKING:
    from conftest import TorrentFixture

pytestmark = pytest.mark.slow
_READY = re.compile(rb"ready addresses=(\S+)")
TIMEOUT = 90


@asynccontextmanager
async def seed_process(
    small_torrent: TorrentFixture, *options: str
) -> AsyncIterator[tuple[tuple[str, int], tuple[str, int]]]:
    """``seedcast peer --seed`` on 127.0.40.1; yields its peer and metrics addresses."""
    command = [
        sys.executable, "-m", "seedcast", "--data", str(small_torrent.seed_dir),
        "peer", "--torrent", str(small_torrent.torrent), "--seed", "--name", "seed-1",
        "--listen", "127.0.40.1:0", "--metrics", "127.0.40.1:0", *options,
    ]  # fmt: skip
    process = await trio.lowlevel.open_process(command, stderr=subprocess.PIPE)
    assert process.stderr is not None
    try:
        log = b""
        with trio.fail_after(30):
            while not (match := _READY.search(log)):
                chunk = await process.stderr.receive_some(4096)
                assert chunk, log.decode()
                log += chunk
        peer, metrics = (
            (host, int(port))
            for host, port in (item.rsplit(":", 1) for item in match.group(1).decode().split(","))
        )
        yield peer, metrics
        assert process.returncode is None, "the seed died"
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def metric(address: tuple[str, int], name: str, **labels: str) -> float:
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        body = b""
        while chunk := await stream.receive_some(65536):
            body += chunk
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def handshake(info_hash: bytes, number: int) -> bytes:
    reserved = b"\x00" * 7 + b"\x04"  # fast extension
    return b"\x13BitTorrent protocol" + reserved + info_hash + b"-XX0000-" + b"%012d" % number


async def attacker(
    source: str,
    target: tuple[str, int],
    payload: bytes,
    *,
    receive_buffer: int | None = None,
    again: bytes = b"",
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Connect from ``source``, send ``payload``, then hold the socket open without reading.

    ``again`` is sent every 0.2 s meanwhile (blind requests from a peer that never reads).
    """
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.bind((source, 0))
    try:
        await sock.connect(target)
        await sock.send(payload)
    except OSError:
        sock.close()
        task_status.started()
        return
    task_status.started()
    with sock:
        while again:
            await trio.sleep(0.2)
            try:
                await sock.send(again)
            except OSError:
                return
        await trio.sleep_forever()


async def honest_download(small_torrent: TorrentFixture, seed: tuple[str, int]) -> None:
    leecher = small_torrent.leecher(
        "honest", settings=SwarmSettings(local_address="127.0.40.2", retry_seconds=0.5)
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(leecher.serve)
        leecher.add_peer(*seed)
        await leecher.wait_complete()
        nursery.cancel_scope.cancel()
    small_torrent.assert_identical(small_torrent.tmp / "honest")


async def test_handshake_only_connections_do_not_lock_out_honest_peers(
    small_torrent: TorrentFixture,
) -> None:
    info_hash = small_torrent.metainfo.info_hash
    async with seed_process(small_torrent, "--max-connections", "20") as (peer, metrics):
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as attacks:
                # 30 sockets from a single address (8 get in), then 50 from ten addresses
                # (which fill the table).
                for number in range(30):
                    await attacks.start(
                        attacker, "127.0.42.1", peer, handshake(info_hash, 100 + number)
                    )
                for number in range(50):
                    source = f"127.0.41.{1 + number % 10}"
                    await attacks.start(attacker, source, peer, handshake(info_hash, number))
                await honest_download(small_torrent, peer)
                assert await metric(metrics, "seedcast_peer_evictions_total") >= 1
                assert (
                    await metric(
                        metrics, "seedcast_peer_connections_refused_total", reason="per_host"
                    )
                    >= 30 - 8
                )
                attacks.cancel_scope.cancel()


async def test_connection_churn_costs_nothing_lasting(small_torrent: TorrentFixture) -> None:
    info_hash = small_torrent.metainfo.info_hash
    async with seed_process(small_torrent) as (peer, metrics):
        with trio.fail_after(TIMEOUT):
            for number in range(300):
                stream = await trio.open_tcp_stream(
                    *peer, local_address=f"127.0.44.{1 + number % 5}"
                )
                # half a handshake, or a whole one, then gone
                await stream.send_all(handshake(info_hash, number)[: 20 + number % 49])
                await stream.aclose()
            await honest_download(small_torrent, peer)
            assert await metric(metrics, "seedcast_peer_unfinished_handshakes_total") >= 200


def requests_for_everything(small_torrent: TorrentFixture) -> bytes:
    metainfo = small_torrent.metainfo
    messages = [b"\x00\x00\x00\x01\x02"]  # interested
    for index in range(metainfo.piece_count):
        size = metainfo.piece_size(index)
        for begin in range(0, size, BLOCK_SIZE):
            length = min(BLOCK_SIZE, size - begin)
            messages.append(struct.pack(">IBIII", 13, 6, index, begin, length))
    return b"".join(messages)


async def test_requesters_that_never_read_do_not_keep_honest_peers_choked(
    small_torrent: TorrentFixture,
) -> None:
    info_hash = small_torrent.metainfo.info_hash
    flood = requests_for_everything(small_torrent)
    async with seed_process(small_torrent) as (peer, metrics):
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as attacks:
                for number in range(20):
                    await attacks.start(
                        partial(
                            attacker,
                            f"127.0.43.{1 + number}",
                            peer,
                            handshake(info_hash, number) + flood,
                            receive_buffer=4096,
                            again=flood,
                        )
                    )
                await honest_download(small_torrent, peer)
                # Served while the non-readers were all still connected, not after
                # the write timeout dropped them.
                timeouts = await metric(
                    metrics, "seedcast_peer_protocol_errors_total", reason="timeout"
                )
                assert timeouts == 0
                attacks.cancel_scope.cancel()
