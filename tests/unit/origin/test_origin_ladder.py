"""Ladder planning (never upscale, exact sizes) and the ffmpeg command it builds."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.errors import UsageError
from seedcast.origin.ladder import (
    DEFAULT_RUNGS,
    build_command,
    parse_bitrate,
    parse_ladder,
    plan_encode,
    plan_ladder,
)
from seedcast.origin.probe import AudioStream, MediaInfo, VideoStream

DEFAULT = parse_ladder("1080p,720p,540p,360p")


def _info(
    width: int, height: int, *, fps: Fraction | None = Fraction(30), audio: bool = True
) -> MediaInfo:
    return MediaInfo(
        container="mp4",
        duration=30.0,
        bitrate_kbps=None,
        video=VideoStream(index=0, codec="h264", width=width, height=height, fps=fps),
        audio=AudioStream(index=1, codec="aac", sample_rate=48000, channels=1) if audio else None,
    )


def test_default_rungs_and_bitrates() -> None:
    assert [(rung.name, rung.bitrate_kbps) for rung in DEFAULT] == [
        ("1080p", 5000),
        ("720p", 3000),
        ("540p", 1500),
        ("360p", 600),
    ]


def test_ladder_spec_with_bitrates_sorted_largest_first() -> None:
    rungs = parse_ladder("360p, 720p:2.5M,540p:1200k")
    assert [(rung.name, rung.bitrate_kbps) for rung in rungs] == [
        ("720p", 2500),
        ("540p", 1200),
        ("360p", 600),
    ]
    assert parse_ladder(["1080p"])[0].bitrate_kbps == 5000


@pytest.mark.parametrize(
    "spec", ["", "720", "720p:fast", "abc", "721p", "720p,720p", "8p", "9000p"]
)
def test_bad_ladder_specs(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_ladder(spec)


def test_bitrates() -> None:
    assert parse_bitrate("3000k") == 3000
    assert parse_bitrate("3M") == 3000
    assert parse_bitrate("600") == 600
    for bad in ("", "fast", "10k", "-3k"):
        with pytest.raises(UsageError):
            parse_bitrate(bad)


def test_1080p_source_gets_exact_16_9_sizes() -> None:
    planned = plan_ladder(DEFAULT, 1920, 1080)
    assert [(p.name, p.width, p.height, p.bitrate_kbps) for p in planned] == [
        ("1080p", 1920, 1080, 5000),
        ("720p", 1280, 720, 3000),
        ("540p", 960, 540, 1500),
        ("360p", 640, 360, 600),
    ]


def test_720p_source_is_never_upscaled() -> None:
    assert [p.name for p in plan_ladder(DEFAULT, 1280, 720)] == ["720p", "540p", "360p"]
    assert [p.name for p in plan_ladder(DEFAULT, 960, 540)] == ["540p", "360p"]


def test_portrait_and_4_3_sources() -> None:
    portrait = plan_ladder(DEFAULT, 1080, 1920)
    assert [(p.width, p.height) for p in portrait] == [
        (1080, 1920),
        (720, 1280),
        (540, 960),
        (360, 640),
    ]
    four_three = plan_ladder(DEFAULT, 640, 480)
    assert [(p.width, p.height) for p in four_three] == [(480, 360)]


def test_rungs_keep_the_exact_aspect_even_when_the_nominal_size_cannot() -> None:
    # 426x240 is not 16:9 and ffmpeg's DASH muxer refuses it next to 640x360.
    rungs = plan_ladder(parse_ladder("360p,270p,240p"), 1280, 720)
    assert [(p.width, p.height) for p in rungs] == [(640, 360), (480, 270), (416, 234)]
    for rung in rungs:
        assert Fraction(rung.width, rung.height) == Fraction(16, 9)


def test_tiny_source_gets_one_rung_at_its_own_size() -> None:
    (only,) = plan_ladder(DEFAULT, 321, 241)
    assert (only.width, only.height) == (320, 240)
    assert 64 <= only.bitrate_kbps < 600


@given(st.integers(16, 8000), st.integers(16, 8000))
def test_plan_never_upscales_and_sizes_are_even(width: int, height: int) -> None:
    planned = plan_ladder(list(DEFAULT_RUNGS.values()), width, height)
    assert planned
    for rendition in planned:
        assert rendition.width % 2 == 0
        assert rendition.height % 2 == 0
        assert rendition.width <= width + 1
        assert rendition.height <= height + 1
    heights = [rendition.height for rendition in planned]
    assert heights == sorted(heights, reverse=True)


def test_plan_encode_gop_and_audio() -> None:
    plan = plan_encode(_info(1280, 720), DEFAULT, segment_seconds=2.0, audio_bitrate_kbps=128)
    assert plan.gop_frames == 60
    assert plan.audio_bitrate_kbps == 128
    assert plan.audio_channels == 1
    ntsc = plan_encode(
        _info(1280, 720, fps=Fraction(30000, 1001)),
        DEFAULT,
        segment_seconds=2.0,
        audio_bitrate_kbps=128,
    )
    assert ntsc.fps == Fraction(30000, 1001)
    assert ntsc.gop_frames == 60
    fast = plan_encode(
        _info(1280, 720, fps=Fraction(120)), DEFAULT, segment_seconds=4.0, audio_bitrate_kbps=96
    )
    assert fast.fps == 60
    assert fast.gop_frames == 240
    silent = plan_encode(
        _info(1280, 720, audio=False, fps=None),
        DEFAULT,
        segment_seconds=2.0,
        audio_bitrate_kbps=128,
    )
    assert silent.audio_bitrate_kbps is None
    assert silent.fps == 30
    with pytest.raises(UsageError):
        plan_encode(_info(1280, 720), DEFAULT, segment_seconds=0.1, audio_bitrate_kbps=128)


def _options(command: list[str]) -> dict[str, str]:
    return {
        command[i]: command[i + 1] for i in range(len(command) - 1) if command[i].startswith("-")
    }


def test_command_has_aligned_keyframes_and_dash_options(tmp_path: Path) -> None:
    plan = plan_encode(_info(1280, 720), DEFAULT, segment_seconds=2.0, audio_bitrate_kbps=128)
    command = build_command(
        plan, Path("in.mp4"), tmp_path, ffmpeg_binary="ffmpeg", version="abc123"
    )
    options = _options(command)
    assert command[0] == "ffmpeg"
    assert command[command.index("-i") + 1] == "in.mp4"
    assert options["-sc_threshold"] == "0"
    assert options["-g"] == options["-keyint_min"] == "60"
    assert options["-force_key_frames"] == "expr:gte(t,n_forced*2)"
    assert options["-f"] == "dash"
    assert options["-seg_duration"] == "2"
    assert options["-use_template"] == "1"
    assert options["-use_timeline"] == "0"
    assert options["-init_seg_name"] == "init-abc123-$RepresentationID$.m4s"
    assert options["-media_seg_name"] == "chunk-abc123-$RepresentationID$-$Number%05d$.m4s"
    assert options["-adaptation_sets"] == "id=0,streams=v id=1,streams=a"
    assert options["-progress"] == "pipe:1"
    assert (options["-b:v:0"], options["-b:v:1"], options["-b:v:2"]) == ("3000k", "1500k", "600k")
    assert options["-b:a"] == "128k"
    graph = options["-filter_complex"]
    assert "split=3" in graph
    assert "scale=1280:720" in graph
    assert "scale=640:360" in graph
    assert graph.count("setsar=1") == 3
    assert command.count("-map") == 4
    assert (
        command[-2] == str(tmp_path / "manifest.mpd") or str(tmp_path / "manifest.mpd") in command
    )


def test_command_without_audio_and_single_rung(tmp_path: Path) -> None:
    plan = plan_encode(
        _info(640, 360, audio=False), DEFAULT, segment_seconds=2.0, audio_bitrate_kbps=128
    )
    command = build_command(plan, Path("in.mp4"), tmp_path, ffmpeg_binary="ffmpeg")
    options = _options(command)
    assert options["-adaptation_sets"] == "id=0,streams=v"
    assert "-b:a" not in options
    assert "split" not in options["-filter_complex"]
    assert command.count("-map") == 1


def test_bad_version_tag(tmp_path: Path) -> None:
    plan = plan_encode(_info(640, 360), DEFAULT, segment_seconds=2.0, audio_bitrate_kbps=128)
    with pytest.raises(UsageError):
        build_command(plan, Path("in.mp4"), tmp_path, ffmpeg_binary="ffmpeg", version="../x")
