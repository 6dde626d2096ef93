"""MPEG-DASH manifests (MPD): one parser and one model for the origin, the player and the agent.

We read what Seedcast's origin writes (ffmpeg's dash muxer) and what most
on-demand packagers write: a static MPD, its first Period, AdaptationSets of
video and audio, Representations with a SegmentTemplate (``$RepresentationID$``,
``$Number$`` with an optional width like ``$Number%05d$``, ``$Bandwidth$``,
``$Time$``, ``$$``) timed either by ``@duration`` or by a ``SegmentTimeline``.
The template may sit on the AdaptationSet or on the Representation (the
latter wins); ``mimeType``, ``codecs``, ``width``, ``height`` and ``frameRate``
are inherited from the AdaptationSet.

:func:`parse_manifest` gives a :class:`Manifest`: every Representation in
document order with its expanded init and media segment names and timing.
:meth:`Manifest.files` is the exact list of files a player will ask for (what
the library checks on disk, what the torrent holds, what the origin serves).

Parsing uses defusedxml: a manifest may come from the network and must not be
able to expand entities or reach files. Anything unusable raises
:class:`~seedcast.errors.RemoteProtocolError` (``reason="mpd"``) saying why;
the origin, reading its own files, turns that into a MediaError.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException
from seedcast.errors import RemoteProtocolError

__all__ = [
    "MAX_MANIFEST_BYTES",
    "MAX_SEGMENTS",
    "MPD_NS",
    "Manifest",
    "Representation",
    "Segment",
    "expand_template",
    "manifest_summary",
    "parse_duration",
    "parse_manifest",
]

MPD_NS = "urn:mpeg:dash:schema:mpd:2011"
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_SEGMENTS = 100_000
"""Per Representation: 55 hours of 2 s segments."""
_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_TEMPLATE_FIELD = re.compile(r"\$(RepresentationID|Number|Bandwidth|Time)(%0(\d+)d)?\$|\$\$")


def _error(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"MPD: {message}", reason="mpd")


@dataclass(frozen=True, slots=True)
class Segment:
    number: int
    start: float
    """Seconds from the start of the presentation."""
    duration: float
    url: str
    """Relative to the manifest's URL."""


@dataclass(frozen=True, slots=True)
class Representation:
    id: str
    content_type: str
    """``video`` or ``audio``."""
    mime_type: str
    codecs: str
    bandwidth: int
    width: int
    """0 when not given (audio)."""
    height: int
    frame_rate: str | None
    initialization: str
    """The init segment's name, relative to the manifest's URL."""
    segments: tuple[Segment, ...]

    @property
    def segment_seconds(self) -> float:
        """The nominal segment length: the longest segment (only the last may be shorter)."""
        return max(segment.duration for segment in self.segments)

    def files(self) -> list[str]:
        """The init segment and every media segment, in order."""
        return [self.initialization, *(segment.url for segment in self.segments)]


@dataclass(frozen=True, slots=True)
class Manifest:
    duration: float
    representations: tuple[Representation, ...]
    """In document order."""

    @property
    def video(self) -> tuple[Representation, ...]:
        """Video Representations, lowest bandwidth first."""
        return self._sorted("video")

    @property
    def audio(self) -> tuple[Representation, ...]:
        """Audio Representations, lowest bandwidth first."""
        return self._sorted("audio")

    def _sorted(self, kind: str) -> tuple[Representation, ...]:
        chosen = (rep for rep in self.representations if rep.content_type == kind)
        return tuple(sorted(chosen, key=lambda rep: rep.bandwidth))

    @property
    def segment_count(self) -> int:
        """Media segments of the first video Representation."""
        return len(self.video[0].segments)

    def files(self) -> list[str]:
        """Init and media segment names of every Representation, in document order."""
        return [name for representation in self.representations for name in representation.files()]

    def kind_of(self, file_name: str) -> str | None:
        """``video`` / ``audio`` for one of :meth:`files`, else None."""
        for representation in self.representations:
            if file_name in representation.files():
                return representation.content_type
        return None


def parse_duration(text: str) -> float:
    """ISO 8601 durations as DASH uses them: ``PT1M30.5S`` -> 90.5."""
    match = _DURATION.match(text.strip())
    if not match or text.strip() in ("P", "PT"):
        raise _error(f"bad duration {text!r}")
    parts = {key: float(value) for key, value in match.groupdict().items() if value}
    return (
        parts.get("days", 0) * 86400
        + parts.get("hours", 0) * 3600
        + parts.get("minutes", 0) * 60
        + parts.get("seconds", 0)
    )


def expand_template(
    template: str, *, representation_id: str, bandwidth: int, number: int = 0, time: int = 0
) -> str:
    """Fill a SegmentTemplate ``@media`` / ``@initialization`` value."""
    values = {
        "RepresentationID": representation_id,
        "Number": number,
        "Bandwidth": bandwidth,
        "Time": time,
    }

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        value = values[match.group(1)]
        if match.group(3):
            return str(value).zfill(int(match.group(3)))
        return str(value)

    return _TEMPLATE_FIELD.sub(substitute, template)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: Element, name: str) -> list[Element]:
    return [child for child in element if _local(child.tag) == name]


def _child(element: Element, name: str) -> Element | None:
    found = _children(element, name)
    return found[0] if found else None


def _int(element: Element, name: str, default: int | None = None) -> int:
    text = element.get(name)
    if text is None:
        if default is None:
            raise _error(f"{_local(element.tag)} lacks @{name}")
        return default
    try:
        value = int(text)
    except ValueError:
        raise _error(f"{_local(element.tag)}@{name} is not an integer: {text!r}") from None
    if value < 0:
        raise _error(f"{_local(element.tag)}@{name} is negative")
    return value


def parse_manifest(data: bytes) -> Manifest:
    """Parse an on-demand (static) MPD. Raises RemoteProtocolError on anything unusable."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise _error(f"larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        root = SafeElementTree.fromstring(data)
    except (SafeElementTree.ParseError, DefusedXmlException, ValueError) as error:
        raise _error(f"not well-formed XML: {error}") from None
    if _local(root.tag) != "MPD":
        raise _error(f"root element is {_local(root.tag)!r}, not MPD")
    if root.get("type", "static") != "static":
        raise _error("live (dynamic) manifests are not supported")
    periods = _children(root, "Period")
    if not periods:
        raise _error("no Period")
    period = periods[0]
    duration_text = root.get("mediaPresentationDuration") or period.get("duration")
    if not duration_text:
        raise _error("no mediaPresentationDuration")
    duration = parse_duration(duration_text)
    representations = tuple(
        _representation(adaptation, element, duration)
        for adaptation in _children(period, "AdaptationSet")
        for element in _children(adaptation, "Representation")
    )
    if not any(rep.content_type == "video" for rep in representations):
        raise _error("no video Representation")
    return Manifest(duration=duration, representations=representations)


def _inherited(adaptation: Element, element: Element, name: str) -> str:
    return element.get(name) or adaptation.get(name) or ""


def _representation(adaptation: Element, element: Element, duration: float) -> Representation:
    representation_id = element.get("id")
    if not representation_id:
        raise _error("Representation without @id")
    mime_type = _inherited(adaptation, element, "mimeType")
    content_type = adaptation.get("contentType") or mime_type.split("/")[0]
    if content_type not in ("video", "audio"):
        content_type = "video" if element.get("width") else "audio"
    bandwidth = _int(element, "bandwidth")
    template = _child(element, "SegmentTemplate")
    if template is None:
        template = _child(adaptation, "SegmentTemplate")
    if template is None:
        raise _error(f"Representation {representation_id} has no SegmentTemplate")
    media = template.get("media")
    if not media:
        raise _error("SegmentTemplate lacks @media")
    initialization = expand_template(
        template.get("initialization", ""), representation_id=representation_id, bandwidth=bandwidth
    )
    segments = _segments(template, media, representation_id, bandwidth, duration)
    return Representation(
        id=representation_id,
        content_type=content_type,
        mime_type=mime_type,
        codecs=_inherited(adaptation, element, "codecs"),
        bandwidth=bandwidth,
        width=_int(element, "width", _int(adaptation, "width", 0)),
        height=_int(element, "height", _int(adaptation, "height", 0)),
        frame_rate=_inherited(adaptation, element, "frameRate") or None,
        initialization=initialization,
        segments=segments,
    )


def _segments(
    template: Element, media: str, representation_id: str, bandwidth: int, duration: float
) -> tuple[Segment, ...]:
    timescale = _int(template, "timescale", 1) or 1
    number = _int(template, "startNumber", 1)
    offset = _int(template, "presentationTimeOffset", 0)
    segments: list[Segment] = []

    def add(time: int, length: int) -> None:
        nonlocal number
        if len(segments) >= MAX_SEGMENTS:
            raise _error(f"more than {MAX_SEGMENTS} segments")
        url = expand_template(
            media,
            representation_id=representation_id,
            bandwidth=bandwidth,
            number=number,
            time=time,
        )
        segments.append(
            Segment(
                number=number,
                start=(time - offset) / timescale,
                duration=length / timescale,
                url=url,
            )
        )
        number += 1

    timeline = _child(template, "SegmentTimeline")
    if timeline is not None:
        time = 0
        for entry in _children(timeline, "S"):
            time = _int(entry, "t", time)
            length = _int(entry, "d")
            if length == 0:
                raise _error("S@d is zero")
            try:
                repeat = int(entry.get("r", "0"))
            except ValueError:
                raise _error(f"S@r is not an integer: {entry.get('r')!r}") from None
            if repeat < 0:  # -1: repeat until the end of the period
                repeat = max(0, math.ceil((duration * timescale + offset - time) / length) - 1)
            for _ in range(repeat + 1):
                add(time, length)
                time += length
    else:
        length = _int(template, "duration")
        if length == 0:
            raise _error("SegmentTemplate@duration is zero")
        # Rounded first: 30.0 s of 2 s segments is 15 even when the float says 15.0000001.
        count = max(1, math.ceil(round(duration * timescale / length, 6)))
        if count > MAX_SEGMENTS:
            raise _error(f"more than {MAX_SEGMENTS} segments")
        for index in range(count):
            last = min(length, round(duration * timescale) - index * length)
            add(offset + index * length, max(last, 1))
    if not segments:
        raise _error(f"Representation {representation_id} has no segments")
    return tuple(segments)


def manifest_summary(manifest: Manifest) -> dict[str, Any]:
    """A short description for logs and reports."""
    return {
        "duration_s": manifest.duration,
        "segments": manifest.segment_count,
        "video": [f"{rep.height}p {rep.bandwidth // 1000}k" for rep in manifest.video],
        "audio": [f"{rep.bandwidth // 1000}k" for rep in manifest.audio],
    }
