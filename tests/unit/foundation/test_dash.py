"""The one MPD parser: ffmpeg-style and timeline manifests, templates, hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seedcast.dash import expand_template, parse_duration, parse_manifest
from seedcast.errors import RemoteProtocolError

# The shape ffmpeg's dash muxer writes (use_template=1, use_timeline=0).
FFMPEG_STYLE = b"""<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011"
     type="static" mediaPresentationDuration="PT9.0S" minBufferTime="PT4.0S">
  <Period id="0" start="PT0.0S">
    <AdaptationSet id="0" contentType="video" segmentAlignment="true" frameRate="30/1">
      <SegmentTemplate timescale="1000000" duration="2000000"
          initialization="init-stream$RepresentationID$.m4s"
          media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1"/>
      <Representation id="0" mimeType="video/mp4" codecs="avc1.64001f" bandwidth="3000000" width="1280" height="720"/>
      <Representation id="1" mimeType="video/mp4" codecs="avc1.64001e" bandwidth="600000" width="640" height="360"/>
    </AdaptationSet>
    <AdaptationSet id="1" contentType="audio" segmentAlignment="true">
      <Representation id="2" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="128000">
        <SegmentTemplate timescale="48000" initialization="init-stream$RepresentationID$.m4s"
            media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
          <SegmentTimeline><S t="0" d="96000" r="3"/><S d="48000"/></SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>"""


def test_ffmpeg_style_manifest() -> None:
    manifest = parse_manifest(FFMPEG_STYLE)
    assert manifest.duration == 9.0
    assert [rep.id for rep in manifest.video] == ["1", "0"]  # lowest bandwidth first
    low = manifest.video[0]
    assert (low.width, low.height, low.codecs) == (640, 360, "avc1.64001e")
    assert low.initialization == "init-stream1.m4s"
    assert [segment.url for segment in low.segments] == [
        f"chunk-stream1-{number:05d}.m4s" for number in range(1, 6)
    ]
    assert [segment.duration for segment in low.segments] == [2.0, 2.0, 2.0, 2.0, 1.0]
    audio = manifest.audio[0]
    assert [segment.start for segment in audio.segments] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert audio.segments[-1].duration == 1.0
    assert manifest.segment_count == 5


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT9.0S", 9.0), ("PT1M30.5S", 90.5), ("PT1H", 3600.0), ("P1DT1S", 86401.0), ("PT0S", 0.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "30", "PT-1S", "PTxS"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(RemoteProtocolError, match="bad duration"):
        parse_duration(text)


def test_document_order_files_and_kinds() -> None:
    manifest = parse_manifest(FFMPEG_STYLE)
    assert [rep.id for rep in manifest.representations] == ["0", "1", "2"]
    assert manifest.representations[0].frame_rate == "30/1"  # from the AdaptationSet
    assert manifest.representations[2].frame_rate is None
    assert manifest.representations[0].segment_seconds == 2.0
    files = manifest.files()
    assert files[:2] == ["init-stream0.m4s", "chunk-stream0-00001.m4s"]
    assert len(files) == 3 * 6
    assert manifest.kind_of("chunk-stream2-00005.m4s") == "audio"
    assert manifest.kind_of("init-stream1.m4s") == "video"
    assert manifest.kind_of("chunk-stream2-00006.m4s") is None


def test_template_fields() -> None:
    assert (
        expand_template(
            "$RepresentationID$/$Number%03d$-$Bandwidth$-$Time$$$.m4s",
            representation_id="v1",
            bandwidth=800,
            number=7,
            time=12,
        )
        == "v1/007-800-12$.m4s"
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "well-formed"),
        (b"<MPD", "well-formed"),
        (b"<html/>", "not MPD"),
        (b'<MPD type="dynamic"><Period/></MPD>', "live"),
        (b'<MPD mediaPresentationDuration="PT1S"></MPD>', "no Period"),
        (b'<MPD mediaPresentationDuration="PT1S"><Period/></MPD>', "no video"),
        (b'<MPD mediaPresentationDuration="soon"><Period/></MPD>', "bad duration"),
        (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><MPD>&a;</MPD>', "well-formed"),
        (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><MPD>&e;</MPD>', "well-formed"),
        (FFMPEG_STYLE.replace(b'bandwidth="600000"', b'bandwidth="-5"'), "negative"),
        (FFMPEG_STYLE.replace(b'duration="2000000"', b'duration="0"'), "zero"),
        (FFMPEG_STYLE.replace(b'duration="2000000"', b'duration="1"'), "more than"),
        (FFMPEG_STYLE.replace(b'r="3"', b'r="many"'), "not an integer"),
        (FFMPEG_STYLE.replace(b'r="3"', b'r="99999999999"'), "more than"),
        (b"x" * (1024 * 1024 + 1), "larger than"),
    ],
)
def test_unusable_manifests_raise_remote_protocol_error(data: bytes, reason: str) -> None:
    with pytest.raises(RemoteProtocolError, match=reason):
        parse_manifest(data)


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_any_bytes_give_a_manifest_or_remote_protocol_error(data: bytes) -> None:
    try:
        parse_manifest(data)
    except RemoteProtocolError:
        pass


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=len(FFMPEG_STYLE)))
def test_truncated_manifests_never_crash(cut: int) -> None:
    try:
        parse_manifest(FFMPEG_STYLE[:cut])
    except RemoteProtocolError:
        pass
