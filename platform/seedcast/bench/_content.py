"""The file the distribution benchmark distributes, published in an origin library.

How it works. :func:`prepare_content` writes one F-byte file of seeded
random bytes into ``<data>/library/<id>/`` as a one-segment video (the origin
serves only names of the published shape, so the file is
``chunk-<version>-0-00001.m4s`` beside a minimal ``manifest.mpd``), commits
it through the :class:`~seedcast.origin.library.Library` API, and writes the
BitTorrent metainfo of that very folder, so the origin's copy is also the
swarm's first seed (torrent name = video id, so a peer whose data folder is
``<data>/library`` finds the file where the torrent says). A library that
already holds the same size, seed and piece length is reused.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from seedcast.origin.library import Library, Rendition, VideoEntry
from seedcast.peer.metainfo import Metainfo, create_torrent
from seedcast.units import MiB

__all__ = ["Content", "prepare_content", "torrent_with_announce"]

VIDEO_ID = "distribution"
_VERSION = "bench"
_MANIFEST = """<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT1.0S"
     profiles="urn:mpeg:dash:profile:isoff-live:2011" minBufferTime="PT1.0S">
  <Period id="0" start="PT0.0S">
    <AdaptationSet id="0" contentType="video" segmentAlignment="true">
      <Representation id="0" mimeType="video/mp4" codecs="avc1.64001f" bandwidth="{bandwidth}">
        <SegmentTemplate timescale="1000" duration="1000" startNumber="1"
          initialization="init-{version}-$RepresentationID$.m4s"
          media="chunk-{version}-$RepresentationID$-$Number%05d$.m4s"/>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"""


@dataclass(frozen=True, slots=True)
class Content:
    data_dir: Path
    """The origin's --data folder (the library is ``data_dir / "library"``)."""
    video_id: str
    file_name: str
    size: int
    sha1: str
    """Hex SHA-1 of the whole file (clients check what they received)."""
    torrent: bytes
    """Metainfo with an empty announce (see :func:`torrent_with_announce`)."""
    info_hash: str
    piece_length: int

    @property
    def library_dir(self) -> Path:
        return self.data_dir / "library"

    @property
    def path(self) -> Path:
        return self.library_dir / self.video_id / self.file_name

    @property
    def url_path(self) -> str:
        return f"/{self.video_id}/{self.file_name}"


def prepare_content(data_dir: Path, size: int, seed: int, piece_length: int) -> Content:
    """The benchmark file in ``data_dir``'s library (made now, or reused when it matches)."""

    data_dir = Path(data_dir)
    library = Library.for_data_dir(data_dir)
    file_name = f"chunk-{_VERSION}-0-00001.m4s"
    folder = library.root / VIDEO_ID
    stamp_path = data_dir / "content.json"
    wanted = {"size": size, "seed": seed, "piece_length": piece_length, "id": VIDEO_ID}
    torrent_path = data_dir / f"{VIDEO_ID}.torrent"
    if stamp_path.exists() and torrent_path.exists() and (folder / file_name).exists():
        stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
        if {key: stamp.get(key) for key in wanted} == wanted:
            torrent = torrent_path.read_bytes()
            return Content(
                data_dir,
                VIDEO_ID,
                file_name,
                size,
                stamp["sha1"],
                torrent,
                Metainfo.parse(torrent).info_hash.hex(),
                piece_length,
            )
    data_dir.mkdir(parents=True, exist_ok=True)
    stamp_path.unlink(missing_ok=True)
    rng = random.Random(seed)
    digest = hashlib.sha1()
    with library.publishing(VIDEO_ID) as partial:
        manifest = _MANIFEST.format(bandwidth=size * 8, version=_VERSION).encode()
        (partial.path / "manifest.mpd").write_bytes(manifest)
        with (partial.path / file_name).open("wb") as handle:
            remaining = size
            while remaining:
                chunk = rng.randbytes(min(remaining, 4 * MiB))
                digest.update(chunk)
                handle.write(chunk)
                remaining -= len(chunk)
        torrent = create_torrent(
            partial.path, [file_name], announce="", name=VIDEO_ID, piece_length=piece_length
        )
        info_hash = Metainfo.parse(torrent).info_hash.hex()
        entry = VideoEntry(
            id=VIDEO_ID,
            title="Distribution benchmark file",
            duration=1.0,
            segment_seconds=1.0,
            segment_count=1,
            renditions=(
                Rendition("0", "video", "file", "video/mp4", "avc1.64001f", size * 8, bytes=size),
            ),
            bytes=len(manifest) + size,
            files=2,
            created="2026-01-01T00:00:00Z",
            version=_VERSION,
            info_hash=info_hash,
            source=f"seedcast bench distribution (seed {seed})",
        )
        partial.commit(entry)
    torrent_path.write_bytes(torrent)
    stamp_path.write_text(json.dumps({**wanted, "sha1": digest.hexdigest()}), encoding="utf-8")
    return Content(
        data_dir, VIDEO_ID, file_name, size, digest.hexdigest(), torrent, info_hash, piece_length
    )


def torrent_with_announce(torrent: bytes, announce: str) -> bytes:
    """The same torrent (same info hash) announcing to ``announce``."""
    import fastbencode

    document = fastbencode.bdecode(torrent)  # type: ignore[attr-defined]
    document[b"announce"] = announce.encode()
    return bytes(fastbencode.bencode(document))  # type: ignore[attr-defined]
