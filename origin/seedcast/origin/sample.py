"""The test video: a moving picture with a visible frame counter and a tone.

``testsrc2`` (moving shapes and colour bars) with a burnt-in frame number (and
testsrc2's own clock), plus a 440 Hz tone that beeps once a second, encoded as H.264 + AAC in
an MP4 with the index up front (``+faststart``). Sizes are exact (1280x720 by
default) at a constant frame rate, so the ladder and segment timing of the
demo are predictable. :func:`build_sample_command` only builds the argv.
"""

from __future__ import annotations

import re
from pathlib import Path

import ffmpeg
from seedcast.errors import UsageError

__all__ = ["build_sample_command", "parse_frame_size"]


def parse_frame_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> (1280, 720); both even, 64..7680. Raises UsageError."""
    match = re.fullmatch(r"\s*(\d{2,4})x(\d{2,4})\s*", text)
    if not match:
        raise UsageError(f"not a frame size: {text!r} (example: 1280x720)")
    width, height = int(match.group(1)), int(match.group(2))
    if not (64 <= width <= 7680 and 64 <= height <= 4320) or width % 2 or height % 2:
        raise UsageError(f"frame size {text!r}: width and height must be even, 64..7680")
    return width, height


def build_sample_command(
    output: Path,
    *,
    ffmpeg_binary: str,
    seconds: float = 30.0,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    with_text: bool = True,
    with_audio: bool = True,
) -> list[str]:
    """The ffmpeg argv that writes the sample to ``output``."""
    if not 0.5 <= seconds <= 3600:
        raise UsageError(f"--seconds must be between 0.5 and 3600, got {seconds:g}")
    if not 1 <= fps <= 120:
        raise UsageError(f"--fps must be between 1 and 120, got {fps}")
    video = ffmpeg.input(
        f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds:g}", format="lavfi"
    ).video
    if with_text:
        font_size = max(12, height // 10)
        # The generic filter() call: ffmpeg-python's drawtext() helper would
        # escape the % of the frame number expansion.
        video = video.filter(
            "drawtext",
            text="frame %{frame_num}",
            x="(w-text_w)/2",
            y="(h-text_h)/2",
            fontsize=font_size,
            fontcolor="white",
            box=1,
            boxcolor="black@0.6",
            boxborderw=max(2, font_size // 6),
        )
    streams = [video]
    options: dict[str, str | int] = {
        "c:v": "libx264",
        "preset": "veryfast",
        "pix_fmt": "yuv420p",
        "g": fps * 2,
        "movflags": "+faststart",
        "t": f"{seconds:g}",
    }
    if with_audio:
        streams.append(
            ffmpeg.input(
                f"sine=frequency=440:beep_factor=4:sample_rate=48000:duration={seconds:g}",
                format="lavfi",
            ).audio
        )
        options.update({"c:a": "aac", "b:a": "128k", "ac": 2})
    command = (
        ffmpeg.output(*streams, str(output), **options)
        .global_args(
            "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-progress", "pipe:1"
        )
        .overwrite_output()
    )
    argv: list[str] = command.compile(cmd=ffmpeg_binary)
    return argv
