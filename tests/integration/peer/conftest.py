"""Shared fixtures: a small multi-file torrent with its data, and swarm helpers."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from seedcast.peer.metainfo import Metainfo, create_torrent
from seedcast.peer.storage import Storage
from seedcast.peer.swarm import Swarm, SwarmSettings


@dataclass
class TorrentFixture:
    metainfo: Metainfo
    torrent: Path
    seed_dir: Path
    """Download folder that already holds everything (seed_dir / name / ...)."""
    files: dict[str, bytes]
    tmp: Path

    def storage(self, directory: Path) -> Storage:
        return Storage(self.metainfo, directory)

    def seed(self, name: str = "seed", **options: object) -> Swarm:
        return self.swarm(self.seed_dir, name=name, **options)

    def leecher(self, name: str, **options: object) -> Swarm:
        return self.swarm(self.tmp / name, name=name, **options)

    def swarm(
        self,
        directory: Path,
        *,
        name: str,
        host: str = "127.0.0.1",
        settings: SwarmSettings | None = None,
        **options: object,
    ) -> Swarm:
        return Swarm(
            self.metainfo,
            Storage(self.metainfo, directory),
            settings=settings or SwarmSettings(local_address=host),
            listen=(host, 0),
            rng=random.Random(name),
            name=name,
            **options,  # type: ignore[arg-type]
        )

    def assert_identical(self, directory: Path) -> None:
        for relative, data in self.files.items():
            assert (directory / self.metainfo.name / relative).read_bytes() == data, relative


def make_torrent(
    tmp: Path, *, sizes: dict[str, int], piece_length: int, announce: str = ""
) -> TorrentFixture:
    seed_dir = tmp / "seed-data"
    root = seed_dir / "movie"
    files = {}
    for relative, size in sizes.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size)
        path.write_bytes(data)
        files[relative] = data
    torrent_bytes = create_torrent(
        root, list(sizes), announce=announce, name="movie", piece_length=piece_length
    )
    torrent = tmp / "movie.torrent"
    torrent.write_bytes(torrent_bytes)
    return TorrentFixture(Metainfo.parse(torrent_bytes), torrent, seed_dir, files, tmp)


@pytest.fixture
def small_torrent(tmp_path: Path) -> TorrentFixture:
    """About 1.3 MiB in three files (padded), 64 KiB pieces."""
    return make_torrent(
        tmp_path,
        sizes={"init.mp4": 5000, "seg-1.m4s": 700_000, "seg-2.m4s": 600_001},
        piece_length=64 * 1024,
    )
