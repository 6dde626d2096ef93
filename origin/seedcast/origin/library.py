"""The media library: published videos on disk, changed only atomically.

Layout under ``<data_dir>/library``::

    index.json                 every video's entry + aliases (old id -> new id)
    <id>/manifest.mpd          the DASH set ffmpeg wrote, plus
    <id>/init-0.m4s ...        init and media segments of every representation
    <id>/<id>.torrent          the BitTorrent metainfo of the MPD and segments
    <id>/video.json            this video's entry (travels with the folder)
    .partial-<id>-<pid>-<tag>/ a publish in progress (never visible as a video)
    .old-<id>-<tag>/           a replaced version, deleted right after the swap

How a change stays atomic, even on a full disk: a publish builds everything
in a ``.partial-`` folder inside the library (same file system) and fsyncs
it; then, holding the library lock, it writes the new ``index.json`` to a
temp file and fsyncs that too. Only then (nothing left that needs space) it
moves the current ``<id>`` aside, renames the partial folder into place and
``os.replace``-s the index: renames only. If any step fails (ENOSPC, EIO) the
steps done are undone in reverse, so the library is exactly as it was, and a
full disk is reported as "disk full". A failure, Ctrl-C or SIGTERM removes
the partial folder. After a SIGKILL the
partial folder stays, invisible; the next command that opens the library
sweeps partial folders of processes that no longer exist and puts back a
version that was moved aside but never replaced. ``index.json`` is derived
from the ``video.json`` files, so it can always be rebuilt from the folders.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seedcast.errors import MediaError, UsageError

__all__ = ["INDEX_NAME", "Library", "Rendition", "VideoEntry", "check_video_id"]

log = logging.getLogger("seedcast.origin")

INDEX_NAME = "index.json"
ENTRY_NAME = "video.json"
INDEX_FORMAT = 1
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# First path segments the origin answers itself; a video can't take them.
RESERVED_IDS = frozenset(
    {"catalog", "healthz", "metrics", "watch", "static", "favicon.ico", "robots.txt", "index.json"}
)
PARTIAL_PREFIX = ".partial-"
OLD_PREFIX = ".old-"
TEMP_MARK = ".tmp-"
DISK_FULL_MARGIN = 64 * 1024
"""Less free space than this (bytes) makes a failed write read as "disk full"."""


def check_video_id(video_id: str) -> str:
    """Return ``video_id`` if it is usable as a folder and URL segment, else raise UsageError."""
    if not _ID.match(video_id) or video_id.endswith(".") or ".." in video_id:
        raise UsageError(
            f"bad video id {video_id!r}: use 1-64 letters, digits, '.', '_', '-', "
            "starting with a letter or digit"
        )
    if video_id.lower() in RESERVED_IDS:
        raise UsageError(f"video id {video_id!r} is reserved (it is one of the origin's own paths)")
    return video_id


@dataclass(frozen=True, slots=True)
class Rendition:
    id: str
    """Representation id in the MPD (also in segment names: init-<id>.m4s)."""
    kind: str
    name: str
    mime_type: str
    codecs: str
    bandwidth: int
    width: int | None = None
    height: int | None = None
    frame_rate: str | None = None
    bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "mime_type": self.mime_type,
            "codecs": self.codecs,
            "bandwidth": self.bandwidth,
            "width": self.width,
            "height": self.height,
            "frame_rate": self.frame_rate,
            "bytes": self.bytes,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rendition:
        return cls(
            id=str(data["id"]),
            kind=str(data["kind"]),
            name=str(data.get("name", "")),
            mime_type=str(data.get("mime_type", "")),
            codecs=str(data.get("codecs", "")),
            bandwidth=int(data.get("bandwidth", 0)),
            width=data.get("width"),
            height=data.get("height"),
            frame_rate=data.get("frame_rate"),
            bytes=int(data.get("bytes", 0)),
        )


@dataclass(frozen=True, slots=True)
class VideoEntry:
    id: str
    title: str
    duration: float
    segment_seconds: float
    segment_count: int
    renditions: tuple[Rendition, ...]
    bytes: int
    """Total size of the MPD and segments."""
    files: int
    """Number of files in the DASH set (MPD + init + media segments)."""
    created: str
    """ISO 8601 UTC time of publication."""
    manifest: str = "manifest.mpd"
    version: str = ""
    """Tag in this publish's segment names (init-<version>-<rep>.m4s)."""
    torrent: str = ""
    info_hash: str = ""
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "duration": self.duration,
            "segment_seconds": self.segment_seconds,
            "segment_count": self.segment_count,
            "renditions": [rendition.to_json() for rendition in self.renditions],
            "bytes": self.bytes,
            "files": self.files,
            "created": self.created,
            "manifest": self.manifest,
            "version": self.version,
            "torrent": self.torrent,
            "info_hash": self.info_hash,
            "source": self.source,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VideoEntry:
        return cls(
            id=str(data["id"]),
            title=str(data.get("title", data["id"])),
            duration=float(data.get("duration", 0.0)),
            segment_seconds=float(data.get("segment_seconds", 0.0)),
            segment_count=int(data.get("segment_count", 0)),
            renditions=tuple(Rendition.from_json(item) for item in data.get("renditions", [])),
            bytes=int(data.get("bytes", 0)),
            files=int(data.get("files", 0)),
            created=str(data.get("created", "")),
            manifest=str(data.get("manifest", "manifest.mpd")),
            version=str(data.get("version", "")),
            torrent=str(data.get("torrent", "")),
            info_hash=str(data.get("info_hash", "")),
            source=str(data.get("source", "")),
            extra=dict(data.get("extra", {})),
        )

    def with_id(self, video_id: str, *, torrent: str, info_hash: str) -> VideoEntry:
        from dataclasses import replace

        return replace(self, id=video_id, torrent=torrent, info_hash=info_hash)

    @property
    def video_renditions(self) -> tuple[Rendition, ...]:
        return tuple(rendition for rendition in self.renditions if rendition.kind == "video")

    def kind_of_representation(self, representation_id: str) -> str | None:
        for rendition in self.renditions:
            if rendition.id == representation_id:
                return rendition.kind
        return None


@dataclass(frozen=True, slots=True)
class LibraryIndex:
    videos: Mapping[str, VideoEntry]
    aliases: Mapping[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": INDEX_FORMAT,
            "videos": {
                video_id: entry.to_json() for video_id, entry in sorted(self.videos.items())
            },
            "aliases": dict(sorted(self.aliases.items())),
        }

    @classmethod
    def from_json(cls, data: Any) -> LibraryIndex:
        if not isinstance(data, dict) or not isinstance(data.get("videos"), dict):
            raise ValueError("not a Seedcast library index")
        videos = {str(key): VideoEntry.from_json(value) for key, value in data["videos"].items()}
        aliases = {str(key): str(value) for key, value in dict(data.get("aliases", {})).items()}
        return cls(videos=videos, aliases=aliases)

    def resolve_alias(self, video_id: str) -> str | None:
        """Where a renamed id now lives (following chains), or None."""
        seen = set()
        current = video_id
        while current in self.aliases and current not in seen:
            seen.add(current)
            current = self.aliases[current]
        return current if current != video_id and current in self.videos else None


class Library:
    """The library folder. Cheap to create; every method takes the lock it needs."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> Library:
        return cls(Path(data_dir) / "library")

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_NAME

    def video_dir(self, video_id: str) -> Path:
        return self.root / video_id

    # --- reading ------------------------------------------------------------------------

    def read_index(self) -> LibraryIndex:
        """The index as stored (empty when there is no library yet).

        Raises MediaError when index.json exists but is unreadable.
        """
        try:
            text = self.index_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return LibraryIndex(videos={}, aliases={})
        try:
            return LibraryIndex.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as error:
            raise MediaError(
                f"{self.index_path}: corrupt library index ({error}); "
                "remove it and run `seedcast library repair`"
            ) from None

    def entries(self) -> list[VideoEntry]:
        return sorted(self.read_index().videos.values(), key=lambda entry: entry.id)

    # --- maintenance --------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the library lock (an flock on ``.lock``) for an index change."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def repair(self) -> list[str]:
        """Sweep leftovers of killed publishes and rebuild the index from the folders.

        Returns what was done, one line each. Safe to call any time: folders of
        publishes that are still running are left alone.
        """
        if not self.root.is_dir():
            return []
        with self.locked():
            return self._repair_locked()

    def _repair_locked(self) -> list[str]:
        actions: list[str] = []
        for child in sorted(self.root.iterdir()):
            name = child.name
            if name.startswith(PARTIAL_PREFIX):
                pid = _pid_of_partial(name)
                if pid is not None and _process_alive(pid):
                    continue
                shutil.rmtree(child, ignore_errors=True)
                actions.append(f"removed unfinished publish {name}")
            elif name.startswith(".") and TEMP_MARK in name and child.is_file():
                pid_text = name.rsplit(TEMP_MARK, 1)[1].split("-", 1)[0]
                if pid_text.isdigit() and _process_alive(int(pid_text)):
                    continue
                child.unlink()
                actions.append(f"removed unfinished write {name}")
            elif name.startswith(OLD_PREFIX):
                video_id = name[len(OLD_PREFIX) :].rsplit("-", 1)[0]
                target = self.root / video_id
                if video_id and not target.exists():
                    os.rename(child, target)
                    actions.append(f"restored {video_id} from an interrupted replace")
                else:
                    shutil.rmtree(child, ignore_errors=True)
                    actions.append(f"removed replaced version {name}")
        stored = self.read_index_or_empty()
        videos: dict[str, VideoEntry] = {}
        for child in sorted(self.root.iterdir()):
            entry_file = child / ENTRY_NAME
            if child.name.startswith(".") or not entry_file.is_file():
                continue
            try:
                entry = VideoEntry.from_json(json.loads(entry_file.read_text(encoding="utf-8")))
            except (ValueError, KeyError, TypeError, OSError):
                actions.append(f"skipped {child.name}: unreadable {ENTRY_NAME}")
                continue
            if entry.id != child.name:
                continue
            videos[entry.id] = entry
        aliases = {
            old: new for old, new in stored.aliases.items() if new in videos and old not in videos
        }
        rebuilt = LibraryIndex(videos=videos, aliases=aliases)
        if rebuilt.to_json() != stored.to_json():
            self._write_index(rebuilt)
            actions.append(f"rebuilt {INDEX_NAME} ({len(videos)} videos)")
        return actions

    def read_index_or_empty(self) -> LibraryIndex:
        try:
            return self.read_index()
        except MediaError:
            return LibraryIndex(videos={}, aliases={})

    def _write_index(self, index: LibraryIndex) -> None:
        _write_atomically(self.index_path, _index_bytes(index))

    # --- changing -----------------------------------------------------------------------

    @contextlib.contextmanager
    def publishing(self, video_id: str) -> Iterator[PartialVideo]:
        """A fresh partial folder for ``video_id``; removed unless committed.

        Usage::

            with library.publishing("movie") as partial:
                ... write files into partial.path ...
                partial.commit(entry)
        """
        check_video_id(video_id)
        self.root.mkdir(parents=True, exist_ok=True)
        self.repair()
        path = self.root / f"{PARTIAL_PREFIX}{video_id}-{os.getpid()}-{secrets.token_hex(4)}"
        path.mkdir()
        partial = PartialVideo(self, video_id, path)
        try:
            yield partial
        finally:
            if not partial.committed:
                shutil.rmtree(path, ignore_errors=True)

    def _commit(self, video_id: str, partial_path: Path, entry: VideoEntry) -> None:
        try:
            _write_atomically(partial_path / ENTRY_NAME, _entry_bytes(entry))
            _fsync_tree(partial_path)
            with self.locked():
                self._switch(video_id, partial_path, entry)
        except OSError as error:
            raise disk_error(error, self.root, f"cannot publish {video_id}") from error
        log.info("published", extra={"fields": {"id": video_id, "bytes": entry.bytes}})

    def _switch(self, video_id: str, partial_path: Path, entry: VideoEntry) -> None:
        """Swap ``partial_path`` in as ``video_id`` and update the index, or change nothing."""
        index = self.read_index_or_empty()
        videos = dict(index.videos)
        videos[video_id] = entry
        aliases = {alias: new for alias, new in index.aliases.items() if alias != video_id}
        new_index = _index_bytes(LibraryIndex(videos=videos, aliases=aliases))
        staged = _stage(self.index_path, new_index)  # the last write that needs space
        target = self.root / video_id
        old: Path | None = None
        undo: list[tuple[Path, Path]] = []
        try:
            if target.exists():
                old = self.root / f"{OLD_PREFIX}{video_id}-{secrets.token_hex(4)}"
                os.rename(target, old)
                undo.append((old, target))
            os.rename(partial_path, target)
            undo.append((target, partial_path))
            os.replace(staged, self.index_path)  # the commit point
        except BaseException:
            for done, back in reversed(undo):
                with contextlib.suppress(OSError):
                    os.rename(done, back)
            with contextlib.suppress(OSError):
                staged.unlink()
            raise
        _fsync_dir(self.root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def remove(self, video_id: str) -> None:
        """Delete a video (and aliases that point at it). Raises UsageError if unknown."""
        with self.locked():
            index = self.read_index_or_empty()
            if video_id not in index.videos:
                raise UsageError(f"no video {video_id!r} in {self.root}")
            target = self.root / video_id
            old = self.root / f"{OLD_PREFIX}{video_id}-{secrets.token_hex(4)}"
            videos = {key: value for key, value in index.videos.items() if key != video_id}
            aliases = {alias: new for alias, new in index.aliases.items() if new != video_id}
            if target.exists():
                os.rename(target, old)
            self._write_index(LibraryIndex(videos=videos, aliases=aliases))
            shutil.rmtree(old, ignore_errors=True)

    def rename(self, old_id: str, new_id: str, *, retorrent: Any = None) -> VideoEntry:
        """Give a video a new id; the old id stays as an alias (the origin answers 301).

        ``retorrent(folder, new_id) -> (torrent_name, info_hash)`` rewrites the
        torrent for the new name. Raises UsageError if ``old_id`` is unknown or
        ``new_id`` is taken.
        """
        check_video_id(new_id)
        with self.locked():
            index = self.read_index_or_empty()
            if old_id not in index.videos:
                raise UsageError(f"no video {old_id!r} in {self.root}")
            if new_id in index.videos or (self.root / new_id).exists():
                raise UsageError(f"video id {new_id!r} is already taken")
            entry = index.videos[old_id]
            folder = self.root / old_id
            torrent, info_hash = entry.torrent, entry.info_hash
            if retorrent is not None:
                torrent, info_hash = retorrent(folder, new_id)
                old_torrent = folder / entry.torrent
                if entry.torrent and entry.torrent != torrent and old_torrent.exists():
                    old_torrent.unlink()
            new_entry = entry.with_id(new_id, torrent=torrent, info_hash=info_hash)
            _write_atomically(folder / ENTRY_NAME, _entry_bytes(new_entry))
            os.rename(folder, self.root / new_id)
            videos = {key: value for key, value in index.videos.items() if key != old_id}
            videos[new_id] = new_entry
            aliases = {
                alias: (new_id if target == old_id else target)
                for alias, target in index.aliases.items()
                if alias != new_id
            }
            aliases[old_id] = new_id
            self._write_index(LibraryIndex(videos=videos, aliases=aliases))
            return new_entry


class PartialVideo:
    """A publish in progress: write into :attr:`path`, then :meth:`commit`."""

    def __init__(self, library: Library, video_id: str, path: Path) -> None:
        self.library = library
        self.video_id = video_id
        self.path = path
        self.committed = False

    def commit(self, entry: VideoEntry) -> None:
        if entry.id != self.video_id:
            raise UsageError(f"entry id {entry.id!r} is not {self.video_id!r}")
        self.library._commit(self.video_id, self.path, entry)
        self.committed = True


def _entry_bytes(entry: VideoEntry) -> bytes:
    return json.dumps(entry.to_json(), indent=2, ensure_ascii=False).encode() + b"\n"


def _index_bytes(index: LibraryIndex) -> bytes:
    return json.dumps(index.to_json(), indent=2, ensure_ascii=False).encode() + b"\n"


def _stage(path: Path, data: bytes) -> Path:
    """``data`` in a fsynced temp file next to ``path`` (removed on failure); returns it."""
    temporary = path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return temporary


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = _stage(path, data)
    try:
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def disk_error(error: OSError, where: Path, doing: str) -> MediaError | OSError:
    """ENOSPC/EDQUOT as a one-line "disk full" MediaError; other errors unchanged."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT) or disk_full(where):
        return MediaError(f"{doing}: disk full in {where} (free some space and try again)")
    return error


def disk_full(where: Path) -> bool:
    """True when the file system holding ``where`` has (almost) no space left."""
    try:
        stats = os.statvfs(where)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < DISK_FULL_MARGIN


def _fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` (ffmpeg doesn't) and the folder itself to disk."""
    for path in folder.iterdir():
        if path.is_file():
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
    _fsync_dir(folder)


def _fsync_dir(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _pid_of_partial(name: str) -> int | None:
    parts = name[len(PARTIAL_PREFIX) :].rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return int(parts[1])


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM
    # A zombie (killed, not yet reaped by its parent) is not alive.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True
