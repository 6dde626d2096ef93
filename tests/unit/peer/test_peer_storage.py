"""Storage: layout on disk, padding never written, verification, resume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from seedcast.peer.messages import BLOCK_SIZE
from seedcast.peer.metainfo import Metainfo, create_torrent
from seedcast.peer.storage import Storage

PIECE = 2 * BLOCK_SIZE


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    (root / "video").mkdir(parents=True)
    (root / "video" / "a.m4s").write_bytes(os.urandom(PIECE + 1000))
    (root / "video" / "b.m4s").write_bytes(os.urandom(3 * PIECE))
    (root / "c.bin").write_bytes(os.urandom(777))
    return root


@pytest.fixture
def metainfo(source: Path) -> Metainfo:
    data = create_torrent(
        source,
        ["video/a.m4s", "video/b.m4s", "c.bin"],
        announce="http://127.0.30.1:6969/announce",
        name="movie",
        piece_length=PIECE,
    )
    return Metainfo.parse(data)


def copy_all(metainfo: Metainfo, seed: Storage, target: Storage) -> None:
    for index in range(metainfo.piece_count):
        size = metainfo.piece_size(index)
        for begin in range(0, size, BLOCK_SIZE):
            length = min(BLOCK_SIZE, size - begin)
            target.write_block(index, begin, seed.read_block(index, begin, length))
        assert target.finish_piece(index)


def test_seed_reads_the_source_layout(source: Path, metainfo: Metainfo, tmp_path: Path) -> None:
    # the source folder, seen as a download folder, is <dir>/<name>/...
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "movie").symlink_to(source)
    seed = Storage(metainfo, tmp_path / "seed")
    assert seed.check() == list(range(metainfo.piece_count))
    assert any(entry.padding for entry in metainfo.files)


def test_download_writes_identical_files_and_no_padding(
    source: Path, metainfo: Metainfo, tmp_path: Path
) -> None:
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "movie").symlink_to(source)
    seed = Storage(metainfo, tmp_path / "seed")
    target = Storage(metainfo, tmp_path / "download")
    assert target.check() == []
    copy_all(metainfo, seed, target)
    target.close()
    for name in ["video/a.m4s", "video/b.m4s", "c.bin"]:
        assert (tmp_path / "download" / "movie" / name).read_bytes() == (source / name).read_bytes()
    assert not (tmp_path / "download" / "movie" / ".pad").exists()
    assert Storage(metainfo, tmp_path / "download").check() == list(range(metainfo.piece_count))


def test_bad_piece_is_never_written(metainfo: Metainfo, tmp_path: Path) -> None:
    storage = Storage(metainfo, tmp_path / "download")
    storage.write_block(0, 0, b"x" * BLOCK_SIZE)
    storage.write_block(0, BLOCK_SIZE, b"y" * BLOCK_SIZE)
    assert not storage.finish_piece(0)
    assert storage.hash_failures == 1
    assert not (tmp_path / "download" / "movie").exists()
    assert not storage.write_piece(1, b"short")


def test_resume_counts_only_correct_pieces(
    source: Path, metainfo: Metainfo, tmp_path: Path
) -> None:
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "movie").symlink_to(source)
    seed = Storage(metainfo, tmp_path / "seed")
    target = Storage(metainfo, tmp_path / "download")
    for index in (0, 3):
        assert target.write_piece(index, seed.read_piece(index))
    target.close()
    assert Storage(metainfo, tmp_path / "download").check() == [0, 3]
    # corrupt piece 3 on disk: resume no longer counts it
    path = tmp_path / "download" / "movie" / "video" / "b.m4s"
    data = bytearray(path.read_bytes())
    data[PIECE + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    assert Storage(metainfo, tmp_path / "download").check() == [0]


def test_padding_reads_as_zeros(source: Path, metainfo: Metainfo, tmp_path: Path) -> None:
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "movie").symlink_to(source)
    seed = Storage(metainfo, tmp_path / "seed")
    piece = seed.read_piece(1)
    assert piece[:1000] == (source / "video" / "a.m4s").read_bytes()[PIECE:]
    assert piece[1000:] == bytes(PIECE - 1000)
    with pytest.raises(ValueError):
        seed.read_range(metainfo.total_length - 1, 2)
