"""Reading and finishing the MPD that ffmpeg's dash muxer writes.

:func:`parse_manifest` reads a static, SegmentTemplate-based MPD (the only
kind the publisher produces) into :class:`Manifest`: its duration and, per
representation, id, content kind, mime type, codecs, bandwidth, size, frame
rate and segment template. :meth:`Manifest.files` expands the templates into
the exact list of init and media segment names a player will ask for
(``ceil(duration / segment duration)`` media segments per representation,
numbered from ``startNumber``) — that list is what the library checks on disk,
what the torrent holds and what the origin serves.

:func:`finish_manifest` adds what ffmpeg leaves out: ``frameRate`` on each
video Representation (ffmpeg puts it only on the AdaptationSet) and the
video's title in ProgramInformation.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

from seedcast.errors import MediaError

__all__ = ["Manifest", "Representation", "finish_manifest", "parse_iso_duration", "parse_manifest"]

MPD_NS = "urn:mpeg:dash:schema:mpd:2011"
_NS = {"mpd": MPD_NS}
_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_NUMBER = re.compile(r"\$Number(?:%0(?P<width>\d)d)?\$")
MAX_SEGMENTS = 1_000_000


def parse_iso_duration(text: str) -> float:
    """``PT1M30.5S`` -> 90.5 seconds. Raises MediaError when it is not a duration."""
    match = _ISO_DURATION.match(text.strip())
    if not match or text.strip() in ("P", "PT"):
        raise MediaError(f"not an ISO 8601 duration: {text!r}")
    days, hours, minutes, seconds = (float(match.group(key) or 0) for key in "dhms")
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True, slots=True)
class Representation:
    id: str
    kind: str
    """``video`` or ``audio`` (from the AdaptationSet's contentType / mimeType)."""
    mime_type: str
    codecs: str
    bandwidth: int
    width: int | None
    height: int | None
    frame_rate: str | None
    initialization: str
    media: str
    start_number: int
    timescale: int
    segment_duration: int
    """In timescale units."""

    @property
    def segment_seconds(self) -> float:
        return self.segment_duration / self.timescale

    def init_name(self) -> str:
        return _fill(self.initialization, self, None)

    def media_name(self, number: int) -> str:
        return _fill(self.media, self, number)


@dataclass(frozen=True, slots=True)
class Manifest:
    duration: float
    representations: tuple[Representation, ...]

    def segment_count(self, representation: Representation) -> int:
        count = math.ceil(round(self.duration / representation.segment_seconds, 6))
        if count > MAX_SEGMENTS:
            raise MediaError(f"the manifest announces {count} segments; that is too many")
        return max(count, 1)

    def segment_names(self, representation: Representation) -> list[str]:
        start = representation.start_number
        count = self.segment_count(representation)
        return [representation.media_name(number) for number in range(start, start + count)]

    def files(self) -> list[str]:
        """Init and media segment names of every representation, in manifest order."""
        names: list[str] = []
        for representation in self.representations:
            names.append(representation.init_name())
            names.extend(self.segment_names(representation))
        return names

    def kind_of(self, file_name: str) -> str | None:
        """``video`` / ``audio`` for one of :meth:`files`, else None."""
        for representation in self.representations:
            if file_name == representation.init_name() or file_name in self.segment_names(
                representation
            ):
                return representation.kind
        return None


def _fill(template: str, representation: Representation, number: int | None) -> str:
    text = template.replace("$RepresentationID$", representation.id)
    text = text.replace("$Bandwidth$", str(representation.bandwidth))
    if number is not None:
        text = _NUMBER.sub(lambda match: str(number).zfill(int(match.group("width") or 0)), text)
    return text.replace("$$", "$")


def _attribute(
    element: ElementTree.Element, *names: str, parents: tuple[ElementTree.Element, ...] = ()
) -> str | None:
    for candidate in (element, *parents):
        for name in names:
            value = candidate.get(name)
            if value is not None:
                return value
    return None


def _int(value: str | None, what: str) -> int:
    if value is None:
        raise MediaError(f"manifest: missing {what}")
    try:
        number = int(value)
    except ValueError:
        raise MediaError(f"manifest: {what} is not a number: {value!r}") from None
    if number < 0:
        raise MediaError(f"manifest: {what} is negative: {value!r}")
    return number


def parse_manifest(data: bytes) -> Manifest:
    """Parse a static SegmentTemplate MPD. Raises MediaError saying what is missing."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        raise MediaError(f"manifest: not XML: {error}") from None
    if root.tag != f"{{{MPD_NS}}}MPD":
        raise MediaError(f"manifest: root element is {root.tag}, not an MPD")
    duration_text = root.get("mediaPresentationDuration")
    if duration_text is None:
        raise MediaError("manifest: no mediaPresentationDuration (not a static MPD)")
    duration = parse_iso_duration(duration_text)
    representations: list[Representation] = []
    for adaptation in root.iterfind("mpd:Period/mpd:AdaptationSet", _NS):
        adaptation_template = adaptation.find("mpd:SegmentTemplate", _NS)
        for element in adaptation.iterfind("mpd:Representation", _NS):
            template = element.find("mpd:SegmentTemplate", _NS)
            if template is None:
                template = adaptation_template
            if template is None:
                raise MediaError(
                    f"manifest: representation {element.get('id')} has no SegmentTemplate"
                )
            mime = _attribute(element, "mimeType", parents=(adaptation,)) or ""
            kind = adaptation.get("contentType") or mime.split("/", 1)[0]
            initialization = template.get("initialization")
            media = template.get("media")
            if not initialization or not media:
                raise MediaError("manifest: SegmentTemplate without initialization/media")
            width = _attribute(element, "width", parents=(adaptation,))
            height = _attribute(element, "height", parents=(adaptation,))
            representations.append(
                Representation(
                    id=element.get("id") or str(len(representations)),
                    kind=kind,
                    mime_type=mime,
                    codecs=_attribute(element, "codecs", parents=(adaptation,)) or "",
                    bandwidth=_int(element.get("bandwidth"), "bandwidth"),
                    width=_int(width, "width") if width else None,
                    height=_int(height, "height") if height else None,
                    frame_rate=_attribute(element, "frameRate", parents=(adaptation,)),
                    initialization=initialization,
                    media=media,
                    start_number=_int(template.get("startNumber", "1"), "startNumber"),
                    timescale=max(1, _int(template.get("timescale", "1"), "timescale")),
                    segment_duration=_int(template.get("duration"), "SegmentTemplate duration"),
                )
            )
    if not representations:
        raise MediaError("manifest: no representations")
    for representation in representations:
        if representation.segment_duration <= 0:
            raise MediaError(
                f"manifest: representation {representation.id} has a zero segment duration"
            )
    return Manifest(duration=duration, representations=tuple(representations))


def finish_manifest(data: bytes, *, title: str) -> bytes:
    """Add ``frameRate`` to video Representations and a Title; returns the new MPD bytes."""
    ElementTree.register_namespace("", MPD_NS)
    ElementTree.register_namespace("xsi", "http://www.w3.org/2001/XMLSchema-instance")
    ElementTree.register_namespace("xlink", "http://www.w3.org/1999/xlink")
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        raise MediaError(f"manifest: not XML: {error}") from None
    for adaptation in root.iterfind("mpd:Period/mpd:AdaptationSet", _NS):
        frame_rate = adaptation.get("frameRate")
        for element in adaptation.iterfind("mpd:Representation", _NS):
            if frame_rate and element.get("frameRate") is None:
                element.set("frameRate", frame_rate)
    information = root.find("mpd:ProgramInformation", _NS)
    if information is None:
        information = ElementTree.Element(f"{{{MPD_NS}}}ProgramInformation")
        root.insert(0, information)
    for old in information.findall("mpd:Title", _NS):
        information.remove(old)
    title_element = ElementTree.SubElement(information, f"{{{MPD_NS}}}Title")
    title_element.text = title
    for element in root.iter():
        if element.text is not None and not element.text.strip():
            element.text = None
        if element.tail is not None and not element.tail.strip():
            element.tail = None
    ElementTree.indent(root, space="  ")
    body: bytes = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return body + b"\n"
