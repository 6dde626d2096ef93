"""Reading and finishing the MPD that ffmpeg's dash muxer writes.

The MPD itself is read by :mod:`seedcast.dash` (one parser for origin,
player and agent); :func:`read_manifest` is that parser for the origin's own
files, where an unusable manifest is a MediaError (a packaging failure), not
a protocol error. :meth:`~seedcast.dash.Manifest.files` is the exact list of
init and media segment names a player will ask for: what the library checks
on disk, what the torrent holds and what the origin serves.

:func:`finish_manifest` adds what ffmpeg leaves out: ``frameRate`` on each
video Representation (ffmpeg puts it only on the AdaptationSet) and the
video's title in ProgramInformation.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException
from seedcast.dash import MPD_NS, Manifest, parse_manifest
from seedcast.errors import MediaError, RemoteProtocolError

__all__ = ["Manifest", "finish_manifest", "read_manifest"]

_NS = {"mpd": MPD_NS}


def read_manifest(data: bytes) -> Manifest:
    """Parse an MPD the publisher wrote. Raises MediaError saying what is unusable."""
    try:
        return parse_manifest(data)
    except RemoteProtocolError as error:
        raise MediaError(f"manifest: {error}") from None


def finish_manifest(data: bytes, *, title: str) -> bytes:
    """Add ``frameRate`` to video Representations and a Title; returns the new MPD bytes."""
    ElementTree.register_namespace("", MPD_NS)
    ElementTree.register_namespace("xsi", "http://www.w3.org/2001/XMLSchema-instance")
    ElementTree.register_namespace("xlink", "http://www.w3.org/1999/xlink")
    try:
        root = SafeElementTree.fromstring(data)
    except (SafeElementTree.ParseError, DefusedXmlException, ValueError) as error:
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
