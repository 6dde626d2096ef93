"""``seedcast sample | publish | library | origin``: the origin's commands.

Each command is a thin layer: parse options, call the module that does the
work (:mod:`~seedcast.origin.publish`, :mod:`~seedcast.origin.library`,
:mod:`~seedcast.origin.server`), show progress with rich. Failures are
SeedcastErrors, which the CLI prints as one line with exit code 1.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from seedcast.config import ClusterConfig
from seedcast.errors import UsageError
from seedcast.units import format_size

# --- helpers -------------------------------------------------------------------------------


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C, so cleanup code runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _progress(console: Any) -> Any:
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


def _ffmpeg(args: argparse.Namespace, config: ClusterConfig) -> str:
    from seedcast.origin.encoder import find_ffmpeg

    return find_ffmpeg(getattr(args, "ffmpeg", None), config.origin.ffmpeg)


# --- seedcast sample -----------------------------------------------------------------------


def configure_sample(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        metavar="S",
        help="length in seconds (default: origin.sample_seconds, 30)",
    )
    parser.add_argument(
        "--out", metavar="FILE", default="sample.mp4", help="output file (default: sample.mp4)"
    )
    parser.add_argument(
        "--size", default="1280x720", metavar="WxH", help="frame size (default 1280x720)"
    )
    parser.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")
    parser.add_argument("--no-audio", action="store_true", help="video only, no tone")
    parser.add_argument(
        "--ffmpeg", metavar="PATH", help="ffmpeg binary (default: imageio-ffmpeg's)"
    )


def run_sample(args: argparse.Namespace, config: ClusterConfig) -> int:
    from seedcast.errors import MediaError
    from seedcast.origin.encoder import run_ffmpeg
    from seedcast.origin.sample import build_sample_command, parse_frame_size

    seconds = args.seconds if args.seconds is not None else config.origin.sample_seconds
    width, height = parse_frame_size(args.size)
    output = Path(args.out)
    if output.parent and not output.parent.exists():
        raise UsageError(f"{output.parent}: no such folder")
    binary = _ffmpeg(args, config)
    console = _console()

    def make(with_text: bool) -> None:
        command = build_sample_command(
            output,
            ffmpeg_binary=binary,
            seconds=seconds,
            width=width,
            height=height,
            fps=args.fps,
            with_text=with_text,
            with_audio=not args.no_audio,
        )
        with _progress(console) as progress:
            task = progress.add_task("sample", total=seconds, detail=f"{width}x{height}")
            run_ffmpeg(
                command,
                on_progress=lambda update: progress.update(
                    task, completed=seconds if update.done else min(seconds, update.out_time or 0)
                ),
                what="making the sample",
            )

    with _sigterm_as_interrupt():
        try:
            try:
                make(with_text=True)
            except MediaError as error:
                if "drawtext" not in str(error) and "font" not in str(error).lower():
                    raise
                console.print(
                    f"[yellow]no usable font for the frame counter ({error}); "
                    "making the sample without it"
                )
                make(with_text=False)
        except BaseException:
            output.unlink(missing_ok=True)
            raise
    size = output.stat().st_size
    print(
        f"{output}: {seconds:g} s, {width}x{height} at {args.fps} fps, H.264"
        f"{'' if args.no_audio else ' + AAC'}, {format_size(size)}"
    )
    return 0


# --- seedcast publish ----------------------------------------------------------------------


def configure_publish(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the video to publish")
    parser.add_argument(
        "--id",
        dest="video_id",
        metavar="ID",
        help="video id in URLs: /<id>/manifest.mpd (default: the file name's stem)",
    )
    parser.add_argument(
        "--title", default="", help="title shown in the catalog (default: the file name)"
    )
    parser.add_argument(
        "--ladder",
        metavar="RUNGS",
        default=None,
        help="rungs, largest first; never upscaled (default: 1080p,720p,540p,360p; "
        "a rung may name its bitrate: 720p:2500k)",
    )
    parser.add_argument(
        "--segment-seconds",
        type=float,
        default=None,
        metavar="S",
        help="segment and GOP length (default: origin.segment_seconds, 2)",
    )
    parser.add_argument(
        "--audio-bitrate",
        default=None,
        metavar="RATE",
        help="AAC bitrate (default: origin.audio_bitrate, 128k)",
    )
    parser.add_argument(
        "--preset",
        default="veryfast",
        help="x264 preset (default veryfast: fast on small machines)",
    )
    parser.add_argument(
        "--ffmpeg", metavar="PATH", help="ffmpeg binary (default: imageio-ffmpeg's)"
    )
    parser.add_argument(
        "--timings", action="store_true", help="print the seconds spent per phase (JSON)"
    )


class _RichReporter:
    def __init__(self, console: Any, progress: Any) -> None:
        self.console = console
        self.progress = progress
        self.encode_task: Any = None
        self.hash_task: Any = None
        self.duration: float | None = None

    def planned(self, info: Any, plan: Any) -> None:
        rungs = ", ".join(
            f"{r.name} {r.width}x{r.height} {r.bitrate_kbps}k" for r in plan.renditions
        )
        audio = f" + AAC {plan.audio_bitrate_kbps}k" if plan.audio_bitrate_kbps else " (no audio)"
        print(
            f"ladder: {rungs}{audio}; {plan.fps} fps, "
            f"{plan.segment_seconds:g} s segments (GOP {plan.gop_frames})",
            flush=True,
        )
        self.duration = info.duration
        self.encode_task = self.progress.add_task(
            "encoding", total=info.duration or None, detail=""
        )

    def encoding(self, update: Any, duration: float | None) -> None:
        if self.encode_task is None:
            return
        done = update.out_time or 0.0
        if duration:
            done = duration if update.done else min(done, duration)
        detail = f"{update.speed:.1f}x" if update.speed else ""
        self.progress.update(self.encode_task, completed=done, detail=detail)

    def hashing(self, done: int, total: int) -> None:
        if self.hash_task is None:
            self.hash_task = self.progress.add_task("torrent", total=total, detail="")
        self.progress.update(self.hash_task, completed=done, detail=format_size(total))


def run_publish(args: argparse.Namespace, config: ClusterConfig) -> int:
    from seedcast.origin.ladder import parse_bitrate, parse_ladder
    from seedcast.origin.library import Library
    from seedcast.origin.publish import PublishOptions, publish

    source = Path(args.file)
    video_id = args.video_id or source.stem
    rungs = parse_ladder(args.ladder if args.ladder else config.origin.ladder)
    segment_seconds = (
        args.segment_seconds if args.segment_seconds is not None else config.origin.segment_seconds
    )
    audio_bitrate = parse_bitrate(args.audio_bitrate or config.origin.audio_bitrate)
    options = PublishOptions(
        video_id=video_id,
        title=args.title,
        rungs=rungs,
        ffmpeg_binary=_ffmpeg(args, config),
        announce=config.tracker.announce_url,
        segment_seconds=segment_seconds,
        audio_bitrate_kbps=audio_bitrate,
        preset=args.preset,
    )
    library = Library.for_data_dir(config.data_dir)
    console = _console()
    timings: dict[str, float] = {}
    with _sigterm_as_interrupt(), _progress(console) as progress:
        entry = publish(
            source, library, options, reporter=_RichReporter(console, progress), timings=timings
        )
    names = " ".join(rendition.name for rendition in entry.renditions)
    folder = library.video_dir(entry.id)
    print(
        f"published {entry.id}: {entry.duration:.1f} s, {names}, {entry.segment_count} segments "
        f"x {entry.segment_seconds:g} s, {format_size(entry.bytes)} in {folder}"
    )
    print(
        f"  manifest /{entry.id}/{entry.manifest}  torrent {folder / entry.torrent}"
        f"  info hash {entry.info_hash}"
    )
    if args.timings:
        import json

        print("timings " + json.dumps({key: round(value, 4) for key, value in timings.items()}))
    return 0


# --- seedcast library ----------------------------------------------------------------------


def configure_library(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list the published videos")
    listing.add_argument("--json", action="store_true", help="print the index as JSON")
    rename = actions.add_parser("rename", help="give a video a new id; the old one answers 301")
    rename.add_argument("old_id", metavar="OLD")
    rename.add_argument("new_id", metavar="NEW")
    remove = actions.add_parser("remove", help="delete a published video")
    remove.add_argument("video_id", metavar="ID")
    actions.add_parser("repair", help="sweep unfinished publishes and rebuild index.json")


def run_library(args: argparse.Namespace, config: ClusterConfig) -> int:
    import json

    from seedcast.origin.library import Library
    from seedcast.origin.publish import torrent_for_folder

    library = Library.for_data_dir(config.data_dir)
    if args.action == "repair":
        for line in library.repair() or ["nothing to repair"]:
            print(line)
        return 0
    if args.action == "rename":
        entry = library.rename(
            args.old_id,
            args.new_id,
            retorrent=lambda folder, new_id: torrent_for_folder(
                folder, new_id, announce=config.tracker.announce_url
            ),
        )
        print(f"renamed {args.old_id} -> {entry.id} (/{args.old_id}/... now answers 301)")
        return 0
    if args.action == "remove":
        library.remove(args.video_id)
        print(f"removed {args.video_id}")
        return 0
    library.repair()
    index = library.read_index()
    if args.json:
        json.dump(index.to_json(), sys.stdout, indent=2)
        print()
        return 0
    if not index.videos:
        print(f"no videos in {library.root} (publish one: seedcast publish FILE --id ID)")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"library {library.root}")
    for column in ("id", "title", "duration", "renditions", "size", "segments", "created"):
        table.add_column(
            column, justify="right" if column in ("duration", "size", "segments") else "left"
        )
    for entry in sorted(index.videos.values(), key=lambda item: item.id):
        renditions = " ".join(rendition.name for rendition in entry.renditions)
        table.add_row(
            entry.id,
            entry.title,
            f"{entry.duration:.1f} s",
            renditions,
            format_size(entry.bytes),
            f"{entry.segment_count} x {entry.segment_seconds:g} s",
            entry.created,
        )
    Console(width=max(100, Console().width)).print(table)
    for alias, target in sorted(index.aliases.items()):
        print(f"alias {alias} -> {target}")
    return 0


# --- seedcast origin -----------------------------------------------------------------------


def configure_origin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=None,
        help="address to serve on (default: origin.listen, 127.0.10.1:8080)",
    )
    parser.add_argument(
        "--name", default="origin", help="this origin's name (X-Served-By, metrics)"
    )
    parser.add_argument(
        "--upload",
        metavar="RATE",
        default=None,
        help="egress cap, e.g. 4MiB/s or 32Mbit/s (default: origin.upload; 0 = unlimited)",
    )


def run_origin(args: argparse.Namespace, config: ClusterConfig) -> int:
    import dataclasses

    from seedcast.origin.server import serve_origin_role
    from seedcast.units import parse_rate

    if getattr(args, "upload", None) is not None:
        try:
            upload = parse_rate(args.upload)
        except ValueError as error:
            raise UsageError(f"--upload: {error}") from None
        config = dataclasses.replace(
            config, origin=dataclasses.replace(config.origin, upload=upload)
        )

    return serve_origin_role(
        config, name=args.name, listen=args.listen, debug=bool(getattr(args, "debug", False))
    )
