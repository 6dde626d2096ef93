"""Seedcast peers and libtorrent 2.x (a real client) share torrents through the Seedcast tracker.

Everything runs in this process: the tracker (TrackerService), Seedcast swarms
under trio, and libtorrent sessions (their own threads) bound to 127.0.0.1
with DHT, LSD, UPnP and NAT-PMP off. Files must come out byte-identical.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from seedcast.config import ClusterConfig
from seedcast.peer.metainfo import Metainfo, create_torrent
from seedcast.peer.storage import Storage
from seedcast.peer.swarm import Swarm, SwarmSettings

pytest.importorskip("libtorrent", reason="libtorrent (PyPI) is the real client under test")

from seedcast.testing.libtorrent_peer import LibtorrentPeer

pytestmark = pytest.mark.slow
TIMEOUT = 60
FILES = {"init.mp4": 3_000, "seg-1.m4s": 900_000, "seg-2.m4s": 1_100_001, "seg-3.m4s": 500_000}


class Setup:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.seed_dir = tmp / "seed"
        root = self.seed_dir / "movie"
        root.mkdir(parents=True)
        self.files = {}
        for name, size in FILES.items():
            data = os.urandom(size)
            (root / name).write_bytes(data)
            self.files[name] = data
        self.announce = ""
        self.torrent = b""
        self.metainfo: Metainfo | None = None

    def make_torrent(self, announce: str) -> None:
        self.torrent = create_torrent(
            self.seed_dir / "movie",
            list(FILES),
            announce=announce,
            name="movie",
            piece_length=32 * 1024,
        )
        self.metainfo = Metainfo.parse(self.torrent)

    def seedcast_peer(self, directory: Path, number: int, **settings: Any) -> Swarm:
        assert self.metainfo is not None
        host = f"127.0.40.{number}"
        return Swarm(
            self.metainfo,
            Storage(self.metainfo, directory),
            settings=SwarmSettings(local_address=host, **settings),
            listen=(host, 0),
            rng=random.Random(number),
            name=f"seedcast-{number}",
        )

    def libtorrent_peer(self, directory: Path, **options: Any) -> LibtorrentPeer:
        return LibtorrentPeer(self.torrent, directory, **options)

    def assert_identical(self, directory: Path) -> None:
        for name, data in self.files.items():
            assert (directory / "movie" / name).read_bytes() == data, f"{directory}: {name}"
        assert not (directory / "movie" / ".pad").exists()


@asynccontextmanager
async def tracker_and_setup(
    tmp: Path, config: ClusterConfig
) -> AsyncIterator[tuple[Setup, trio.Nursery]]:
    from seedcast.tracker.server import TrackerService

    tracker = TrackerService(config, "tracker")
    setup = Setup(tmp)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            (address,) = await nursery.start(
                lambda task_status: tracker.serve(["127.0.0.1:0"], task_status=task_status)
            )
            setup.make_torrent(f"http://{address}/announce")
            yield setup, nursery
            nursery.cancel_scope.cancel()


async def test_libtorrent_seeds_seedcast_downloads(tmp_path: Path, config: ClusterConfig) -> None:
    async with tracker_and_setup(tmp_path, config) as (setup, nursery):
        seed = setup.libtorrent_peer(setup.seed_dir)
        try:
            await seed.wait_checked()
            assert seed.is_seeding()
            leecher = setup.seedcast_peer(tmp_path / "leecher", 2)
            await nursery.start(leecher.serve)
            # no add_peer: the tracker (announced to by both) introduces them
            await leecher.wait_complete()
            statistics = leecher.statistics()
        finally:
            await seed.aclose()
    setup.assert_identical(tmp_path / "leecher")
    # Like libtorrent, we never ask for the BEP 47 padding at a piece's tail.
    metainfo = setup.metainfo
    assert metainfo is not None
    payload = sum(metainfo.piece_payload(index) for index in range(metainfo.piece_count))
    assert statistics.bytes_downloaded == payload
    assert statistics.protocol_errors == {}


async def test_seedcast_seeds_libtorrent_downloads(tmp_path: Path, config: ClusterConfig) -> None:
    async with tracker_and_setup(tmp_path, config) as (setup, nursery):
        seed = setup.seedcast_peer(setup.seed_dir, 1)
        await nursery.start(seed.serve)
        assert seed.complete
        # libtorrent's defaults: it tries an encrypted handshake first, then plaintext
        leecher = setup.libtorrent_peer(tmp_path / "leecher", encryption=True)
        try:
            await leecher.wait_seeding()
        finally:
            await leecher.aclose()
        uploaded = seed.statistics().bytes_uploaded
    setup.assert_identical(tmp_path / "leecher")
    assert uploaded >= sum(FILES.values())  # libtorrent skips padding


async def test_mixed_swarm_completes(tmp_path: Path, config: ClusterConfig) -> None:
    """One Seedcast seed, 2 libtorrent + 3 Seedcast leechers; the seed's upload is capped
    so the leechers must trade with each other, across implementations."""
    async with tracker_and_setup(tmp_path, config) as (setup, nursery):
        total = setup.metainfo.total_length  # type: ignore[union-attr]
        seed = setup.seedcast_peer(setup.seed_dir, 1, upload_rate=total / 2)
        await nursery.start(seed.serve)
        ours = [setup.seedcast_peer(tmp_path / f"seedcast-{n}", n) for n in (2, 3, 4)]
        theirs = [setup.libtorrent_peer(tmp_path / f"libtorrent-{n}") for n in (1, 2)]
        try:
            for peer in ours:
                await nursery.start(peer.serve)
            for peer in ours:
                await peer.wait_complete()
            for lt_peer in theirs:
                await lt_peer.wait_seeding()
            uploaded_by_leechers = sum(peer.statistics().bytes_uploaded for peer in ours)
            from_libtorrent = sum(lt.status().all_time_upload for lt in theirs)
        finally:
            for lt_peer in theirs:
                await lt_peer.aclose()
    for n in (2, 3, 4):
        setup.assert_identical(tmp_path / f"seedcast-{n}")
    for n in (1, 2):
        setup.assert_identical(tmp_path / f"libtorrent-{n}")
    assert uploaded_by_leechers > 0
    assert from_libtorrent > 0
