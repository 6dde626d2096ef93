"""What is in a media file, read from ``ffmpeg -i FILE`` without ffprobe.

The ffmpeg binary shipped by imageio-ffmpeg has no ffprobe, so probing runs
``ffmpeg -hide_banner -i FILE`` (no output file: ffmpeg prints the input's
description on stderr and exits 1) and :func:`parse_probe` reads that text:

    Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'sample.mp4':
      Duration: 00:00:30.00, start: 0.000000, bitrate: 2889 kb/s
      Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive),
        1280x720 [SAR 1:1 DAR 16:9], 2752 kb/s, 30 fps, 30 tbr, 15360 tbn (default)
      Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, mono, fltp, 128 kb/s

A stream line is split on its top-level commas (``yuv420p(tv, bt709)`` keeps
its comma) and each part is matched on its own, so codec tags such as
``0x31637661`` are never mistaken for a frame size. The parser is pure: it
takes text and returns a :class:`MediaInfo` or raises :class:`MediaError`
with one line saying what is wrong with the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from seedcast.errors import MediaError

__all__ = ["AudioStream", "MediaInfo", "VideoStream", "parse_probe"]

# Codecs ffmpeg reports for still images; a file whose only picture is one of
# these (and has no duration) is an image, not a video.
_IMAGE_CODECS = frozenset({"png", "mjpeg", "bmp", "gif", "webp", "tiff", "jpegxl", "jpeg2000"})
_MAX_TEXT = 1_000_000

_INPUT = re.compile(r"^Input #0, (?P<format>[^ ]+), from '(?P<name>.*)':\s*$")
_DURATION = re.compile(
    r"^\s*Duration: (?P<duration>N/A|(?P<h>\d+):(?P<m>\d{2}):(?P<s>\d{2}(?:\.\d+)?))"
    r"(?:, start: (?P<start>-?[\d.]+))?(?:, bitrate: (?P<bitrate>N/A|\d+) kb/s)?"
)
_STREAM = re.compile(
    r"^\s*Stream #0:(?P<index>\d+)(?:\[[^\]]*\])?(?:\([^)]*\))?: "
    r"(?P<kind>Video|Audio|Subtitle|Data|"
    r"Attachment): (?P<description>.*)$"
)
_SIZE = re.compile(
    r"^(?P<w>\d{1,5})x(?P<h>\d{1,5})(?: \[SAR (?P<sn>\d+):(?P<sd>\d+) DAR \d+:\d+\])?"
)
_RATE = re.compile(r"^(?P<value>\d+(?:\.\d+)?)(?P<k>k?) (?P<unit>fps|tbr)$")
_BITRATE = re.compile(r"^(?P<value>\d+) kb/s")
_HZ = re.compile(r"^(?P<value>\d+) Hz$")
_CHANNELS = re.compile(r"^(?P<value>\d+) channels")
_ROTATION = re.compile(r"rotation of (?P<degrees>-?\d+(?:\.\d+)?) degrees")
_LAYOUTS = {
    "mono": 1,
    "stereo": 2,
    "2.1": 3,
    "3.0": 3,
    "quad": 4,
    "4.0": 4,
    "5.0": 5,
    "5.1": 6,
    "6.1": 7,
    "7.1": 8,
}
# Lines ffmpeg prints when it cannot open or read the input, most specific first.
_ERRORS = (
    (re.compile(r"No such file or directory"), "no such file"),
    (re.compile(r"Permission denied"), "permission denied"),
    (re.compile(r"Is a directory"), "is a directory, not a media file"),
    (
        re.compile(r"moov atom not found"),
        "not a readable MP4: it has no index (moov atom), "
        "so it is truncated, corrupt or not a video",
    ),
    (
        re.compile(r"Invalid data found when processing input"),
        "not a media file ffmpeg can read (corrupt, or not a video)",
    ),
)


@dataclass(frozen=True, slots=True)
class VideoStream:
    index: int
    codec: str
    width: int
    """Coded width in pixels (before rotation)."""
    height: int
    fps: Fraction | None
    """Frame rate (``fps``, else ``tbr``); None when ffmpeg reports neither."""
    sample_aspect: Fraction = Fraction(1)
    rotation: int = 0
    """Display rotation in degrees (0, 90, 180, 270); ffmpeg applies it when decoding."""
    bitrate_kbps: int | None = None

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as shown: sample aspect and rotation applied."""
        width = round(self.width * self.sample_aspect)
        height = self.height
        if self.rotation in (90, 270):
            return height, width
        return width, height


@dataclass(frozen=True, slots=True)
class AudioStream:
    index: int
    codec: str
    sample_rate: int | None
    channels: int | None
    bitrate_kbps: int | None = None


@dataclass(frozen=True, slots=True)
class MediaInfo:
    container: str
    duration: float | None
    """Seconds; None when the container does not say (a live stream, a raw file)."""
    bitrate_kbps: int | None
    video: VideoStream | None
    audio: AudioStream | None

    @property
    def has_audio(self) -> bool:
        return self.audio is not None


def parse_probe(text: str, source: str = "input") -> MediaInfo:
    """Parse the stderr of ``ffmpeg -hide_banner -i FILE``.

    Raises MediaError (one line naming ``source``) when ffmpeg could not open
    the file, when it has no video stream, or when it is a still image.
    """
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT]
    lines = text.splitlines()
    container: str | None = None
    duration: float | None = None
    bitrate: int | None = None
    video: VideoStream | None = None
    audio: AudioStream | None = None
    last_video_line = -1
    for number, line in enumerate(lines):
        if (match := _INPUT.match(line)) is not None:
            container = match.group("format")
            continue
        if (match := _DURATION.match(line)) is not None:
            duration = _duration(match)
            if match.group("bitrate") not in (None, "N/A"):
                bitrate = int(match.group("bitrate"))
            continue
        if (match := _STREAM.match(line)) is not None:
            index = int(match.group("index"))
            description = match.group("description")
            if match.group("kind") == "Video" and video is None and "(attached pic)" not in line:
                video = _video(index, description)
                last_video_line = number if video is not None else -1
            elif match.group("kind") == "Audio" and audio is None:
                audio = _audio(index, description)
            continue
        if video is not None and last_video_line >= 0 and (rotation := _ROTATION.search(line)):
            video = _with_rotation(video, float(rotation.group("degrees")))
            last_video_line = -1
    if container is None:
        raise MediaError(f"{source}: {_error_reason(text)}")
    if video is None:
        what = "audio only" if audio is not None else "no video stream"
        raise MediaError(f"{source}: not a video ({what}); publish needs a video stream")
    if video.codec in _IMAGE_CODECS and (duration is None or duration < 0.5):
        raise MediaError(f"{source}: a still image ({video.codec}), not a video")
    if duration is not None and duration <= 0:
        raise MediaError(f"{source}: the video has no duration (empty or corrupt)")
    return MediaInfo(
        container=container, duration=duration, bitrate_kbps=bitrate, video=video, audio=audio
    )


def _error_reason(text: str) -> str:
    for pattern, reason in _ERRORS:
        if pattern.search(text):
            return reason
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line:
            return f"ffmpeg cannot read it: {line[:200]}"
    return "ffmpeg cannot read it (no output)"


def _duration(match: re.Match[str]) -> float | None:
    if match.group("duration") == "N/A":
        return None
    return int(match.group("h")) * 3600 + int(match.group("m")) * 60 + float(match.group("s"))


def split_top_level(description: str) -> list[str]:
    """Split on commas that are not inside parentheses or brackets."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in description:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [part for part in parts if part]


def _codec(parts: list[str]) -> str:
    return parts[0].split(" ", 1)[0] if parts else "unknown"


def _rate(value: str, kilo: str) -> Fraction:
    rate = Fraction(value) * (1000 if kilo else 1)
    # ffmpeg prints NTSC rates rounded (29.97, 23.98, 59.94): recover the exact ratio.
    for exact in (Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001)):
        if abs(rate - exact) < Fraction(1, 100):
            return exact
    return rate


def _video(index: int, description: str) -> VideoStream | None:
    parts = split_top_level(description)
    width = height = 0
    sample_aspect = Fraction(1)
    fps: Fraction | None = None
    tbr: Fraction | None = None
    bitrate: int | None = None
    for part in parts[1:]:
        if (size := _SIZE.match(part)) is not None and not width:
            width, height = int(size.group("w")), int(size.group("h"))
            if size.group("sn") and int(size.group("sn")) and int(size.group("sd")):
                sample_aspect = Fraction(int(size.group("sn")), int(size.group("sd")))
        elif (rate := _RATE.match(part)) is not None:
            value = _rate(rate.group("value"), rate.group("k"))
            if value > 0:
                if rate.group("unit") == "fps":
                    fps = value
                else:
                    tbr = value
        elif (kbps := _BITRATE.match(part)) is not None:
            bitrate = int(kbps.group("value"))
    if width <= 0 or height <= 0:
        return None
    return VideoStream(
        index=index,
        codec=_codec(parts),
        width=width,
        height=height,
        fps=fps or tbr,
        sample_aspect=sample_aspect,
        bitrate_kbps=bitrate,
    )


def _audio(index: int, description: str) -> AudioStream:
    parts = split_top_level(description)
    sample_rate: int | None = None
    channels: int | None = None
    bitrate: int | None = None
    for part in parts[1:]:
        if (hz := _HZ.match(part)) is not None:
            sample_rate = int(hz.group("value"))
        elif (count := _CHANNELS.match(part)) is not None:
            channels = int(count.group("value"))
        elif (kbps := _BITRATE.match(part)) is not None:
            bitrate = int(kbps.group("value"))
        elif channels is None and (layout := part.split("(", 1)[0]) in _LAYOUTS:
            channels = _LAYOUTS[layout]
    return AudioStream(
        index=index,
        codec=_codec(parts),
        sample_rate=sample_rate,
        channels=channels,
        bitrate_kbps=bitrate,
    )


def _with_rotation(video: VideoStream, degrees: float) -> VideoStream:
    from dataclasses import replace

    rotation = round(degrees) % 360
    if rotation not in (0, 90, 180, 270):
        rotation = 0
    return replace(video, rotation=rotation)
