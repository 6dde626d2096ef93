"""parse_probe: golden `ffmpeg -i` outputs (captured from ffmpeg 9), errors, fuzzing."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seedcast.errors import MediaError
from seedcast.origin.probe import parse_probe, split_top_level

MP4_WITH_AUDIO = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'sample.mp4':
  Metadata:
    major_brand     : isom
    minor_version   : 512
    compatible_brands: isomiso2avc1mp41
    encoder         : Lavf63.1.102
  Duration: 00:00:30.00, start: 0.000000, bitrate: 2889 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), \
1280x720 [SAR 1:1 DAR 16:9], 2752 kb/s, 30 fps, 30 tbr, 15360 tbn (default)
    Metadata:
      handler_name    : VideoHandler
      encoder         : Lavc63.1.102 libx264
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, mono, fltp, 128 kb/s (default)
    Metadata:
      handler_name    : SoundHandler
At least one output file must be specified
"""

MKV_NTSC_VIDEO_ONLY = """\
Input #0, matroska,webm, from 'vonly.mkv':
  Metadata:
    ENCODER         : Lavf63.1.102
  Duration: 00:00:02.00, start: 0.000000, bitrate: 787 kb/s
  Stream #0:0: Video: h264 (Constrained Baseline), yuv420p(tv, progressive), 320x240 \
[SAR 1:1 DAR 4:3], 29.97 fps, 29.97 tbr, 1k tbn
    Metadata:
      ENCODER         : Lavc63.1.102 libx264
      DURATION        : 00:00:02.002000000
At least one output file must be specified
"""

MP3_AUDIO_ONLY = """\
Input #0, mp3, from 'aonly.mp3':
  Metadata:
    encoder         : Lavf63.1.102
  Duration: 00:00:02.00, start: 0.025057, bitrate: 66 kb/s
  Stream #0:0: Audio: mp3 (mp3float), 44100 Hz, mono, fltp, 64 kb/s, start 0.025057
At least one output file must be specified
"""

PNG_IMAGE = """\
Input #0, png_pipe, from 'img.png':
  Duration: N/A, bitrate: N/A
  Stream #0:0: Video: png, rgb24(pc, gbr/unknown/unknown), 320x240 [SAR 1:1 DAR 4:3], 25 fps, 25 tbr, 25 tbn
At least one output file must be specified
"""

ROTATED = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'rot3.mp4':
  Duration: 00:00:04.00, start: 0.000000, bitrate: 938 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 640x360 \
[SAR 1:1 DAR 16:9], 798 kb/s, 30 fps, 30 tbr, 15360 tbn (default)
    Metadata:
      handler_name    : VideoHandler
    Side data:
      Display Matrix: rotation of 90.00 degrees
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 127 kb/s (default)
At least one output file must be specified
"""

ANAMORPHIC_51 = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'anam.mp4':
  Duration: 00:00:02.00, start: 0.000000, bitrate: 3352 kb/s
  Stream #0:0[0x1](und): Video: h264 (Constrained Baseline) (avc1 / 0x31637661), yuv420p(progressive), \
720x576 [SAR 16:15 DAR 4:3], 3166 kb/s, 25 fps, 25 tbr, 12800 tbn (default)
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, 5.1, fltp, 173 kb/s (default)
At least one output file must be specified
"""

AVI_NO_PARENS_PIXFMT = """\
Input #0, avi, from 'v.avi':
  Duration: 00:00:03.00, start: 0.000000, bitrate: 432 kb/s
  Stream #0:0: Video: mpeg4 (Simple Profile) (FMP4 / 0x34504D46), yuv420p, 320x240 [SAR 1:1 DAR 4:3], \
415 kb/s, 30 fps, 30 tbr, 30 tbn
At least one output file must be specified
"""

ALBUM_ART = """\
Input #0, mp3, from 'song.mp3':
  Duration: 00:03:10.52, start: 0.025057, bitrate: 320 kb/s
  Stream #0:0: Audio: mp3 (mp3float), 44100 Hz, stereo, fltp, 320 kb/s
  Stream #0:1: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 500x500 \
[SAR 1:1 DAR 1:1], 90k tbr, 90k tbn (attached pic)
At least one output file must be specified
"""

MISSING = """\
[in#0 @ 0x55df689e8c80] Error opening input: No such file or directory
Error opening input file missing.mp4.
Error opening input files: No such file or directory
"""

TRUNCATED = """\
[in#0 @ 0x55fd8cd5f000] moov atom not found
[in#0 @ 0x55fd8cd5ec80] Error opening input: Invalid data found when processing input
Error opening input file trunc.mp4.
Error opening input files: Invalid data found when processing input
"""

GARBAGE = """\
[in#0 @ 0x55d551806000] Format mov,mp4,m4a,3gp,3g2,mj2 detected only with low score of 1, misdetection possible!
[in#0 @ 0x55d551805c80] Error opening input: Invalid data found when processing input
Error opening input file notvideo.mp4.
Error opening input files: Invalid data found when processing input
"""


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
    assert info.video is not None and info.video.width == 1280


def test_ntsc_rate_is_exact_and_commas_inside_parentheses() -> None:
    info = parse_probe(MKV_NTSC_VIDEO_ONLY)
    assert info.video is not None
    assert info.video.fps == Fraction(30000, 1001)
    assert info.video.display_size == (320, 240)
    assert info.audio is None and not info.has_audio


def test_rotation_swaps_display_size() -> None:
    info = parse_probe(ROTATED)
    assert info.video is not None
    assert info.video.rotation == 90
    assert info.video.display_size == (360, 640)
    assert info.audio is not None and info.audio.channels == 2


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
        (TRUNCATED, "truncated or corrupt MP4"),
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
    text = MP4_WITH_AUDIO.replace("Duration: 00:00:30.00, start: 0.000000, bitrate: 2889 kb/s",
                                  "Duration: N/A, bitrate: N/A")
    info = parse_probe(text)
    assert info.duration is None and info.bitrate_kbps is None


def test_split_top_level() -> None:
    assert split_top_level("h264 (High), yuv420p(tv, bt709, progressive), 1920x1080 [SAR 1:1 DAR 16:9]") == [
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
        assert "\n" not in str(error)
    else:
        assert info.video is not None
        assert info.video.width > 0 and info.video.height > 0


_LINES = [line for sample in (MP4_WITH_AUDIO, ROTATED, ANAMORPHIC_51, MKV_NTSC_VIDEO_ONLY)
          for line in sample.splitlines()]


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
