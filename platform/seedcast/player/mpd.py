"""Reading a static MPEG-DASH manifest into what a player needs.

We support what Seedcast's origin writes and what most on-demand packagers
write: one Period, AdaptationSets of video and audio, Representations with a
SegmentTemplate (``$RepresentationID$``, ``$Number$`` with an optional width
like ``$Number%05d$``, ``$Bandwidth$``, ``$Time$``) timed either by
``@duration`` or by a ``SegmentTimeline``. The template may sit on the
AdaptationSet or on the Representation (the latter wins).

Parsing uses defusedxml: a manifest comes from the network and must not be
able to expand entities or reach files. Anything we can't use raises
:class:`RemoteProtocolError` with the reason.
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

MAX_MANIFEST_BYTES = 1024 * 1024
MAX_SEGMENTS = 100_000
_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_TEMPLATE_FIELD = re.compile(r"\$(RepresentationID|Number|Bandwidth|Time)(%0(\d+)d)?\$|\$\$")


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
    """video or audio"""
    mime_type: str
    codecs: str
    bandwidth: int
    width: int
    height: int
    initialization: str
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    duration: float
    video: tuple[Representation, ...]
    """Sorted by bandwidth, lowest first."""
    audio: tuple[Representation, ...]

    @property
    def segment_count(self) -> int:
        return len(self.video[0].segments)


def parse_duration(text: str) -> float:
    """ISO 8601 durations as DASH uses them: ``PT1M30.5S`` -> 90.5."""
    match = _DURATION.match(text.strip())
    if not match or text.strip() in ("P", "PT"):
        raise RemoteProtocolError(f"MPD: bad duration {text!r}", reason="mpd")
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
            raise RemoteProtocolError(f"MPD: {_local(element.tag)} lacks @{name}", reason="mpd")
        return default
    try:
        value = int(text)
    except ValueError:
        raise RemoteProtocolError(
            f"MPD: {_local(element.tag)}@{name} is not an integer: {text!r}", reason="mpd"
        ) from None
    if value < 0:
        raise RemoteProtocolError(f"MPD: {_local(element.tag)}@{name} is negative", reason="mpd")
    return value


def parse_manifest(data: bytes) -> Manifest:
    """Parse an on-demand (static) MPD. Raises RemoteProtocolError on anything unusable."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise RemoteProtocolError(f"MPD: larger than {MAX_MANIFEST_BYTES} bytes", reason="mpd")
    try:
        root = SafeElementTree.fromstring(data)
    except (SafeElementTree.ParseError, DefusedXmlException, ValueError) as error:
        raise RemoteProtocolError(f"MPD: not well-formed XML: {error}", reason="mpd") from None
    if _local(root.tag) != "MPD":
        raise RemoteProtocolError(
            f"MPD: root element is {_local(root.tag)!r}, not MPD", reason="mpd"
        )
    if root.get("type", "static") != "static":
        raise RemoteProtocolError("MPD: live (dynamic) manifests are not supported", reason="mpd")
    periods = _children(root, "Period")
    if not periods:
        raise RemoteProtocolError("MPD: no Period", reason="mpd")
    period = periods[0]
    duration_text = root.get("mediaPresentationDuration") or period.get("duration")
    if not duration_text:
        raise RemoteProtocolError("MPD: no mediaPresentationDuration", reason="mpd")
    duration = parse_duration(duration_text)
    video: list[Representation] = []
    audio: list[Representation] = []
    for adaptation in _children(period, "AdaptationSet"):
        for element in _children(adaptation, "Representation"):
            representation = _representation(adaptation, element, duration)
            (audio if representation.content_type == "audio" else video).append(representation)
    if not video:
        raise RemoteProtocolError("MPD: no video Representation", reason="mpd")
    return Manifest(
        duration=duration,
        video=tuple(sorted(video, key=lambda rep: rep.bandwidth)),
        audio=tuple(sorted(audio, key=lambda rep: rep.bandwidth)),
    )


def _inherited(adaptation: Element, element: Element, name: str) -> str:
    return element.get(name) or adaptation.get(name) or ""


def _representation(adaptation: Element, element: Element, duration: float) -> Representation:
    representation_id = element.get("id")
    if not representation_id:
        raise RemoteProtocolError("MPD: Representation without @id", reason="mpd")
    mime_type = _inherited(adaptation, element, "mimeType")
    content_type = adaptation.get("contentType") or mime_type.split("/")[0]
    if content_type not in ("video", "audio"):
        content_type = "video" if element.get("width") else "audio"
    bandwidth = _int(element, "bandwidth")
    template = _child(element, "SegmentTemplate")
    if template is None:
        template = _child(adaptation, "SegmentTemplate")
    if template is None:
        raise RemoteProtocolError(
            f"MPD: Representation {representation_id} has no SegmentTemplate", reason="mpd"
        )
    media = template.get("media")
    if not media:
        raise RemoteProtocolError("MPD: SegmentTemplate lacks @media", reason="mpd")
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
            raise RemoteProtocolError(f"MPD: more than {MAX_SEGMENTS} segments", reason="mpd")
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
                raise RemoteProtocolError("MPD: S@d is zero", reason="mpd")
            repeat = int(entry.get("r", "0"))
            if repeat < 0:  # -1: repeat until the end of the period
                repeat = max(0, math.ceil((duration * timescale + offset - time) / length) - 1)
            for _ in range(repeat + 1):
                add(time, length)
                time += length
    else:
        length = _int(template, "duration")
        if length == 0:
            raise RemoteProtocolError("MPD: SegmentTemplate@duration is zero", reason="mpd")
        count = math.ceil(duration * timescale / length - 1e-9)
        for index in range(count):
            last = min(length, round(duration * timescale) - index * length)
            add(offset + index * length, max(last, 1))
    if not segments:
        raise RemoteProtocolError(
            f"MPD: Representation {representation_id} has no segments", reason="mpd"
        )
    return tuple(segments)


def manifest_summary(manifest: Manifest) -> dict[str, Any]:
    return {
        "duration_s": manifest.duration,
        "segments": manifest.segment_count,
        "video": [f"{rep.height}p {rep.bandwidth // 1000}k" for rep in manifest.video],
        "audio": [f"{rep.bandwidth // 1000}k" for rep in manifest.audio],
    }
