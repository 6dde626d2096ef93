"""BitTorrent v1 metainfo (.torrent files): create, parse and validate (BEP 3, BEP 47).

How it works:

- **Creating**: :func:`create_torrent` lays the given files end to end in one byte space, with
  BEP 47 padding files (``attr`` ``"p"``, path ``.pad/<size>``) after every real file that does not
  end on a piece boundary, so each real file starts a fresh piece and a segment is a whole set of
  pieces. Files are hashed in 1 MiB chunks (never read whole); padding hashes as zeros. The
  dictionary is written with fastbencode (canonical: sorted keys), without a creation date, so
  the same files give the same bytes.
- **Parsing**: :meth:`Metainfo.parse` treats its input as hostile. It caps the size, walks the
  bencode structure once without building it (bounding nesting depth and item count, so a
  nesting bomb costs nothing), lets fastbencode decode it, insists the encoding is canonical
  (so the info hash, the SHA-1 of the bencoded ``info`` value, is the hash of the bytes we
  received), then checks every field: types, ranges, that the piece count matches the total
  length, and that no file path can escape the download folder (no ``..``, ``.``, empty, absolute
  or separator-bearing components, no duplicate or nested paths). Every problem is one
  :class:`~seedcast.errors.RemoteProtocolError` naming the field.

Layout on disk: a multi-file torrent's file ``path`` lives at ``<download dir>/<name>/<path...>``;
a single-file torrent's one file has ``path == (name,)`` and lives at ``<download dir>/<name>``.
:meth:`Metainfo.relative_path` gives that path for any entry.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import fastbencode
from seedcast.errors import RemoteProtocolError, UsageError
from seedcast.units import KiB, MiB

MAX_METAINFO_SIZE: int = 16 * MiB
"""Largest .torrent we parse; real ones are kilobytes to a few megabytes."""
MAX_NESTING = 32
"""Deepest bencode nesting accepted (a metainfo needs 5)."""
MAX_ITEMS = 2_000_000
"""Most bencode items (strings, integers, lists, dicts) accepted in one file."""
MAX_FILES = 200_000
MAX_PATH_DEPTH = 64
MAX_COMPONENT_BYTES = 255
MAX_FILE_LENGTH = 1 << 48
"""256 TiB: larger lengths are hostile, not ambitious."""
MIN_PIECE_LENGTH: int = 16 * KiB
MAX_PIECE_LENGTH: int = 64 * MiB
"""Parsing accepts powers of two in this range; creating chooses 16 KiB..1 MiB."""
MAX_CREATED_PIECE_LENGTH: int = 1 * MiB
HASH_LENGTH = 20
PADDING_DIR = ".pad"
_READ_CHUNK: int = 1 * MiB


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a torrent, in torrent order.

    ``offset`` is where the file starts in the torrent's byte space (all files end to end,
    padding included). ``padding`` files (BEP 47) are all zeros and never written to disk.
    """

    path: tuple[str, ...]
    length: int
    offset: int
    padding: bool = False

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True, slots=True)
class Metainfo:
    """A validated v1 torrent. Build it with :meth:`parse`."""

    info_hash: bytes
    name: str
    piece_length: int
    pieces: tuple[bytes, ...]
    files: tuple[FileEntry, ...]
    total_length: int
    announce: str
    single_file: bool = False
    private: bool = False
    _offsets: tuple[int, ...] = field(default=(), repr=False, compare=False)
    _by_path: Mapping[tuple[str, ...], int] = field(default_factory=dict, repr=False, compare=False)

    # --- parsing --------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes) -> Metainfo:
        """Parse and validate a .torrent file's bytes.

        Raises :class:`RemoteProtocolError` (reason ``"metainfo"``) with a one-line reason for
        anything that is not a well-formed, safe v1 torrent; never anything else.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise _bad(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) > MAX_METAINFO_SIZE:
            raise _bad(f"too large: {len(data)} bytes (limit {MAX_METAINFO_SIZE})")
        if not data:
            raise _bad("empty file")
        _check_structure(data)
        try:
            root = fastbencode.bdecode(data)  # type: ignore[attr-defined]
        except Exception as error:  # the library's errors vary by type; all mean "bad bencode"
            raise _bad(f"not valid bencode: {error}") from None
        if not isinstance(root, dict):
            raise _bad("top level is not a dictionary")
        info = root.get(b"info")
        if not isinstance(info, dict):
            raise _bad("missing or non-dictionary 'info'")
        try:
            canonical_info = fastbencode.bencode(info)  # type: ignore[attr-defined]
        except Exception as error:  # pragma: no cover - decoded values always re-encode
            raise _bad(f"info does not re-encode: {error}") from None
        if canonical_info not in data:
            raise _bad("'info' is not canonically encoded")
        info_hash = hashlib.sha1(canonical_info).digest()
        return cls._from_info(info, info_hash, _announce(root))

    @classmethod
    def _from_info(cls, info: dict[bytes, Any], info_hash: bytes, announce: str) -> Metainfo:
        name = _text(info.get(b"name"), "info.name")
        _check_component(name, "info.name")
        piece_length = info.get(b"piece length")
        if not isinstance(piece_length, int):
            raise _bad("missing or non-integer 'piece length'")
        if not MIN_PIECE_LENGTH <= piece_length <= MAX_PIECE_LENGTH or (
            piece_length & (piece_length - 1)
        ):
            raise _bad(
                f"piece length {piece_length} is not a power of two in "
                f"{MIN_PIECE_LENGTH}..{MAX_PIECE_LENGTH}"
            )
        pieces_blob = info.get(b"pieces")
        if not isinstance(pieces_blob, bytes):
            raise _bad("missing or non-string 'pieces'")
        if len(pieces_blob) % HASH_LENGTH:
            raise _bad(f"'pieces' length {len(pieces_blob)} is not a multiple of 20")
        private_flag = info.get(b"private", 0)
        if not isinstance(private_flag, int) or private_flag not in (0, 1):
            raise _bad("'private' must be 0 or 1")

        single_file = b"files" not in info
        if single_file:
            if b"length" not in info:
                raise _bad("info has neither 'length' nor 'files'")
            length = _length(info[b"length"], "info.length")
            files: list[FileEntry] = [FileEntry((name,), length, 0, False)]
        else:
            if b"length" in info:
                raise _bad("info has both 'length' and 'files'")
            files = _parse_files(info[b"files"])
        total = files[-1].end if files else 0
        if total <= 0:
            raise _bad("torrent holds no data (total length 0)")
        expected_pieces = math.ceil(total / piece_length)
        piece_count = len(pieces_blob) // HASH_LENGTH
        if piece_count != expected_pieces:
            raise _bad(
                f"{piece_count} piece hashes for {total} bytes in pieces of {piece_length} "
                f"(expected {expected_pieces})"
            )
        pieces = tuple(
            pieces_blob[index : index + HASH_LENGTH]
            for index in range(0, len(pieces_blob), HASH_LENGTH)
        )
        return cls(
            info_hash=info_hash,
            name=name,
            piece_length=piece_length,
            pieces=pieces,
            files=tuple(files),
            total_length=total,
            announce=announce,
            single_file=single_file,
            private=bool(private_flag),
            _offsets=tuple(entry.offset for entry in files),
            _by_path={
                entry.path: number for number, entry in enumerate(files) if not entry.padding
            },
        )

    # --- queries --------------------------------------------------------------------------

    @property
    def piece_count(self) -> int:
        return len(self.pieces)

    @property
    def real_files(self) -> tuple[FileEntry, ...]:
        """The files that exist on disk (padding left out)."""
        return tuple(entry for entry in self.files if not entry.padding)

    def piece_size(self, index: int) -> int:
        """Bytes in piece ``index`` (the last one may be short). IndexError when out of range."""
        if not 0 <= index < len(self.pieces):
            raise IndexError(f"piece {index} out of range 0..{len(self.pieces) - 1}")
        if index == len(self.pieces) - 1:
            return self.total_length - index * self.piece_length
        return self.piece_length

    def file(self, path: str | Sequence[str]) -> FileEntry:
        """The real file at ``path`` (``"a/b.m4s"`` or ``("a", "b.m4s")``). KeyError if absent."""
        parts = tuple(path.split("/")) if isinstance(path, str) else tuple(path)
        number = self._by_path.get(parts)
        if number is not None:
            return self.files[number]
        for entry in self.files:
            if entry.path == parts and not entry.padding:
                return entry
        raise KeyError(f"no file {'/'.join(parts)!r} in torrent {self.name!r}")

    def file_pieces(self, path: str | Sequence[str]) -> range:
        """The pieces holding any byte of the real file at ``path`` (empty for an empty file)."""
        entry = self.file(path)
        first = entry.offset // self.piece_length
        if entry.length == 0:
            return range(first, first)
        last = (entry.end - 1) // self.piece_length
        return range(first, last + 1)

    def piece_spans(self, index: int) -> list[tuple[FileEntry, int, int]]:
        """Where piece ``index`` lives: ``[(file, offset in file, length), ...]`` in order.

        Padding files appear too (``file.padding``): storage reads them as zeros and never
        writes them. Empty files never appear. IndexError when ``index`` is out of range.
        """
        size = self.piece_size(index)
        start = index * self.piece_length
        end = start + size
        offsets = self._offsets or tuple(entry.offset for entry in self.files)
        position = bisect.bisect_right(offsets, start) - 1
        spans: list[tuple[FileEntry, int, int]] = []
        while start < end and position < len(self.files):
            entry = self.files[position]
            position += 1
            if entry.length == 0 or entry.end <= start:
                continue
            take = min(end, entry.end) - start
            spans.append((entry, start - entry.offset, take))
            start += take
        return spans

    def piece_payload(self, index: int) -> int:
        """Bytes of piece ``index`` worth transferring: up to the end of its last real file.

        BEP 47 padding at the piece's tail reads as zeros, so nobody needs it on the
        wire; a piece of padding only (never made here) counts whole.
        """
        size = self.piece_size(index)
        tail = 0
        for entry, _, length in reversed(self.piece_spans(index)):
            if not entry.padding:
                break
            tail += length
        return size - tail if tail < size else size

    def relative_path(self, entry: FileEntry) -> PurePosixPath:
        """Where ``entry`` lives relative to the download folder."""
        if self.single_file:
            return PurePosixPath(self.name)
        return PurePosixPath(self.name, *entry.path)


# --- validation helpers ---------------------------------------------------------------------


def _bad(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"bad torrent: {message}", reason="metainfo")


def _check_structure(data: bytes) -> None:
    """Walk the bencode once without building it: bound nesting and item count.

    Only structure is checked here (fastbencode checks the rest), so a ``llll...`` bomb or
    millions of tiny items are refused before any Python object is made.
    """
    position = 0
    depth = 0
    items = 0
    size = len(data)
    while position < size:
        byte = data[position]
        items += 1
        if items > MAX_ITEMS:
            raise _bad(f"more than {MAX_ITEMS} bencode items")
        if byte in b"ld":
            depth += 1
            if depth > MAX_NESTING:
                raise _bad(f"bencode nested deeper than {MAX_NESTING}")
            position += 1
        elif byte == ord("e"):
            depth -= 1
            if depth < 0:
                raise _bad("not valid bencode: unbalanced 'e'")
            position += 1
        elif byte == ord("i"):
            end = data.find(b"e", position + 1, position + 1 + 64)
            if end < 0:
                raise _bad("not valid bencode: unterminated or oversized integer")
            position = end + 1
        elif 0x30 <= byte <= 0x39:
            colon = data.find(b":", position, position + 12)
            if colon < 0 or not data[position:colon].isdigit():
                raise _bad("not valid bencode: bad string length")
            position = colon + 1 + int(data[position:colon])
        else:
            raise _bad(f"not valid bencode: unexpected byte {bytes([byte])!r} at {position}")
        if depth == 0:
            # The first complete value ends the structure; fastbencode rejects trailing junk.
            return


def _announce(root: dict[bytes, Any]) -> str:
    announce = root.get(b"announce")
    if announce is None:
        tiers = root.get(b"announce-list")
        if isinstance(tiers, list):
            for tier in tiers:
                if isinstance(tier, list) and tier and isinstance(tier[0], bytes):
                    announce = tier[0]
                    break
    if announce is None:
        return ""
    text = _text(announce, "announce")
    if len(text) > 4096 or any(ord(char) < 0x20 for char in text):
        raise _bad("announce is not a sane URL")
    return text


def _text(value: object, key: str) -> str:
    if not isinstance(value, bytes):
        raise _bad(f"missing or non-string '{key}'")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(f"'{key}' is not UTF-8") from None


def _length(value: object, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(f"'{key}' is not an integer")
    if not 0 <= value <= MAX_FILE_LENGTH:
        raise _bad(f"'{key}' {value} out of range 0..{MAX_FILE_LENGTH}")
    return value


def _check_component(component: str, key: str) -> None:
    if component in ("", ".", ".."):
        raise _bad(f"'{key}' has an unsafe path component {component!r}")
    if "/" in component or "\\" in component or "\0" in component:
        raise _bad(f"'{key}' component {component!r} holds a separator or NUL")
    if len(component.encode("utf-8")) > MAX_COMPONENT_BYTES:
        raise _bad(f"'{key}' component is longer than {MAX_COMPONENT_BYTES} bytes")


def _parse_files(value: object) -> list[FileEntry]:
    if not isinstance(value, list) or not value:
        raise _bad("'files' is not a non-empty list")
    if len(value) > MAX_FILES:
        raise _bad(f"more than {MAX_FILES} files")
    files: list[FileEntry] = []
    offset = 0
    seen: set[tuple[str, ...]] = set()
    for number, item in enumerate(value):
        key = f"files[{number}]"
        if not isinstance(item, dict):
            raise _bad(f"'{key}' is not a dictionary")
        length = _length(item.get(b"length"), f"{key}.length")
        attr = item.get(b"attr", b"")
        if not isinstance(attr, bytes):
            raise _bad(f"'{key}.attr' is not a string")
        if b"l" in attr:
            raise _bad(f"'{key}' is a symlink (attr 'l'), which is not supported")
        padding = b"p" in attr
        raw_path = item.get(b"path")
        if not isinstance(raw_path, list) or not raw_path:
            raise _bad(f"'{key}.path' is not a non-empty list")
        if len(raw_path) > MAX_PATH_DEPTH:
            raise _bad(f"'{key}.path' is deeper than {MAX_PATH_DEPTH}")
        path = tuple(_text(part, f"{key}.path") for part in raw_path)
        for part in path:
            _check_component(part, f"{key}.path")
        if not padding:
            if path in seen:
                raise _bad(f"'{key}.path' {'/'.join(path)!r} appears twice")
            seen.add(path)
        files.append(FileEntry(path, length, offset, padding))
        offset += length
    # A file may not also be a folder of another file ("a" and "a/b").
    for entry in files:
        if entry.padding:
            continue
        for depth in range(1, len(entry.path)):
            if entry.path[:depth] in seen:
                raise _bad(f"file {'/'.join(entry.path[:depth])!r} is also a folder")
    return files


# --- creating ----------------------------------------------------------------------------------


def choose_piece_length(total_size: int) -> int:
    """A power of two from 16 KiB to 1 MiB giving about 1000-2000 pieces for ``total_size``."""
    piece_length = MIN_PIECE_LENGTH
    while piece_length < MAX_CREATED_PIECE_LENGTH and total_size > 2000 * piece_length:
        piece_length *= 2
    return piece_length


def create_torrent(
    root: Path,
    files: Sequence[str],
    *,
    announce: str,
    name: str,
    piece_length: int | None = None,
    pad_files: bool = True,
    progress: Callable[[int], None] | None = None,
) -> bytes:
    """Bencoded v1 multi-file metainfo for ``files`` (POSIX paths relative to ``root``), in order.

    With ``pad_files``, BEP 47 padding files make every real file start on a piece boundary.
    ``progress(n)`` is called with the number of bytes just hashed (padding included), so
    ``progress`` can be a rich ``Progress.advance``; the total is the torrent's total length.
    Raises UsageError for a bad name, path or piece length, OSError when a file can't be read.
    """
    root = Path(root)
    _check_created_name(name)
    if not files:
        raise UsageError("a torrent needs at least one file")
    entries: list[tuple[tuple[str, ...], Path, int]] = []
    seen: set[tuple[str, ...]] = set()
    for relative in files:
        parts = tuple(relative.split("/"))
        for part in parts:
            if part in ("", ".", "..") or "\\" in part or "\0" in part:
                raise UsageError(f"file path {relative!r} is not a plain path relative to {root}")
        if parts in seen:
            raise UsageError(f"file {relative!r} is listed twice")
        seen.add(parts)
        source = root.joinpath(*parts)
        if not source.is_file():
            raise UsageError(f"{source}: not a regular file")
        entries.append((parts, source, source.stat().st_size))
    total_real = sum(size for _, _, size in entries)
    if total_real == 0:
        raise UsageError("the files hold no data (total size 0)")
    if piece_length is None:
        piece_length = choose_piece_length(total_real)
    if not MIN_PIECE_LENGTH <= piece_length <= MAX_PIECE_LENGTH or piece_length & (
        piece_length - 1
    ):
        raise UsageError(f"piece length {piece_length} is not a power of two from 16 KiB")

    hasher = _PieceHasher(piece_length, progress)
    file_list: list[dict[bytes, Any]] = []
    for number, (parts, source, size) in enumerate(entries):
        file_list.append({b"length": size, b"path": [part.encode() for part in parts]})
        hasher.feed_file(source, size)
        remainder = hasher.offset % piece_length
        if pad_files and remainder and number < len(entries) - 1:
            pad = piece_length - remainder
            file_list.append(
                {b"attr": b"p", b"length": pad, b"path": [PADDING_DIR.encode(), str(pad).encode()]}
            )
            hasher.feed_zeros(pad)
    info = {
        b"files": file_list,
        b"name": name.encode(),
        b"piece length": piece_length,
        b"pieces": hasher.finish(),
    }
    return _encode(info, announce)


def create_single_file_torrent(
    path: Path,
    *,
    announce: str,
    name: str | None = None,
    piece_length: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> bytes:
    """Bencoded v1 single-file metainfo for one file (``info.length``, no ``files`` list)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: not a regular file")
    name = name or path.name
    _check_created_name(name)
    size = path.stat().st_size
    if size == 0:
        raise UsageError(f"{path}: empty file (a torrent needs data)")
    piece_length = piece_length or choose_piece_length(size)
    if not MIN_PIECE_LENGTH <= piece_length <= MAX_PIECE_LENGTH or piece_length & (
        piece_length - 1
    ):
        raise UsageError(f"piece length {piece_length} is not a power of two from 16 KiB")
    hasher = _PieceHasher(piece_length, progress)
    hasher.feed_file(path, size)
    info = {
        b"length": size,
        b"name": name.encode(),
        b"piece length": piece_length,
        b"pieces": hasher.finish(),
    }
    return _encode(info, announce)


def _encode(info: dict[bytes, Any], announce: str) -> bytes:
    top: dict[bytes, Any] = {b"created by": b"Seedcast", b"info": info}
    if announce:
        top[b"announce"] = announce.encode()
    return bytes(fastbencode.bencode(top))  # type: ignore[attr-defined]


def _check_created_name(name: str) -> None:
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise UsageError(f"{name!r} is not a usable file or torrent name")


class _PieceHasher:
    """SHA-1 of consecutive pieces over a stream fed in chunks."""

    def __init__(self, piece_length: int, progress: Callable[[int], None] | None) -> None:
        self.piece_length = piece_length
        self.progress = progress
        self.offset = 0
        self._digests: list[bytes] = []
        self._current = hashlib.sha1()
        self._filled = 0

    def feed(self, chunk: bytes | memoryview) -> None:
        view = memoryview(chunk)
        while view:
            take = min(len(view), self.piece_length - self._filled)
            self._current.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self.piece_length:
                self._digests.append(self._current.digest())
                self._current = hashlib.sha1()
                self._filled = 0
        self.offset += len(chunk)
        if self.progress is not None:
            self.progress(len(chunk))

    def feed_file(self, path: Path, size: int) -> None:
        remaining = size
        with path.open("rb") as stream:
            while remaining > 0:
                chunk = stream.read(min(_READ_CHUNK, remaining))
                if not chunk:
                    raise UsageError(f"{path}: file shrank while hashing")
                self.feed(chunk)
                remaining -= len(chunk)

    def feed_zeros(self, count: int) -> None:
        while count > 0:
            take = min(count, _READ_CHUNK)
            self.feed(bytes(take))
            count -= take

    def finish(self) -> bytes:
        if self._filled:
            self._digests.append(self._current.digest())
            self._current = hashlib.sha1()
            self._filled = 0
        return b"".join(self._digests)
