"""parse_probe: golden `ffmpeg -i` outputs (captured from ffmpeg 9), errors, fuzzing."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.errors import MediaError
from seedcast.origin.probe import parse_probe, split_top_level

DATA = Path(__file__).parent / "data"


def _golden(name: str) -> str:
    """stderr of `ffmpeg -hide_banner -i FILE` (ffmpeg 9), saved from real files."""
    return (DATA / f"probe-{name}").read_text()


MP4_WITH_AUDIO = _golden("mp4-with-audio.txt")

MKV_NTSC_VIDEO_ONLY = _golden("mkv-ntsc-video-only.txt")

MP3_AUDIO_ONLY = _golden("mp3-audio-only.txt")

PNG_IMAGE = _golden("png-image.txt")

ROTATED = _golden("rotated.txt")

ANAMORPHIC_51 = _golden("anamorphic-51.txt")

AVI_NO_PARENS_PIXFMT = _golden("avi-no-parens-pixfmt.txt")

ALBUM_ART = _golden("album-art.txt")

MISSING = _golden("missing.txt")

TRUNCATED = _golden("truncated.txt")

GARBAGE = _golden("garbage.txt")


def test_mp4_with_audio() -> None:
    info = parse_probe(MP4_WITH_AUDIO, "sample.mp4")
    assert info.container == "mov,mp4,m4a,3gp,3g2,mj2"
    assert info.duration == 30.0
    assert info.bitrate_kbps == 2889
    assert info.video is not None
    assert (info.video.codec, info.video.width, info.video.height) == ("h264", 1280, 720)
    assert info.video.fps == 30
    assert info.video.bitrate_kbps == 2752
    assert info.video.display_size == (1280, 720)
    assert info.audio is not None
    assert (info.audio.codec, info.audio.sample_rate, info.audio.channels) == ("aac", 48000, 1)
    assert info.audio.bitrate_kbps == 128


def test_codec_tag_is_not_a_frame_size() -> None:
    # "(avc1 / 0x31637661)" contains "0x31637661": not a 0 x 31637661 picture.
    info = parse_probe(MP4_WITH_AUDIO)
    assert info.video is not None
    assert info.video.width == 1280


def test_ntsc_rate_is_exact_and_commas_inside_parentheses() -> None:
    info = parse_probe(MKV_NTSC_VIDEO_ONLY)
    assert info.video is not None
    assert info.video.fps == Fraction(30000, 1001)
    assert info.video.display_size == (320, 240)
    assert info.audio is None
    assert not info.has_audio


def test_rotation_swaps_display_size() -> None:
    info = parse_probe(ROTATED)
    assert info.video is not None
    assert info.video.rotation == 90
    assert info.video.display_size == (360, 640)
    assert info.audio is not None
    assert info.audio.channels == 2


def test_anamorphic_sample_aspect_and_surround() -> None:
    info = parse_probe(ANAMORPHIC_51)
    assert info.video is not None
    assert info.video.sample_aspect == Fraction(16, 15)
    assert info.video.display_size == (768, 576)
    assert info.audio is not None
    assert (info.audio.sample_rate, info.audio.channels) == (44100, 6)


def test_plain_pixel_format() -> None:
    info = parse_probe(AVI_NO_PARENS_PIXFMT)
    assert info.video is not None
    assert (info.video.codec, info.video.width, info.video.height, info.video.fps) == (
        "mpeg4",
        320,
        240,
        30,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MP3_AUDIO_ONLY, "not a video (audio only)"),
        (ALBUM_ART, "not a video (audio only)"),
        (PNG_IMAGE, "a still image (png)"),
        (MISSING, "no such file"),
        (TRUNCATED, "not a readable MP4: it has no index (moov atom), so it is truncated"),
        (GARBAGE, "not a media file ffmpeg can read"),
        ("", "ffmpeg cannot read it (no output)"),
        ("something odd happened\n", "ffmpeg cannot read it: something odd happened"),
    ],
)
def test_errors_are_one_line(text: str, expected: str) -> None:
    with pytest.raises(MediaError) as caught:
        parse_probe(text, "input.mp4")
    message = str(caught.value)
    assert message.startswith("input.mp4: ")
    assert expected in message
    assert "\n" not in message


def test_zero_duration_is_refused() -> None:
    text = MP4_WITH_AUDIO.replace("Duration: 00:00:30.00", "Duration: 00:00:00.00")
    with pytest.raises(MediaError, match="no duration"):
        parse_probe(text)


def test_unknown_duration_is_allowed() -> None:
    text = MP4_WITH_AUDIO.replace(
        "Duration: 00:00:30.00, start: 0.000000, bitrate: 2889 kb/s", "Duration: N/A, bitrate: N/A"
    )
    info = parse_probe(text)
    assert info.duration is None
    assert info.bitrate_kbps is None


def test_split_top_level() -> None:
    assert split_top_level(
        "h264 (High), yuv420p(tv, bt709, progressive), 1920x1080 [SAR 1:1 DAR 16:9]"
    ) == [
        "h264 (High)",
        "yuv420p(tv, bt709, progressive)",
        "1920x1080 [SAR 1:1 DAR 16:9]",
    ]
    assert split_top_level("a,,b") == ["a", "b"]
    assert split_top_level("))),a") == [")))", "a"]
    assert split_top_level("((,a") == ["((,a"]


@given(st.text(max_size=2000))
def test_any_text_gives_info_or_media_error(text: str) -> None:
    try:
        info = parse_probe(text)
    except MediaError as error:
        message = str(error)
    else:
        message = ""
        assert info.video is not None
        assert info.video.width > 0
        assert info.video.height > 0
    assert "\n" not in message


_LINES = [
    line
    for sample in (MP4_WITH_AUDIO, ROTATED, ANAMORPHIC_51, MKV_NTSC_VIDEO_ONLY)
    for line in sample.splitlines()
]


@given(st.lists(st.sampled_from(_LINES), max_size=30), st.data())
def test_shuffled_and_mangled_real_lines(lines: list[str], data: st.DataObject) -> None:
    mangled = [
        line[: data.draw(st.integers(0, len(line)))] if data.draw(st.booleans()) else line
        for line in lines
    ]
    try:
        parse_probe("\n".join(mangled))
    except MediaError:
        pass


def test_huge_input_is_bounded() -> None:
    text = MP4_WITH_AUDIO + ("x" * 100 + "\n") * 20_000
    info = parse_probe(text)
    assert info.video is not None
