"""Piece storage: a torrent's files on disk, blocks assembled and verified in memory.

How it works. Files live under the download folder in the torrent's layout
(``<dir>/<name>/<path...>``, or ``<dir>/<name>`` for a single-file torrent);
each is created sparse at its full length the first time a piece touching it
is written. BEP 47 padding files are never written: they read as zeros.

Incoming blocks collect in a per-piece buffer in memory. When the picker says
a piece is complete, :meth:`Storage.finish_piece` hashes it with SHA-1 against
the metainfo and only a piece that passes reaches the disk; one that fails is
dropped. :meth:`Storage.check` hashes what is already on disk at start-up
(resume): pieces whose bytes are all present and correct count as had.

Reads and writes use ``os.pread``/``os.pwrite`` on descriptors kept open, so
there is no shared file position. Errors are OSError (disk full, permissions);
the shell treats them as fatal for the torrent, not for the process.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from seedcast.peer.metainfo import FileEntry, Metainfo

__all__ = ["Storage", "StorageStatistics"]


@dataclass(frozen=True, slots=True)
class StorageStatistics:
    pieces_written: int
    bytes_written: int
    bytes_read: int
    hash_failures: int
    buffered_pieces: int


class Storage:
    def __init__(self, metainfo: Metainfo, directory: Path) -> None:
        self.metainfo = metainfo
        self.directory = Path(directory)
        self._descriptors: dict[int, int] = {}
        self._sized: set[int] = set()
        self._file_numbers = {entry: number for number, entry in enumerate(metainfo.files)}
        self._buffers: dict[int, bytearray] = {}
        self.pieces_written = 0
        self.bytes_written = 0
        self.bytes_read = 0
        self.hash_failures = 0

    def path_of(self, entry: FileEntry) -> Path:
        return self.directory / self.metainfo.relative_path(entry)

    # -- verifying ------------------------------------------------------------

    def verify(self, index: int, data: bytes | bytearray | memoryview) -> bool:
        """True when ``data`` is piece ``index`` (length and SHA-1)."""
        if len(data) != self.metainfo.piece_size(index):
            return False
        return hashlib.sha1(data).digest() == self.metainfo.pieces[index]

    def check(
        self, pieces: Iterable[int] | None = None, progress: Callable[[int], None] | None = None
    ) -> list[int]:
        """Pieces already on disk and correct (resume). ``progress(1)`` per piece checked."""
        sizes: dict[Path, int] = {}
        valid = []
        indices = range(self.metainfo.piece_count) if pieces is None else pieces
        for index in indices:
            present = True
            for entry, offset, length in self.metainfo.piece_spans(index):
                if entry.padding:
                    continue
                path = self.path_of(entry)
                if path not in sizes:
                    try:
                        sizes[path] = path.stat().st_size
                    except OSError:
                        sizes[path] = -1
                if sizes[path] < offset + length:
                    present = False
                    break
            if present and self.verify(index, self.read_piece(index)):
                valid.append(index)
            if progress is not None:
                progress(1)
        return valid

    # -- writing --------------------------------------------------------------

    def write_block(self, index: int, begin: int, data: bytes) -> None:
        """Keep a received block in memory until its piece is complete."""
        size = self.metainfo.piece_size(index)
        if begin + len(data) > size:
            raise ValueError(f"block {begin}+{len(data)} beyond piece {index} ({size} bytes)")
        buffer = self._buffers.get(index)
        if buffer is None:
            buffer = self._buffers[index] = bytearray(size)
        buffer[begin : begin + len(data)] = data

    def finish_piece(self, index: int) -> bool:
        """Verify the assembled piece; write it when it passes. Drops the buffer either way."""
        buffer = self._buffers.pop(index, None)
        if buffer is None:
            return False
        return self.write_piece(index, buffer)

    def take_piece(self, index: int) -> bytearray | None:
        """The assembled buffer of piece ``index`` (removed from storage), if any."""
        return self._buffers.pop(index, None)

    def discard_piece(self, index: int) -> None:
        self._buffers.pop(index, None)

    def write_piece(self, index: int, data: bytes | bytearray) -> bool:
        """Verify a whole piece (from a peer or elsewhere) and write it; False if it fails."""
        if not self.verify(index, data):
            self.hash_failures += 1
            return False
        view = memoryview(data)
        position = 0
        for entry, offset, length in self.metainfo.piece_spans(index):
            if not entry.padding:
                descriptor = self._descriptor(entry, write=True)
                chunk = view[position : position + length]
                written = 0
                while written < length:
                    written += os.pwrite(descriptor, chunk[written:], offset + written)
            position += length
        self.pieces_written += 1
        self.bytes_written += len(data)
        return True

    # -- reading ----------------------------------------------------------------

    def read_block(self, index: int, begin: int, length: int) -> bytes:
        """Bytes ``begin..begin+length`` of piece ``index`` (which must be complete on disk)."""
        piece_start = index * self.metainfo.piece_length
        return self.read_range(piece_start + begin, length)

    def read_piece(self, index: int) -> bytes:
        return self.read_range(index * self.metainfo.piece_length, self.metainfo.piece_size(index))

    def read_range(self, start: int, length: int) -> bytes:
        """``length`` bytes at ``start`` in the torrent's byte space (padding reads as zeros)."""
        end = start + length
        if start < 0 or end > self.metainfo.total_length:
            raise ValueError(f"range {start}..{end} outside the torrent")
        parts: list[bytes] = []
        piece_length = self.metainfo.piece_length
        for index in range(start // piece_length, (end - 1) // piece_length + 1):
            for entry, offset, span_length in self.metainfo.piece_spans(index):
                span_start = entry.offset + offset
                low = max(span_start, start)
                high = min(span_start + span_length, end)
                if low >= high:
                    continue
                if entry.padding:
                    parts.append(bytes(high - low))
                    continue
                descriptor = self._descriptor(entry, write=False)
                data = os.pread(descriptor, high - low, offset + (low - span_start))
                if len(data) != high - low:
                    raise OSError(f"{self.path_of(entry)}: short read (file truncated?)")
                parts.append(data)
        self.bytes_read += length
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # -- files --------------------------------------------------------------------

    def _descriptor(self, entry: FileEntry, *, write: bool) -> int:
        number = self._file_numbers[entry]
        descriptor = self._descriptors.get(number)
        if descriptor is None:
            path = self.path_of(entry)
            if write:
                path.parent.mkdir(parents=True, exist_ok=True)
                descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            else:
                descriptor = os.open(path, os.O_RDWR if os.access(path, os.W_OK) else os.O_RDONLY)
            self._descriptors[number] = descriptor
        if write and number not in self._sized:
            if os.fstat(descriptor).st_size < entry.length:
                os.ftruncate(descriptor, entry.length)
            self._sized.add(number)
        return descriptor

    def close(self) -> None:
        for descriptor in self._descriptors.values():
            try:
                os.close(descriptor)
            except OSError:
                pass
        self._descriptors.clear()
        self._sized.clear()
        self._buffers.clear()

    def statistics(self) -> StorageStatistics:
        return StorageStatistics(
            pieces_written=self.pieces_written,
            bytes_written=self.bytes_written,
            bytes_read=self.bytes_read,
            hash_failures=self.hash_failures,
            buffered_pieces=len(self._buffers),
        )
