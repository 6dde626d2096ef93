"""Metainfo: creating, parsing, layout queries, and hostile input."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import fastbencode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seedcast.errors import RemoteProtocolError, UsageError
from seedcast.peer.metainfo import (
    MAX_METAINFO_SIZE,
    Metainfo,
    choose_piece_length,
    create_single_file_torrent,
    create_torrent,
)
from seedcast.units import KiB, MiB

ANNOUNCE = "http://127.0.30.1:6969/announce"


def _write(root: Path, files: dict[str, bytes]) -> list[str]:
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return list(files)


def _info(**overrides: Any) -> dict[bytes, Any]:
    info: dict[bytes, Any] = {
        b"name": b"movie",
        b"piece length": 16 * KiB,
        b"pieces": bytes(20),
        b"files": [{b"length": 1000, b"path": [b"a.m4s"]}],
    }
    for key, value in overrides.items():
        raw = key.replace("_", " ").encode()
        if value is None:
            info.pop(raw, None)
        else:
            info[raw] = value
    return info


def _torrent(info: dict[bytes, Any], **top: Any) -> bytes:
    root: dict[bytes, Any] = {b"announce": ANNOUNCE.encode(), b"info": info}
    root.update({key.encode(): value for key, value in top.items()})
    return bytes(fastbencode.bencode(root))


# --- piece length --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (0, 16 * KiB),
        (1, 16 * KiB),
        (2000 * 16 * KiB, 16 * KiB),
        (2000 * 16 * KiB + 1, 32 * KiB),
        (100 * MiB, 64 * KiB),
        (10 * 1024 * MiB, 1 * MiB),
        (10**15, 1 * MiB),
    ],
)
def test_choose_piece_length(total: int, expected: int) -> None:
    assert choose_piece_length(total) == expected


@given(st.integers(min_value=0, max_value=10**13))
def test_choose_piece_length_is_a_bounded_power_of_two(total: int) -> None:
    length = choose_piece_length(total)
    assert 16 * KiB <= length <= 1 * MiB
    assert length & (length - 1) == 0
    if length < 1 * MiB:
        assert total <= 2000 * length
    if length > 16 * KiB:
        assert total > 1000 * length  # so 1000..2000 pieces whenever the range allows


# --- create + parse ------------------------------------------------------------------------


def test_create_pads_every_file_to_a_piece_boundary(tmp_path: Path) -> None:
    contents = {"720p/init.mp4": b"i" * 700, "720p/1.m4s": b"a" * 40_000, "manifest.mpd": b"m" * 5}
    files = _write(tmp_path, contents)
    data = create_torrent(tmp_path, files, announce=ANNOUNCE, name="movie")
    meta = Metainfo.parse(data)
    assert meta.name == "movie"
    assert meta.announce == ANNOUNCE
    assert meta.piece_length == 16 * KiB
    assert [entry.path for entry in meta.real_files] == [
        ("720p", "init.mp4"),
        ("720p", "1.m4s"),
        ("manifest.mpd",),
    ]
    for entry in meta.real_files:
        assert entry.offset % meta.piece_length == 0
    pads = [entry for entry in meta.files if entry.padding]
    assert [entry.path for entry in pads] == [(".pad", str(16 * KiB - 700)), (".pad", "9152")]
    assert meta.total_length == 16 * KiB + 48 * KiB + 5
    assert meta.file_pieces("720p/1.m4s") == range(1, 4)
    assert meta.file_pieces(("manifest.mpd",)) == range(4, 5)
    # Every piece hash is the SHA-1 of the bytes laid out with zero padding.
    layout = b"".join(
        bytes(entry.length) if entry.padding else contents["/".join(entry.path)]
        for entry in meta.files
    )
    for index, digest in enumerate(meta.pieces):
        start = index * meta.piece_length
        assert hashlib.sha1(layout[start : start + meta.piece_size(index)]).digest() == digest
    # Deterministic: the same input gives the same bytes.
    assert create_torrent(tmp_path, files, announce=ANNOUNCE, name="movie") == data


def test_create_without_padding(tmp_path: Path) -> None:
    files = _write(tmp_path, {"a": b"x" * 100, "b": b"y" * 100})
    meta = Metainfo.parse(create_torrent(tmp_path, files, announce="", name="t", pad_files=False))
    assert [entry.offset for entry in meta.files] == [0, 100]
    assert meta.announce == ""
    assert meta.piece_count == 1


def test_info_hash_matches_libtorrent(tmp_path: Path) -> None:
    libtorrent = pytest.importorskip("libtorrent")
    files = _write(tmp_path, {"a.bin": b"\x01" * 100_000, "sub/b.bin": b"\x02" * 50_000})
    data = create_torrent(tmp_path, files, announce=ANNOUNCE, name="d")
    meta = Metainfo.parse(data)
    info = libtorrent.torrent_info(libtorrent.bdecode(data))
    assert str(info.info_hash()) == meta.info_hash.hex()
    assert info.num_pieces() == meta.piece_count
    assert info.total_size() == meta.total_length


@pytest.mark.parametrize("v1_only", [True, False], ids=["v1", "hybrid"])
def test_parses_libtorrent_made_torrent(tmp_path: Path, v1_only: bool) -> None:
    libtorrent = pytest.importorskip("libtorrent")
    _write(tmp_path, {"d/a.bin": b"\x07" * 70_000, "d/b.bin": b"\x08" * 3})
    flags = libtorrent.create_torrent.v1_only if v1_only else 0
    creator = libtorrent.create_torrent(libtorrent.list_files(str(tmp_path / "d")), 16 * KiB, flags)
    creator.add_tracker(ANNOUNCE)
    libtorrent.set_piece_hashes(creator, str(tmp_path))
    data = libtorrent.bencode(creator.generate())
    meta = Metainfo.parse(data)
    hashes = libtorrent.torrent_info(libtorrent.bdecode(data)).info_hashes()
    assert meta.info_hash.hex() == str(hashes.v1)
    assert {entry.path for entry in meta.real_files} == {("a.bin",), ("b.bin",)}


def test_single_file_torrent(tmp_path: Path) -> None:
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"v" * 40_000)
    meta = Metainfo.parse(create_single_file_torrent(source, announce=ANNOUNCE))
    assert meta.single_file
    assert meta.files[0].path == ("clip.mp4",)
    assert str(meta.relative_path(meta.files[0])) == "clip.mp4"
    assert meta.piece_count == 3
    assert meta.piece_size(2) == 40_000 - 32 * KiB
    assert meta.piece_spans(1) == [(meta.files[0], 16 * KiB, 16 * KiB)]


def test_progress_reports_every_byte(tmp_path: Path) -> None:
    files = _write(tmp_path, {"a": b"x" * 3_000_000, "b": b"y" * 10})
    seen: list[int] = []
    data = create_torrent(tmp_path, files, announce="", name="t", progress=seen.append)
    assert sum(seen) == Metainfo.parse(data).total_length
    assert max(seen) <= 1 * MiB


@pytest.mark.parametrize(
    "files",
    [["../x"], ["/etc/passwd"], ["a/../b"], ["./a"], ["a//b"], [], ["a", "a"], ["missing"]],
)
def test_create_refuses_bad_file_lists(tmp_path: Path, files: list[str]) -> None:
    _write(tmp_path, {"a": b"1", "b": b"2"})
    with pytest.raises(UsageError):
        create_torrent(tmp_path, files, announce="", name="t")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b"])
def test_create_refuses_bad_names(tmp_path: Path, name: str) -> None:
    _write(tmp_path, {"a": b"1"})
    with pytest.raises(UsageError):
        create_torrent(tmp_path, ["a"], announce="", name=name)


def test_create_refuses_empty_data_and_bad_piece_length(tmp_path: Path) -> None:
    _write(tmp_path, {"empty": b"", "a": b"1"})
    with pytest.raises(UsageError):
        create_torrent(tmp_path, ["empty"], announce="", name="t")
    with pytest.raises(UsageError):
        create_torrent(tmp_path, ["a"], announce="", name="t", piece_length=3000)


def test_piece_spans_cross_files_and_skip_empty_files() -> None:
    info = _info(
        piece_length=16 * KiB,
        pieces=bytes(40),
        files=[
            {b"length": 10_000, b"path": [b"a"]},
            {b"length": 0, b"path": [b"empty"]},
            {b"length": 10_000, b"path": [b"b"]},
        ],
    )
    meta = Metainfo.parse(_torrent(info))
    a, _empty, b = meta.files
    assert meta.piece_spans(0) == [(a, 0, 10_000), (b, 0, 16 * KiB - 10_000)]
    assert meta.piece_spans(1) == [(b, 16 * KiB - 10_000, 20_000 - 16 * KiB)]
    assert meta.file_pieces("empty") == range(0, 0)
    assert meta.file_pieces("b") == range(0, 2)
    with pytest.raises(IndexError):
        meta.piece_spans(2)
    with pytest.raises(KeyError):
        meta.file_pieces("nope")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=70_000), min_size=1, max_size=6).filter(
        lambda sizes: sum(sizes) > 0
    ),
    pad=st.booleans(),
)
def test_layout_properties(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], pad: bool
) -> None:
    root = tmp_path_factory.mktemp("layout")
    files = _write(root, {f"f{number}": b"z" * size for number, size in enumerate(sizes)})
    meta = Metainfo.parse(create_torrent(root, files, announce="", name="t", pad_files=pad))
    # Spans tile every piece exactly, in order, and only over non-empty files.
    covered = 0
    for index in range(meta.piece_count):
        spans = meta.piece_spans(index)
        assert sum(length for _, _, length in spans) == meta.piece_size(index)
        for entry, offset, length in spans:
            assert entry.offset + offset == covered
            assert length > 0
            assert offset + length <= entry.length
            covered += length
    assert covered == meta.total_length
    if pad:
        for entry in meta.real_files:
            assert entry.offset % meta.piece_length == 0


# --- hostile input -------------------------------------------------------------------------


def _assert_rejected(data: bytes, fragment: str = "") -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        Metainfo.parse(data)
    assert caught.value.reason == "metainfo"
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"l" * 1_000_000 + b"e" * 1_000_000, "nested deeper"),
        (b"d" * 40, "nested deeper"),
        (b"l" + b"le" * 1_100_000 + b"e", "bencode items"),
        (b"i1e", "not a dictionary"),
        (b"d4:infoi1ee", "info"),
        (b"d4:infod", "bencode"),
        (b"d4:infodee", "name"),
        (b"d1:b0:1:a0:e", "bencode"),
        (b"i" + b"9" * 100 + b"e", "integer"),
        (b"99999999999:x", "bencode"),
        (b"x", "unexpected byte"),
        (b"e", "unbalanced"),
    ],
)
def test_rejects_malformed_bencode(data: bytes, fragment: str) -> None:
    _assert_rejected(data, fragment)


def test_rejects_oversize_input() -> None:
    _assert_rejected(b"0:" + bytes(MAX_METAINFO_SIZE), "too large")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"name": None}, "name"),
        ({"name": 5}, "name"),
        ({"name": b".."}, "unsafe"),
        ({"name": b"a/b"}, "separator"),
        ({"name": b"\xff"}, "UTF-8"),
        ({"piece_length": None}, "piece length"),
        ({"piece_length": b"16384"}, "piece length"),
        ({"piece_length": 0}, "power of two"),
        ({"piece_length": -16384}, "power of two"),
        ({"piece_length": 20000}, "power of two"),
        ({"piece_length": 1 << 40}, "power of two"),
        ({"pieces": None}, "pieces"),
        ({"pieces": bytes(19)}, "multiple of 20"),
        ({"pieces": bytes(40)}, "expected 1"),
        ({"pieces": b""}, "expected 1"),
        ({"files": []}, "files"),
        ({"files": b"x"}, "files"),
        ({"files": [5]}, "dictionary"),
        ({"files": [{b"length": -1, b"path": [b"a"]}]}, "out of range"),
        ({"files": [{b"length": 1 << 60, b"path": [b"a"]}]}, "out of range"),
        ({"files": [{b"length": b"1", b"path": [b"a"]}]}, "not an integer"),
        ({"files": [{b"path": [b"a"]}]}, "not an integer"),
        ({"files": [{b"length": 1, b"path": []}]}, "path"),
        ({"files": [{b"length": 1, b"path": b"a"}]}, "path"),
        ({"files": [{b"length": 1, b"path": [b".."]}]}, "unsafe"),
        ({"files": [{b"length": 1, b"path": [b"a", b"..", b"..", b"etc"]}]}, "unsafe"),
        ({"files": [{b"length": 1, b"path": [b""]}]}, "unsafe"),
        ({"files": [{b"length": 1, b"path": [b"."]}]}, "unsafe"),
        ({"files": [{b"length": 1, b"path": [b"/etc/passwd"]}]}, "separator"),
        ({"files": [{b"length": 1, b"path": [b"..\\..\\x"]}]}, "separator"),
        ({"files": [{b"length": 1, b"path": [b"a\x00b"]}]}, "NUL"),
        ({"files": [{b"length": 1, b"path": [5]}]}, "path"),
        ({"files": [{b"length": 1, b"path": [b"a"] * 100}]}, "deeper"),
        ({"files": [{b"length": 1, b"path": [b"a" * 300]}]}, "longer"),
        ({"files": [{b"length": 1, b"path": [b"a"], b"attr": b"l"}]}, "symlink"),
        ({"files": [{b"length": 1, b"path": [b"a"], b"attr": 1}]}, "attr"),
        (
            {"files": [{b"length": 1, b"path": [b"a"]}, {b"length": 1, b"path": [b"a"]}]},
            "twice",
        ),
        (
            {"files": [{b"length": 1, b"path": [b"a"]}, {b"length": 1, b"path": [b"a", b"b"]}]},
            "also a folder",
        ),
        ({"files": [{b"length": 0, b"path": [b"a"]}], "pieces": b""}, "no data"),
        ({"files": None}, "neither"),
        ({"length": 5}, "both"),
        ({"private": 2}, "private"),
    ],
)
def test_rejects_bad_fields(overrides: dict[str, Any], fragment: str) -> None:
    _assert_rejected(_torrent(_info(**overrides)), fragment)


def test_rejects_bad_announce() -> None:
    _assert_rejected(_torrent(_info(), announce=5), "announce")
    _assert_rejected(_torrent(_info(), announce=b"http://x/\n"), "announce")


def test_announce_list_fallback() -> None:
    root = {b"announce-list": [[ANNOUNCE.encode()]], b"info": _info()}
    assert Metainfo.parse(bytes(fastbencode.bencode(root))).announce == ANNOUNCE


def test_padding_files_may_share_a_path() -> None:
    pad = {b"attr": b"p", b"length": 16 * KiB - 1, b"path": [b".pad", b"16383"]}
    info = _info(
        pieces=bytes(60),
        files=[
            {b"length": 1, b"path": [b"a"]},
            pad,
            {b"length": 1, b"path": [b"b"]},
            pad,
            {b"length": 1, b"path": [b"c"]},
        ],
    )
    meta = Metainfo.parse(_torrent(info))
    assert [entry.padding for entry in meta.files] == [False, True, False, True, False]
    assert meta.file_pieces("c") == range(2, 3)


@pytest.fixture(scope="module")
def valid_torrent(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    root = tmp_path_factory.mktemp("valid")
    files = _write(root, {"a/1.m4s": b"q" * 20_000, "b.mpd": b"w" * 100})
    return create_torrent(root, files, announce=ANNOUNCE, name="movie")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_parse_or_raise_remote_protocol_error(data: bytes) -> None:
    try:
        Metainfo.parse(data)
    except RemoteProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_torrents_parse_or_raise_remote_protocol_error(
    valid_torrent: bytes, data: st.DataObject
) -> None:
    mutated = bytearray(valid_torrent)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(mutated) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if action == "flip":
            mutated[position] = data.draw(st.integers(min_value=0, max_value=255))
        elif action == "delete":
            del mutated[position]
        elif action == "insert":
            mutated.insert(position, data.draw(st.integers(min_value=0, max_value=255)))
        else:
            del mutated[position:]
        if not mutated:
            break
    try:
        meta = Metainfo.parse(bytes(mutated))
    except RemoteProtocolError:
        return
    # Whatever parses is internally consistent.
    assert meta.piece_count == -(-meta.total_length // meta.piece_length)
    assert sum(entry.length for entry in meta.files) == meta.total_length


_bencode_values = st.recursive(
    st.integers(min_value=-(2**70), max_value=2**70) | st.binary(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.binary(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    info=st.dictionaries(
        st.sampled_from([b"name", b"piece length", b"pieces", b"files", b"length", b"private"]),
        _bencode_values,
    )
)
def test_random_info_dictionaries_raise_only_remote_protocol_error(info: dict[bytes, Any]) -> None:
    try:
        Metainfo.parse(_torrent(info))
    except RemoteProtocolError:
        pass
