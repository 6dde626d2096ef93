"""The origin's file cache policy: what it remembers about served files, and for how long.

The origin answers most requests without a syscall before the send. For each
video file it keeps a :class:`FileState` per catalog snapshot: the file's
validated ``lstat`` (no symlinks anywhere under the library), the prepared
plain-200 :class:`~seedcast.http11.Response` and, for files of at most
:data:`SMALL_FILE_BYTES` (MPDs, init segments), the bytes. A state is trusted
for :data:`FILE_RECHECK_SECONDS`, then re-stat'ed (and rebuilt if the file was
replaced). Raw request paths already served map straight to their state
(:meth:`FileCache.hot`) while ``index.json`` was checked within
:data:`INDEX_RECHECK_SECONDS`, so a rename or removal shows within that, and a
path not seen before always re-reads the index first. Memory is bounded by
:data:`MAX_CACHED_FILES`; only plain spellings of paths are remembered.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from seedcast.http11 import FileBody, Headers, Response
from seedcast.origin.catalog import Catalog
from seedcast.origin.serving import FileFacts, PathRefused, decide_file

FILE_RECHECK_SECONDS = 1.0
"""How long a file's lstat is trusted (symlink and replacement checks) within one catalog."""
INDEX_RECHECK_SECONDS = 0.02
"""How long index.json's stat is trusted when answering a path already served from this
catalog (renames and removals show within this; paths not seen before re-check at once)."""
MAX_CACHED_FILES = 100_000
SMALL_FILE_BYTES = 16 * 1024
"""Files up to this size (MPDs, init segments, torrents of short videos) are kept in memory
with their validated stat and sent with one write; larger ones are always streamed from disk."""


@dataclass(slots=True)
class FileState:
    path: str
    kind: str
    content_type: str
    cache_control: str
    facts: FileFacts
    headers: Headers
    """The complete header set of a plain 200 (shared between responses; never mutated)."""
    checked_at: float
    response: Response
    """The plain 200 (headers and body shared by every such answer; never mutated)."""
    content: bytes | None = None
    """The file's bytes when it is small (read once per version of the file)."""


class FileCache:
    """The states of the files served from one catalog snapshot (cleared when it changes)."""

    def __init__(
        self,
        root: str,
        *,
        manifest_cache: str,
        segment_cache: str,
        served_by: tuple[str, str],
        clock: Callable[[], float],
    ) -> None:
        self.root = root
        self.manifest_cache = manifest_cache
        """Cache-Control of mutable files (MPDs, torrents)."""
        self.segment_cache = segment_cache
        """Cache-Control of immutable files (segments)."""
        self.served_by = served_by
        self.clock = clock
        self._files: dict[tuple[str, str], FileState] = {}
        self._paths: dict[str, FileState] = {}
        """Raw request path -> the file it named, for paths already served from this catalog."""

    def hot(self, raw_path: str, now: float, index_checked_at: float) -> FileState | None:
        """The state a raw path named, if it and the index were checked recently enough."""
        state = self._paths.get(raw_path)
        if (
            state is not None
            and now - state.checked_at < FILE_RECHECK_SECONDS
            and now - index_checked_at < INDEX_RECHECK_SECONDS
        ):
            return state
        return None

    def remember(self, raw_path: str, state: FileState) -> None:
        """Let the hot path find ``state`` by this raw path (plain spellings only)."""
        if "%" not in raw_path and len(self._paths) < MAX_CACHED_FILES:
            # Escaped spellings (any number per file) take the slow path.
            self._paths[raw_path] = state

    def remembered_paths(self) -> list[str]:
        """The raw paths the hot path knows, oldest first (for tests and debugging)."""
        return list(self._paths)

    def clear(self) -> None:
        self._files.clear()
        self._paths.clear()

    def state(self, catalog: Catalog, video_id: str, name: str) -> FileState | PathRefused | None:
        """What to send for a video file: cached per catalog snapshot, re-checked every second."""
        key = (video_id, name)
        now = self.clock()
        state = self._files.get(key)
        if state is not None and now - state.checked_at < FILE_RECHECK_SECONDS:
            return state
        served = catalog.served_file(video_id, name)
        if served is None:
            return None
        folder = f"{self.root}/{video_id}"
        path = f"{folder}/{name}"
        try:
            folder_info = os.lstat(folder)
            info = os.lstat(path)
        except OSError:
            self._forget(key)
            return None
        if stat.S_ISLNK(folder_info.st_mode) or stat.S_ISLNK(info.st_mode):
            self._forget(key)
            return PathRefused.SYMLINK
        if not stat.S_ISDIR(folder_info.st_mode) or not stat.S_ISREG(info.st_mode):
            self._forget(key)
            return None
        facts = FileFacts(
            size=info.st_size, mtime=info.st_mtime, inode=info.st_ino, mtime_ns=info.st_mtime_ns
        )
        if state is not None and state.facts == facts:
            state.checked_at = now
            return state
        cache_control = self.segment_cache if served.immutable else self.manifest_cache
        full = decide_file(
            "GET", {}, facts, content_type=served.content_type, cache_control=cache_control
        )
        kind = (
            "segment" if served.immutable else ("manifest" if name.endswith(".mpd") else "torrent")
        )
        content = _read_small(path, facts) if facts.size <= SMALL_FILE_BYTES else None
        headers = Headers([*full.headers, self.served_by])
        body = content if content is not None else FileBody(path, 0, facts.size)
        state = FileState(
            content=content,
            path=path,
            kind=kind,
            content_type=served.content_type,
            cache_control=cache_control,
            facts=facts,
            headers=headers,
            checked_at=now,
            response=Response(200, headers, body),
        )
        if len(self._files) >= MAX_CACHED_FILES:
            self.clear()
        self._forget(key)
        self._files[key] = state
        return state

    def _forget(self, key: tuple[str, str]) -> None:
        """Drop a file's state; raw paths still naming it fail the hot path's freshness check."""
        old = self._files.pop(key, None)
        if old is not None:
            old.checked_at = -math.inf  # the next request for such a path re-checks and replaces it


def _read_small(path: str, facts: FileFacts) -> bytes | None:
    """The bytes of a small file, if it still is the file ``facts`` describe (else None)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(descriptor)
        if (info.st_ino, info.st_size, info.st_mtime_ns) != (
            facts.inode,
            facts.size,
            facts.mtime_ns,
        ):
            return None
        data = os.pread(descriptor, facts.size + 1, 0)
    finally:
        os.close(descriptor)
    return data if len(data) == facts.size else None
