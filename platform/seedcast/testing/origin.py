"""Helpers for tests that need real media or a running origin process.

Used by the origin's integration and interop tests, and usable by any test
that needs an origin to talk to (edges, players)::

    sample = make_sample(tmp / "sample.mp4", seconds=8, size="960x540")
    publish_cli(sample, data_dir, "sample")
    with OriginProcess(data_dir) as origin:
        origin.url("/sample/manifest.mpd")

Everything is bounded in time and stops what it starts.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from seedcast.config import ClusterConfig, default_config
from seedcast.origin.library import Library, Rendition, VideoEntry
from seedcast.testing.processes import RoleProcess, check_seedcast, run_seedcast, seedcast_command

__all__ = [
    "SYNTHETIC_VERSION",
    "OriginProcess",
    "config_for",
    "make_sample",
    "publish_cli",
    "publish_sample",
    "seedcast_command",
    "segment_bytes",
    "write_synthetic_video",
]

SYNTHETIC_VERSION = "abcd1234"
SEGMENT_SIZE = 300_000


def make_sample(
    path: Path, *, seconds: float = 8, size: str = "960x540", fps: int = 30, audio: bool = True
) -> Path:
    """Make a sample video with ``seedcast sample`` unless ``path`` already exists."""
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    args = [
        "sample",
        "--seconds",
        f"{seconds:g}",
        "--size",
        size,
        "--fps",
        str(fps),
        "--out",
        str(path),
    ]
    if not audio:
        args.append("--no-audio")
    check_seedcast(*args)
    return path


def publish_cli(
    source: Path, data_dir: Path, video_id: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``seedcast --data DIR publish SOURCE --id ID`` and return the finished process."""
    return run_seedcast("publish", str(source), "--id", video_id, *extra, data_dir=data_dir)


def publish_sample(
    data_dir: Path,
    *,
    seconds: float = 4,
    size: str = "320x180",
    ladder: str = "360p",
    video_id: str = "sample",
    source: Path | None = None,
) -> Path:
    """``seedcast sample`` then ``seedcast publish`` into ``data_dir`` (as ``video_id``, one
    ``ladder``); a 4 s 320x180 sample by default (a second or two of ffmpeg). The sample is
    written to ``source`` (default ``data_dir/<video_id>.mp4``). Returns ``data_dir``."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    source = source or data_dir / f"{video_id}.mp4"
    sample = make_sample(source, seconds=seconds, size=size)
    check_seedcast("publish", str(sample), "--id", video_id, "--ladder", ladder, data_dir=data_dir)
    return data_dir


class OriginProcess:
    """``seedcast origin`` as a child process on 127.0.0.1 with a free port."""

    def __init__(
        self,
        data_dir: Path,
        *,
        name: str = "origin-test",
        host: str = "127.0.0.1",
        extra_env: dict[str, str] | None = None,
        command_prefix: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.name = name
        self.host = host
        argv = seedcast_command(
            "origin", "--listen", f"{host}:0", "--name", name, data_dir=self.data_dir
        )
        self.role = RoleProcess(name, [*command_prefix, *argv], extra_env=extra_env)

    @property
    def address(self) -> str:
        return self.role.address if self.role.addresses else ""

    @property
    def process(self) -> subprocess.Popen[str] | None:
        return self.role.process

    @property
    def log_lines(self) -> list[str]:
        return self.role.log_lines

    def url(self, path: str = "/") -> str:
        return f"http://{self.address}{path}"

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def __enter__(self) -> OriginProcess:
        self.role.start().wait_ready()
        return self

    def stop(self) -> int | None:
        """SIGTERM, wait, SIGKILL if it must; returns the exit code."""
        return self.role.stop()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


# --- a synthetic library (no ffmpeg needed) ----------------------------------------------


def segment_bytes(representation: str, number: int, size: int = SEGMENT_SIZE) -> bytes:
    """Deterministic, distinguishable content for a synthetic segment."""
    pattern = f"[{representation}:{number}]".encode()
    return (pattern * (size // len(pattern) + 1))[:size]


MANIFEST = b"""<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT6.0S"
     profiles="urn:mpeg:dash:profile:isoff-live:2011" minBufferTime="PT4.0S">
  <Period id="0" start="PT0.0S">
    <AdaptationSet id="0" contentType="video" segmentAlignment="true" frameRate="30/1">
      <Representation id="0" mimeType="video/mp4" codecs="avc1.64001f" bandwidth="1500000"
                      width="960" height="540" frameRate="30/1">
        <SegmentTemplate timescale="1000000" duration="2000000" startNumber="1"
          initialization="init-abcd1234-$RepresentationID$.m4s"
          media="chunk-abcd1234-$RepresentationID$-$Number%05d$.m4s"/>
      </Representation>
    </AdaptationSet>
    <AdaptationSet id="1" contentType="audio" segmentAlignment="true">
      <Representation id="1" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="128000">
        <SegmentTemplate timescale="1000000" duration="2000000" startNumber="1"
          initialization="init-abcd1234-$RepresentationID$.m4s"
          media="chunk-abcd1234-$RepresentationID$-$Number%05d$.m4s"/>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"""


def write_synthetic_video(
    library: Library, video_id: str, *, segment_size: int = SEGMENT_SIZE
) -> VideoEntry:
    """Publish a fake (not decodable) 3-segment video straight through the Library API."""
    with library.publishing(video_id) as partial:
        (partial.path / "manifest.mpd").write_bytes(MANIFEST)
        for representation in ("0", "1"):
            (partial.path / f"init-{SYNTHETIC_VERSION}-{representation}.m4s").write_bytes(
                b"init" + representation.encode()
            )
            for number in (1, 2, 3):
                (
                    partial.path / f"chunk-{SYNTHETIC_VERSION}-{representation}-{number:05d}.m4s"
                ).write_bytes(segment_bytes(representation, number, segment_size))
        (partial.path / f"{video_id}.torrent").write_bytes(b"d4:infod4:name1:xee")
        (partial.path / "notes.txt").write_bytes(b"not served")
        entry = VideoEntry(
            id=video_id,
            title=f"Synthetic {video_id}",
            duration=6.0,
            segment_seconds=2.0,
            segment_count=3,
            renditions=(
                Rendition(
                    "0", "video", "540p", "video/mp4", "avc1.64001f", 1500000, 960, 540, "30/1"
                ),
                Rendition("1", "audio", "audio 128k", "audio/mp4", "mp4a.40.2", 128000),
            ),
            bytes=len(MANIFEST) + 6 * segment_size,
            files=9,
            created="2026-01-01T00:00:00Z",
            version=SYNTHETIC_VERSION,
            torrent=f"{video_id}.torrent",
        )
        partial.commit(entry)
    return entry


def config_for(data_dir: Path) -> ClusterConfig:
    """The built-in cluster config with its data dir at ``data_dir``."""
    base = default_config()
    return dataclasses.replace(
        base, cluster=dataclasses.replace(base.cluster, data_dir=str(data_dir))
    )
