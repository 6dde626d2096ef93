"""The disk tier's files: bodies, metadata, and rebuilding the index at start-up.

How it works: each stored object is two files in ``DIR/<2 hex>/``, named by
the SHA-256 of its cache key: ``<hash>.body`` (the bytes) and ``<hash>.meta``
(msgpack: key, status, headers, times, Vary key, length). A fill writes
``<hash>.<n>.partial``; on success the body is renamed into place first and
the metadata written (to a temporary name, then renamed) second, so a crash at
any point leaves either a complete pair or files that :meth:`DiskTier.scan`
recognises as debris and deletes: partial files, a body without metadata,
metadata whose body is missing or has the wrong length, unreadable metadata.
A 304 refresh rewrites only the metadata, the same atomic way.

File operations are synchronous: they hit the page cache and take
microseconds, less than handing them to a thread would cost. The budget is
kept by the :class:`~seedcast.edge.storage.StorageIndex` the caller owns.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

log = logging.getLogger("seedcast.edge")

FORMAT_VERSION = 1
MAX_META_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DiskMeta:
    """What the disk keeps about an object besides its bytes."""

    key: str
    primary: str
    vary_key: tuple[str, ...]
    status: int
    headers: tuple[tuple[str, str], ...]
    request_time: float
    response_time: float
    length: int

    def pack(self) -> bytes:
        data: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "key": self.key,
            "primary": self.primary,
            "vary_key": list(self.vary_key),
            "status": self.status,
            "headers": [list(pair) for pair in self.headers],
            "request_time": self.request_time,
            "response_time": self.response_time,
            "length": self.length,
        }
        packed: bytes = msgpack.packb(data, use_bin_type=True)
        return packed

    @classmethod
    def unpack(cls, data: bytes) -> DiskMeta:
        """Raises ValueError for anything that isn't metadata this version wrote."""
        try:
            raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except (msgpack.UnpackException, ValueError, TypeError) as error:
            raise ValueError(f"unreadable metadata: {error}") from None
        if not isinstance(raw, dict) or raw.get("v") != FORMAT_VERSION:
            raise ValueError("not seedcast edge metadata of this version")
        try:
            headers = tuple((str(name), str(value)) for name, value in raw["headers"])
            meta = cls(
                key=str(raw["key"]),
                primary=str(raw["primary"]),
                vary_key=tuple(str(value) for value in raw["vary_key"]),
                status=int(raw["status"]),
                headers=headers,
                request_time=float(raw["request_time"]),
                response_time=float(raw["response_time"]),
                length=int(raw["length"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"incomplete metadata: {error}") from None
        if meta.length < 0:
            raise ValueError("negative length")
        return meta


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class DiskWriter:
    """Writes one fill's body to a partial file; :meth:`finish` publishes it."""

    def __init__(self, tier: DiskTier, key: str, serial: int) -> None:
        self._tier = tier
        self.key = key
        self.body_path, self.meta_path = tier.paths(key)
        self.partial_path = self.body_path.with_name(f"{self.body_path.stem}.{serial}.partial")
        self.partial_path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = open(self.partial_path, "wb")  # noqa: SIM115
        self.written = 0

    def write(self, chunk: bytes | memoryview) -> None:
        if self._file is None:
            return
        self._file.write(chunk)
        self.written += len(chunk)

    def finish(self, meta: DiskMeta) -> Path:
        """Close, move the body into place, then write the metadata; returns the body path."""
        if self._file is None:
            raise ValueError("disk writer already closed")
        self._file.close()
        self._file = None
        os.replace(self.partial_path, self.body_path)
        self._tier.write_meta(meta)
        return self.body_path

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            with contextlib.suppress(FileNotFoundError):
                self.partial_path.unlink()


@dataclass(frozen=True, slots=True)
class FoundObject:
    meta: DiskMeta
    body_path: Path
    meta_size: int
    mtime: float


class DiskTier:
    """The folder holding the disk tier's objects."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._serials = itertools.count(1)

    def paths(self, key: str) -> tuple[Path, Path]:
        digest = key_hash(key)
        folder = self.directory / digest[:2]
        return folder / f"{digest}.body", folder / f"{digest}.meta"

    def writer(self, key: str) -> DiskWriter:
        return DiskWriter(self, key, next(self._serials))

    def write_meta(self, meta: DiskMeta) -> int:
        """Write ``meta`` atomically; returns its size in bytes."""
        _, meta_path = self.paths(meta.key)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        data = meta.pack()
        temporary = meta_path.with_suffix(".meta-tmp")
        temporary.write_bytes(data)
        os.replace(temporary, meta_path)
        return len(data)

    def remove(self, key: str) -> None:
        for path in self.paths(key):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def scan(self) -> Iterator[FoundObject]:
        """Complete objects found on disk, oldest first; deletes debris as it goes."""
        self.directory.mkdir(parents=True, exist_ok=True)
        found: list[FoundObject] = []
        for folder in sorted(self.directory.iterdir()):
            if not folder.is_dir() or len(folder.name) != 2:
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix in (".partial", ".meta-tmp"):
                    self._discard(path, "partial file")
                elif path.suffix == ".body":
                    if not path.with_suffix(".meta").exists():
                        self._discard(path, "body without metadata")
                elif path.suffix == ".meta":
                    item = self._load(path)
                    if item is not None:
                        found.append(item)
        found.sort(key=lambda item: (item.meta.response_time, item.mtime))
        yield from found

    def _load(self, meta_path: Path) -> FoundObject | None:
        body_path = meta_path.with_suffix(".body")
        try:
            data = meta_path.read_bytes()
            if len(data) > MAX_META_BYTES:
                raise ValueError("metadata too large")
            meta = DiskMeta.unpack(data)
            if self.paths(meta.key)[1] != meta_path:
                raise ValueError("metadata under the wrong name")
            stat = body_path.stat()
        except FileNotFoundError:
            self._discard(meta_path, "metadata without body")
            return None
        except (OSError, ValueError) as error:
            self._discard(meta_path, f"bad metadata: {error}")
            self._discard(body_path, "body of bad metadata")
            return None
        if stat.st_size != meta.length:
            self._discard(meta_path, "body length differs from metadata")
            self._discard(body_path, "truncated body")
            return None
        return FoundObject(meta, body_path, len(data), stat.st_mtime)

    @staticmethod
    def _discard(path: Path, why: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            log.info("disk tier discarded", extra={"fields": {"file": path.name, "why": why}})
