"""The origin's MPDs: what ffmpeg wrote, read as files to serve, and finished (frameRate, Title)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
from seedcast.errors import MediaError
from seedcast.origin.manifest import finish_manifest, read_manifest

# What ffmpeg 9's dash muxer wrote for the 30 s sample (720p source, default ladder).
FFMPEG_MPD = (Path(__file__).parent / "data" / "ffmpeg-dash.mpd").read_bytes()

NS = {"mpd": "urn:mpeg:dash:schema:mpd:2011"}


def test_parse_ffmpeg_mpd() -> None:
    manifest = read_manifest(FFMPEG_MPD)
    assert manifest.duration == 30.0
    kinds = [(rep.id, rep.content_type, rep.mime_type) for rep in manifest.representations]
    assert kinds == [
        ("0", "video", "video/mp4"),
        ("1", "video", "video/mp4"),
        ("2", "video", "video/mp4"),
        ("3", "audio", "audio/mp4"),
    ]
    first = manifest.representations[0]
    assert (first.width, first.height, first.bandwidth, first.codecs) == (
        1280,
        720,
        3000000,
        "avc1.4d401f",
    )
    assert first.frame_rate == "30/1"  # inherited from the AdaptationSet
    assert first.segment_seconds == 2.0
    assert first.initialization == "init-abcd1234-0.m4s"
    assert first.segments[6].url == "chunk-abcd1234-0-00007.m4s"
    for representation in manifest.representations:
        assert len(representation.segments) == 15
    files = manifest.files()
    assert len(files) == 4 * 16
    assert files[:2] == ["init-abcd1234-0.m4s", "chunk-abcd1234-0-00001.m4s"]
    assert files[-1] == "chunk-abcd1234-3-00015.m4s"
    assert manifest.kind_of("chunk-abcd1234-3-00002.m4s") == "audio"
    assert manifest.kind_of("init-abcd1234-1.m4s") == "video"
    assert manifest.kind_of("chunk-abcd1234-3-00016.m4s") is None


def test_partial_last_segment_is_counted() -> None:
    manifest = read_manifest(
        FFMPEG_MPD.replace(
            b'mediaPresentationDuration="PT30.0S"', b'mediaPresentationDuration="PT31.2S"'
        )
    )
    assert len(manifest.representations[0].segments) == 16
    assert manifest.representations[0].segments[-1].duration == pytest.approx(1.2)


def test_finish_adds_frame_rate_and_title_and_stays_valid() -> None:
    finished = finish_manifest(FFMPEG_MPD, title="Sample <1> & co")
    root = etree.fromstring(finished)
    videos = root.xpath(
        "//mpd:AdaptationSet[@contentType='video']/mpd:Representation", namespaces=NS
    )
    assert len(videos) == 3
    assert all(video.get("frameRate") == "30/1" for video in videos)
    assert (
        root.xpath("string(mpd:ProgramInformation/mpd:Title)", namespaces=NS) == "Sample <1> & co"
    )
    assert root.nsmap[None] == NS["mpd"]
    again = read_manifest(finished)
    assert again.files() == read_manifest(FFMPEG_MPD).files()
    assert finish_manifest(finished, title="x").count(b"<Title>") == 1


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"<not xml", "not well-formed XML"),
        (b"<html/>", "not MPD"),
        (b'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"/>', "no Period"),
        (
            b'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><Period/></MPD>',
            "mediaPresentationDuration",
        ),
        (
            b'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" mediaPresentationDuration="PT1S">'
            b"<Period/></MPD>",
            "no video",
        ),
    ],
)
def test_bad_manifests(data: bytes, problem: str) -> None:
    with pytest.raises(MediaError, match=problem):
        read_manifest(data)


def test_zero_segment_duration_is_refused() -> None:
    with pytest.raises(MediaError):
        read_manifest(FFMPEG_MPD.replace(b'duration="2000000"', b'duration="0"'))
