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
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from seedcast.config import ClusterConfig, default_config
from seedcast.origin.library import Library, Rendition, VideoEntry

__all__ = [
    "SYNTHETIC_VERSION",
    "OriginProcess",
    "config_for",
    "make_sample",
    "publish_cli",
    "seedcast_command",
    "segment_bytes",
    "write_synthetic_video",
]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
COMMAND_TIMEOUT = 120.0
SYNTHETIC_VERSION = "abcd1234"
SEGMENT_SIZE = 300_000


def seedcast_command(*args: str, data_dir: Path | None = None) -> list[str]:
    """argv running ``seedcast`` with this interpreter."""
    command = [sys.executable, "-m", "seedcast"]
    if data_dir is not None:
        command += ["--data", str(data_dir)]
    return command + list(args)


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


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
    result = _run(seedcast_command(*args))
    if result.returncode != 0:
        raise RuntimeError(f"seedcast sample failed: {result.stderr.strip()}")
    return path


def publish_cli(
    source: Path, data_dir: Path, video_id: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``seedcast --data DIR publish SOURCE --id ID`` and return the finished process."""
    return _run(
        seedcast_command("publish", str(source), "--id", video_id, *extra, data_dir=data_dir)
    )


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
        self.command_prefix = list(command_prefix)
        self.data_dir = Path(data_dir)
        self.name = name
        self.host = host
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[str] | None = None
        self.address = ""
        self.log_lines: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def url(self, path: str = "/") -> str:
        return f"http://{self.address}{path}"

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def __enter__(self) -> OriginProcess:
        env = {**os.environ, **self.extra_env}
        env.pop("SEEDCAST_CONTROL", None)
        self.process = subprocess.Popen(
            self.command_prefix
            + seedcast_command(
                "origin", "--listen", f"{self.host}:0", "--name", self.name, data_dir=self.data_dir
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT) or not self.address:
            self.stop()
            raise RuntimeError("origin did not become ready: " + " | ".join(self.log_lines[-5:]))
        return self

    def _read_log(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log_lines.append(line.rstrip("\n"))
            if not self._ready.is_set():
                match = re.search(r"\bready addresses=([^\s,]+)", line)
                if match:
                    self.address = match.group(1)
                    self._ready.set()
        self._ready.set()

    def stop(self) -> int | None:
        """SIGTERM, wait, SIGKILL if it must; returns the exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)
        if process.stderr is not None:
            process.stderr.close()
        return process.returncode

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
