"""Publishing: probe, encode the ladder as DASH, check, torrent, commit.

:func:`publish` is the whole pipeline behind ``seedcast publish``:

1. probe the source with ``ffmpeg -i`` (no ffprobe needed) and plan the
   ladder (never upscaling) and the encode;
2. run one ffmpeg that writes every rung and the audio as DASH into a
   partial folder inside the library (see :mod:`seedcast.origin.library`);
3. read the MPD back and check it against the disk: every init and media
   segment it announces exists, every video representation has the same
   segment count and duration, the output is as long as the source (a
   truncated source stops ffmpeg early without an error); segments ffmpeg
   wrote beyond what the MPD announces (a sliver of AAC priming) are removed;
4. finish the MPD (frameRate per representation, title), write
   ``<id>.torrent`` over the MPD and every segment, and commit the folder.

Any failure or interrupt before the commit leaves the library as it was.
"""

from __future__ import annotations

import datetime
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from seedcast.errors import MediaError
from seedcast.origin.encoder import probe_file, run_ffmpeg
from seedcast.origin.ladder import MANIFEST_NAME, EncodePlan, Rung, build_command, plan_encode
from seedcast.origin.library import Library, Rendition, VideoEntry, check_video_id
from seedcast.origin.manifest import Manifest, finish_manifest, read_manifest
from seedcast.origin.probe import MediaInfo
from seedcast.origin.progress import ProgressUpdate

__all__ = ["PublishOptions", "PublishReporter", "publish", "torrent_for_folder"]

# The output may be this much shorter than the probed duration before we call
# the source truncated (AAC priming and rounding of the last frame differ).
TRUNCATION_TOLERANCE = 0.92


@dataclass(frozen=True, slots=True)
class PublishOptions:
    video_id: str
    rungs: Sequence[Rung]
    ffmpeg_binary: str
    announce: str
    title: str = ""
    segment_seconds: float = 2.0
    audio_bitrate_kbps: int = 128
    preset: str = "veryfast"
    threads: int = 0


class PublishReporter(Protocol):
    def planned(self, info: MediaInfo, plan: EncodePlan) -> None: ...
    def encoding(self, update: ProgressUpdate, duration: float | None) -> None: ...
    def hashing(self, done: int, total: int) -> None: ...


def publish(
    source: Path,
    library: Library,
    options: PublishOptions,
    *,
    reporter: PublishReporter | None = None,
    timings: dict[str, float] | None = None,
) -> VideoEntry:
    """Publish ``source`` as ``options.video_id``; returns the committed entry.

    Raises MediaError (one line) for a missing, non-video, corrupt or
    truncated source or a failed encode; UsageError for bad options.
    ``timings``, when given, receives the seconds spent per phase (probe,
    prepare, encode, check, torrent, commit).
    """
    phases = timings if timings is not None else {}
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[phase] = phases.get(phase, 0.0) + now - clock
        clock = now

    check_video_id(options.video_id)
    source = Path(source)
    info = probe_file(options.ffmpeg_binary, source)
    lap("probe")
    plan = plan_encode(
        info,
        options.rungs,
        segment_seconds=options.segment_seconds,
        audio_bitrate_kbps=options.audio_bitrate_kbps,
    )
    if reporter is not None:
        reporter.planned(info, plan)
    version = secrets.token_hex(4)
    with library.publishing(options.video_id) as partial:
        command = build_command(
            plan,
            source,
            partial.path,
            ffmpeg_binary=options.ffmpeg_binary,
            version=version,
            preset=options.preset,
            threads=options.threads,
        )
        on_progress: Callable[[ProgressUpdate], None] | None = None
        if reporter is not None:

            def on_progress(update: ProgressUpdate) -> None:
                reporter.encoding(update, info.duration)

        lap("prepare")
        run_ffmpeg(command, on_progress=on_progress, what=f"encoding {source.name}")
        lap("encode")
        manifest_path = partial.path / MANIFEST_NAME
        try:
            raw_manifest = manifest_path.read_bytes()
        except FileNotFoundError:
            raise MediaError(f"{source}: ffmpeg wrote no manifest (is the input empty?)") from None
        manifest = read_manifest(raw_manifest)
        check_output(manifest, partial.path, source=source, probed_duration=info.duration)
        lap("check")
        title = options.title or source.stem
        manifest_path.write_bytes(finish_manifest(raw_manifest, title=title))
        torrent_name, info_hash = torrent_for_folder(
            partial.path,
            options.video_id,
            manifest,
            announce=options.announce,
            progress=(lambda done, total: reporter.hashing(done, total)) if reporter else None,
        )
        entry = make_entry(
            options.video_id,
            title,
            manifest,
            partial.path,
            plan,
            torrent=torrent_name,
            info_hash=info_hash,
            source=source.name,
            version=version,
        )
        lap("torrent")
        partial.commit(entry)
        lap("commit")
    return entry


def check_output(
    manifest: Manifest, folder: Path, *, source: Path, probed_duration: float | None
) -> None:
    """The DASH set on disk is complete and consistent; extra segments are removed."""
    videos = manifest.video
    if not videos:
        raise MediaError(f"{source}: ffmpeg wrote no video representation")
    counts = {len(rep.segments) for rep in videos}
    durations = {rep.segment_seconds for rep in videos}
    if len(counts) != 1 or len(durations) != 1:
        raise MediaError(f"{source}: video representations differ in segment count or duration")
    if probed_duration and manifest.duration < probed_duration * TRUNCATION_TOLERANCE:
        raise MediaError(
            f"{source}: truncated or corrupt: ffmpeg read {manifest.duration:.1f} s of the "
            f"{probed_duration:.1f} s the file claims"
        )
    announced = set(manifest.files())
    for name in manifest.files():
        path = folder / name
        if not path.is_file() or path.stat().st_size == 0:
            raise MediaError(f"{source}: ffmpeg did not write {name} (corrupt input?)")
    for path in folder.iterdir():
        if path.suffix == ".m4s" and path.name not in announced:
            path.unlink()


def torrent_for_folder(
    folder: Path,
    video_id: str,
    manifest: Manifest | None = None,
    *,
    announce: str,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[str, str]:
    """Write ``<id>.torrent`` over the MPD and every segment; returns (file name, info hash hex)."""
    from seedcast.peer.metainfo import Metainfo, create_torrent

    if manifest is None:
        manifest = read_manifest((folder / MANIFEST_NAME).read_bytes())
    files = [MANIFEST_NAME, *manifest.files()]
    total = sum((folder / name).stat().st_size for name in files)
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(min(done, total), total)

    data = create_torrent(folder, files, announce=announce, name=video_id, progress=advance)
    name = f"{video_id}.torrent"
    temporary = folder / f".{name}.tmp"
    temporary.write_bytes(data)
    os.replace(temporary, folder / name)
    return name, Metainfo.parse(data).info_hash.hex()


def make_entry(
    video_id: str,
    title: str,
    manifest: Manifest,
    folder: Path,
    plan: EncodePlan,
    *,
    torrent: str,
    info_hash: str,
    source: str,
    version: str = "",
) -> VideoEntry:
    renditions = []
    total = (folder / MANIFEST_NAME).stat().st_size
    files = 1
    for representation in manifest.representations:
        names = representation.files()
        size = sum((folder / name).stat().st_size for name in names)
        total += size
        files += len(names)
        if representation.content_type == "video":
            name = next(
                (
                    planned.name
                    for planned in plan.renditions
                    if (planned.width, planned.height)
                    == (representation.width, representation.height)
                ),
                f"{representation.height}p",
            )
        else:
            name = f"{representation.content_type} {round(representation.bandwidth / 1000)}k"
        renditions.append(
            Rendition(
                id=representation.id,
                kind=representation.content_type,
                name=name,
                mime_type=representation.mime_type,
                codecs=representation.codecs,
                bandwidth=representation.bandwidth,
                width=representation.width or None,
                height=representation.height or None,
                frame_rate=representation.frame_rate,
                bytes=size,
            )
        )
    first_video = next(rep for rep in manifest.representations if rep.content_type == "video")
    return VideoEntry(
        id=video_id,
        title=title,
        duration=round(manifest.duration, 3),
        segment_seconds=first_video.segment_seconds,
        segment_count=len(first_video.segments),
        renditions=tuple(renditions),
        bytes=total,
        files=files,
        created=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        version=version,
        torrent=torrent,
        info_hash=info_hash,
        source=source,
    )
