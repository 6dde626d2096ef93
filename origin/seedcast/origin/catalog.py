"""What the origin serves, decided from the library index alone.

A :class:`Catalog` is an immutable snapshot of ``index.json``: it answers
"which video is this id" (or "it was renamed: go there"), "is this a file
name the origin serves for that video, and with which content type and
caching", and renders ``/catalog``. Only three kinds of names are ever
served from a video folder: the MPD, the video's ``.torrent`` and segment
names of the exact published shape (``init-<version>-<rep>.m4s``,
``chunk-<version>-<rep>-<number>.m4s`` for a representation of that video);
anything else (``video.json``, stray files) is a 404 before the disk is touched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from seedcast.origin.library import LibraryIndex, VideoEntry

__all__ = ["Catalog", "ServedFile"]

DASH_XML = "application/dash+xml"
TORRENT_TYPE = "application/x-bittorrent"
_INIT = re.compile(r"^init-(?P<version>[0-9a-z]{1,16})-(?P<rep>\d{1,4})\.m4s$")
_CHUNK = re.compile(
    r"^chunk-(?P<version>[0-9a-z]{1,16})-(?P<rep>\d{1,4})-(?P<number>\d{1,9})\.m4s$"
)


@dataclass(frozen=True, slots=True)
class ServedFile:
    name: str
    content_type: str
    immutable: bool
    """Segments never change (a re-publish uses new names); the MPD and torrent may."""


class Catalog:
    def __init__(self, index: LibraryIndex) -> None:
        self.index = index
        self._kinds: dict[str, dict[str, str]] = {
            video_id: {rendition.id: rendition.kind for rendition in entry.renditions}
            for video_id, entry in index.videos.items()
        }

    @classmethod
    def empty(cls) -> Catalog:
        return cls(LibraryIndex(videos={}, aliases={}))

    def __len__(self) -> int:
        return len(self.index.videos)

    def video(self, video_id: str) -> VideoEntry | None:
        return self.index.videos.get(video_id)

    def renamed_to(self, video_id: str) -> str | None:
        """The id a renamed video now has (the origin answers 301), else None."""
        if video_id in self.index.videos:
            return None
        return self.index.resolve_alias(video_id)

    def served_file(self, video_id: str, name: str) -> ServedFile | None:
        """How to serve ``name`` of video ``video_id``, or None when it is not servable."""
        entry = self.index.videos.get(video_id)
        if entry is None:
            return None
        if name == entry.manifest:
            return ServedFile(name, DASH_XML, immutable=False)
        if entry.torrent and name == entry.torrent:
            return ServedFile(name, TORRENT_TYPE, immutable=False)
        match = _INIT.match(name) or _CHUNK.match(name)
        if match is None or (entry.version and match.group("version") != entry.version):
            return None
        kind = self._kinds[video_id].get(str(int(match.group("rep"))))
        if kind is None or match.group("rep") != str(int(match.group("rep"))):
            return None
        number = match.groupdict().get("number")
        if (
            number is not None
            and entry.segment_count
            and not 1 <= int(number) <= entry.segment_count
        ):
            return None
        return ServedFile(name, "audio/mp4" if kind == "audio" else "video/mp4", immutable=True)

    def to_json(self) -> dict[str, Any]:
        """The body of ``/catalog``."""
        videos = []
        for video_id, entry in sorted(self.index.videos.items()):
            videos.append(
                {
                    "id": video_id,
                    "title": entry.title,
                    "duration": entry.duration,
                    "manifest": f"/{video_id}/{entry.manifest}",
                    "watch": f"/watch/{video_id}",
                    "torrent": f"/{video_id}/{entry.torrent}" if entry.torrent else None,
                    "info_hash": entry.info_hash or None,
                    "segment_seconds": entry.segment_seconds,
                    "segment_count": entry.segment_count,
                    "bytes": entry.bytes,
                    "created": entry.created,
                    "renditions": [
                        {
                            key: value
                            for key, value in rendition.to_json().items()
                            if value is not None
                        }
                        for rendition in entry.renditions
                    ],
                }
            )
        return {"videos": videos, "aliases": dict(sorted(self.index.aliases.items()))}

    def statistics(self) -> Mapping[str, int]:
        return {
            "videos": len(self.index.videos),
            "bytes": sum(entry.bytes for entry in self.index.videos.values()),
            "aliases": len(self.index.aliases),
        }
