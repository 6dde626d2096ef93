"""The bitrate ladder and the one ffmpeg command that encodes it as DASH.

A ladder spec such as ``1080p,720p:2500k,540p`` names rungs by the short side
of the picture, optionally with a bitrate. :func:`plan_ladder` keeps only the
rungs that do not upscale the source (a 720p source gets 720p, 540p, 360p),
gives every rung the source's display aspect with even dimensions (exact
16:9 sizes for 16:9 sources: 1920x1080, 1280x720, 960x540, 640x360), and
square pixels (``setsar=1``), because ffmpeg's DASH muxer rejects mixed sample
aspect ratios in one adaptation set. A source smaller than every rung gets a
single rung at its own size.

:func:`build_command` turns a plan into one ffmpeg invocation, built with
ffmpeg-python: the decoded video goes through ``fps`` and ``split`` into one
scaler per rung; every rung is encoded with the same fixed GOP
(segment length in frames), forced keyframes at every segment boundary and
scene-cut keyframes off, so segment N of every rung starts with a keyframe at
the same time and a player can switch at any segment. Audio is one AAC
rendition. The dash muxer writes ``manifest.mpd`` (SegmentTemplate with
$Number$, no timeline) plus init and media segments, and ``-progress pipe:1``
reports progress on stdout. Nothing here runs a process.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import ffmpeg
from seedcast.errors import UsageError
from seedcast.origin.probe import MediaInfo

__all__ = [
    "DEFAULT_RUNGS",
    "INIT_TEMPLATE",
    "MANIFEST_NAME",
    "MEDIA_TEMPLATE",
    "EncodePlan",
    "PlannedRendition",
    "Rung",
    "build_command",
    "parse_bitrate",
    "parse_ladder",
    "plan_encode",
    "plan_ladder",
]

MANIFEST_NAME = "manifest.mpd"
# {version} is a tag per publish, so a re-published id never reuses a segment
# URL: segments are cached as immutable, only the MPD changes.
INIT_TEMPLATE = "init-{version}-$RepresentationID$.m4s"
MEDIA_TEMPLATE = "chunk-{version}-$RepresentationID$-$Number%05d$.m4s"
MAX_FPS = Fraction(60)
DEFAULT_FPS = Fraction(30)


@dataclass(frozen=True, slots=True)
class Rung:
    name: str
    short_side: int
    """Height for landscape sources, width for portrait ones."""
    bitrate_kbps: int


DEFAULT_RUNGS: dict[str, Rung] = {
    "2160p": Rung("2160p", 2160, 16000),
    "1440p": Rung("1440p", 1440, 8000),
    "1080p": Rung("1080p", 1080, 5000),
    "720p": Rung("720p", 720, 3000),
    "540p": Rung("540p", 540, 1500),
    "480p": Rung("480p", 480, 1000),
    "360p": Rung("360p", 360, 600),
    "270p": Rung("270p", 270, 400),
    "240p": Rung("240p", 240, 300),
}

_RUNG_SPEC = re.compile(r"^(?P<side>\d{2,4})p(?::(?P<bitrate>\d+(?:\.\d+)?[kKmM]?))?$")


def parse_bitrate(text: str) -> int:
    """``"3000k"`` / ``"3M"`` / ``"600"`` (kbit/s) -> kbit/s."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", text.strip())
    if not match:
        raise UsageError(f"not a bitrate: {text!r} (examples: 3000k, 2.5M)")
    value = float(match.group(1)) * (1000 if match.group(2) in ("m", "M") else 1)
    if value < 32:
        raise UsageError(f"bitrate too low: {text!r} (at least 32k)")
    return round(value)


def parse_ladder(spec: str | Sequence[str]) -> list[Rung]:
    """Rungs from ``"1080p,720p:2500k,540p"`` (or a sequence of such names).

    A rung without a bitrate takes the default for its size (1080p 5000k,
    720p 3000k, 540p 1500k, 360p 600k; others scale with the pixel count).
    Raises UsageError naming the bad rung.
    """
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    rungs: list[Rung] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        match = _RUNG_SPEC.match(name)
        if not match:
            raise UsageError(
                f"bad ladder rung {name!r} (examples: 1080p, 720p:2500k; known: "
                f"{', '.join(DEFAULT_RUNGS)})"
            )
        side = int(match.group("side"))
        if side < 64 or side > 4320 or side % 2:
            raise UsageError(f"bad ladder rung {name!r}: size must be even, 64..4320")
        if match.group("bitrate"):
            bitrate = parse_bitrate(match.group("bitrate"))
        elif f"{side}p" in DEFAULT_RUNGS:
            bitrate = DEFAULT_RUNGS[f"{side}p"].bitrate_kbps
        else:
            bitrate = max(100, round(3000 * (side / 720) ** 2 / 50) * 50)
        rungs.append(Rung(f"{side}p", side, bitrate))
    if not rungs:
        raise UsageError("the ladder is empty (example: --ladder 1080p,720p,540p,360p)")
    sides = [rung.short_side for rung in rungs]
    if len(set(sides)) != len(sides):
        raise UsageError(f"the ladder names a size twice: {spec}")
    return sorted(rungs, key=lambda rung: -rung.short_side)


@dataclass(frozen=True, slots=True)
class PlannedRendition:
    name: str
    width: int
    height: int
    bitrate_kbps: int

    @property
    def maxrate_kbps(self) -> int:
        return round(self.bitrate_kbps * 1.07)

    @property
    def bufsize_kbps(self) -> int:
        return self.bitrate_kbps * 2


def _even(value: float | Fraction) -> int:
    return max(2, round(value / 2) * 2)


def _size_for(short_side: int, display_width: int, display_height: int) -> tuple[int, int]:
    """Even dimensions with exactly the source's aspect, the short side at most ``short_side``.

    The DASH muxer refuses an adaptation set whose pictures differ in aspect
    (426x240 next to 640x360 fails), so a rung whose nominal size can't have
    the exact aspect shrinks to the nearest one that can (240p of a 16:9
    source is 416x234). Aspects whose exact sizes are too coarse fall back to
    rounding.
    """
    aspect = Fraction(display_width, display_height)
    long_unit, short_unit = (
        (aspect.numerator, aspect.denominator)
        if aspect >= 1
        else (aspect.denominator, aspect.numerator)
    )
    steps = short_side // (2 * short_unit)
    if steps >= 1 and 2 * short_unit * steps >= 0.9 * short_side:
        long_side, short = 2 * long_unit * steps, 2 * short_unit * steps
    elif aspect >= 1:
        long_side, short = _even(short_side * aspect), short_side
    else:
        long_side, short = _even(short_side / aspect), short_side
    return (long_side, short) if aspect >= 1 else (short, long_side)


def plan_ladder(
    rungs: Sequence[Rung], display_width: int, display_height: int
) -> list[PlannedRendition]:
    """The rungs that fit the source without upscaling, largest first.

    A source smaller than every rung gets one rendition at its own size, with
    the smallest rung's bitrate scaled down by the pixel count.
    """
    if display_width <= 0 or display_height <= 0:
        raise UsageError(f"bad source size {display_width}x{display_height}")
    source_short = min(display_width, display_height)
    planned = []
    for rung in sorted(rungs, key=lambda rung: -rung.short_side):
        if rung.short_side > source_short:
            continue
        width, height = _size_for(rung.short_side, display_width, display_height)
        if width > display_width + 1 or height > display_height + 1:
            continue
        planned.append(PlannedRendition(rung.name, width, height, rung.bitrate_kbps))
    if not planned:
        smallest = min(rungs, key=lambda rung: rung.short_side)
        # Round down to even sizes: never a pixel more than the source.
        width = max(2, display_width - display_width % 2)
        height = max(2, display_height - display_height % 2)
        rung_width, rung_height = _size_for(smallest.short_side, display_width, display_height)
        scale = (width * height) / (rung_width * rung_height)
        bitrate = max(64, round(smallest.bitrate_kbps * scale))
        planned.append(PlannedRendition(f"{min(width, height)}p", width, height, bitrate))
    return planned


@dataclass(frozen=True, slots=True)
class EncodePlan:
    renditions: tuple[PlannedRendition, ...]
    fps: Fraction
    segment_seconds: float
    gop_frames: int
    audio_bitrate_kbps: int | None
    """None when the source has no audio."""
    audio_channels: int
    audio_sample_rate: int
    duration: float | None


def plan_encode(
    info: MediaInfo,
    rungs: Sequence[Rung],
    *,
    segment_seconds: float,
    audio_bitrate_kbps: int,
) -> EncodePlan:
    """Everything ffmpeg needs to know, decided from the probe and the options."""
    if info.video is None:
        raise UsageError("the source has no video stream")
    if not 0.5 <= segment_seconds <= 30:
        raise UsageError(f"--segment-seconds must be between 0.5 and 30, got {segment_seconds:g}")
    width, height = info.video.display_size
    fps = info.video.fps or DEFAULT_FPS
    if fps > MAX_FPS:
        fps = MAX_FPS
    fps = fps.limit_denominator(1001)
    gop = max(1, math.ceil(fps * Fraction(segment_seconds).limit_denominator(1000)))
    audio = info.audio
    channels = min(2, audio.channels or 2) if audio else 2
    sample_rate = audio.sample_rate if audio and audio.sample_rate in (44100, 48000) else 48000
    return EncodePlan(
        renditions=tuple(plan_ladder(rungs, width, height)),
        fps=fps,
        segment_seconds=segment_seconds,
        gop_frames=gop,
        audio_bitrate_kbps=audio_bitrate_kbps if audio is not None else None,
        audio_channels=channels,
        audio_sample_rate=sample_rate,
        duration=info.duration,
    )


def build_command(
    plan: EncodePlan,
    source: Path,
    output_dir: Path,
    *,
    ffmpeg_binary: str,
    version: str = "v1",
    preset: str = "veryfast",
    threads: int = 0,
) -> list[str]:
    """The ffmpeg argv (built with ffmpeg-python) that writes the DASH set into ``output_dir``."""
    if not re.fullmatch(r"[0-9a-z]{1,16}", version):
        raise UsageError(f"bad segment version tag {version!r}")
    source_input = ffmpeg.input(str(source))
    count = len(plan.renditions)
    video = source_input.video.filter("fps", fps=_fraction_text(plan.fps))
    branches = video.filter_multi_output("split", count) if count > 1 else None
    streams = []
    for index, rendition in enumerate(plan.renditions):
        branch = branches.stream(index) if branches is not None else video
        streams.append(
            branch.filter("scale", rendition.width, rendition.height, flags="bicubic").filter(
                "setsar", "1"
            )
        )
    options: dict[str, str | int] = {
        "c:v": "libx264",
        "preset": preset,
        "profile:v": "high",
        "pix_fmt": "yuv420p",
        # Fixed GOP, keyframes forced on every segment boundary, no scene-cut
        # keyframes: every rung's segment N starts with an IDR at the same time.
        "g": plan.gop_frames,
        "keyint_min": plan.gop_frames,
        "sc_threshold": 0,
        "force_key_frames": f"expr:gte(t,n_forced*{plan.segment_seconds:g})",
        "x264-params": "scenecut=0:open_gop=0",
        "format": "dash",
        "seg_duration": f"{plan.segment_seconds:g}",
        "use_template": 1,
        "use_timeline": 0,
        "init_seg_name": INIT_TEMPLATE.format(version=version),
        "media_seg_name": MEDIA_TEMPLATE.format(version=version),
        "dash_segment_type": "mp4",
        "map_metadata": -1,
        "map_chapters": -1,
    }
    if threads:
        options["threads"] = threads
    for index, rendition in enumerate(plan.renditions):
        options[f"b:v:{index}"] = f"{rendition.bitrate_kbps}k"
        options[f"maxrate:v:{index}"] = f"{rendition.maxrate_kbps}k"
        options[f"bufsize:v:{index}"] = f"{rendition.bufsize_kbps}k"
    if plan.audio_bitrate_kbps is not None:
        streams.append(source_input.audio)
        options.update(
            {
                "c:a": "aac",
                "b:a": f"{plan.audio_bitrate_kbps}k",
                "ac": plan.audio_channels,
                "ar": plan.audio_sample_rate,
                "adaptation_sets": "id=0,streams=v id=1,streams=a",
            }
        )
    else:
        options["adaptation_sets"] = "id=0,streams=v"
    output = ffmpeg.output(*streams, str(output_dir / MANIFEST_NAME), **options)
    output = output.global_args(
        "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-progress", "pipe:1"
    ).overwrite_output()
    command: list[str] = output.compile(cmd=ffmpeg_binary)
    return command


def _fraction_text(value: Fraction) -> str:
    return (
        str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    )
