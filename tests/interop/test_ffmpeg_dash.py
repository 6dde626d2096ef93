"""ffmpeg's DASH demuxer as a real client of a running `seedcast origin` process.

A short sample is published with `seedcast publish`, the origin serves it on a
free loopback port, and ffmpeg (the imageio-ffmpeg binary) opens the MPD over
HTTP and decodes at least 5 s of every representation.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest
from seedcast.origin.encoder import find_ffmpeg
from seedcast.testing.origin import OriginProcess, make_sample, publish_cli

pytestmark = pytest.mark.slow

DECODE_SECONDS = 6.0


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginProcess]:
    sample = make_sample(
        tmp_path_factory.getbasetemp() / "origin-media" / "sample-8s.mp4", seconds=8, size="960x540"
    )
    data_dir = tmp_path_factory.mktemp("dash-interop")
    result = publish_cli(sample, data_dir, "sample")
    assert result.returncode == 0, result.stderr
    with OriginProcess(data_dir, name="origin-interop") as process:
        yield process
    assert process.process is not None
    assert process.process.returncode == 0


def _decode(ffmpeg: str, url: str, stream: str) -> tuple[float, int, str]:
    """Decode ``stream`` of ``url`` for DECODE_SECONDS; (seconds decoded, frames, stderr)."""
    result = subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            url,
            "-map",
            stream,
            "-t",
            f"{DECODE_SECONDS:g}",
            "-f",
            "null",
            "-",
            "-progress",
            "pipe:1",
            "-nostats",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    times = [int(value) for value in re.findall(r"^out_time_us=(\d+)$", result.stdout, re.M)]
    frames = [int(value) for value in re.findall(r"^frame=(\d+)$", result.stdout, re.M)]
    assert re.search(r"^progress=end$", result.stdout, re.M)
    return (times[-1] / 1e6 if times else 0.0), (frames[-1] if frames else 0), result.stderr


@pytest.mark.parametrize("stream", ["0:v:0", "0:v:1", "0:a:0"], ids=["540p", "360p", "audio"])
def test_ffmpeg_decodes_every_representation_over_http(origin: OriginProcess, stream: str) -> None:
    seconds, frames, errors = _decode(find_ffmpeg(), origin.url("/sample/manifest.mpd"), stream)
    assert seconds >= 5.0
    if ":v:" in stream:
        assert frames >= 5 * 30
    assert errors.strip() == ""


def test_ffmpeg_sees_the_ladder(origin: OriginProcess) -> None:
    result = subprocess.run(
        [find_ffmpeg(), "-hide_banner", "-nostdin", "-i", origin.url("/sample/manifest.mpd")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    description = result.stderr
    assert "Input #0, dash" in description
    assert re.search(r"Video: h264.*960x540", description)
    assert re.search(r"Video: h264.*640x360", description)
    assert re.search(r"Audio: aac.*48000 Hz", description)
    assert "Duration: 00:00:08.00" in description


def test_origin_logged_the_segment_requests(origin: OriginProcess) -> None:
    # The process is alive and answering; its log has no errors from ffmpeg's requests.
    assert not [line for line in origin.log_lines if " ERROR " in line]
