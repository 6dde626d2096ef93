"""The headless player against a real origin process, over real sockets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from seedcast.dash import parse_manifest
from seedcast.http11 import HttpClient
from seedcast.player.abr import make_abr
from seedcast.player.session import PlaybackFailed, PlayerOptions, play
from seedcast.testing.origin import OriginProcess, make_sample, publish_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding a 6 s real sample published as `sample`."""
    base = tmp_path_factory.mktemp("player")
    sample = make_sample(base / "sample.mp4", seconds=6, size="640x360")
    data = base / "data"
    result = publish_cli(sample, data, "sample")
    assert result.returncode == 0, result.stderr
    return data


@pytest.fixture(scope="module")
def origin(published: Path):  # type: ignore[no-untyped-def]
    with OriginProcess(published) as process:
        yield process


@pytest.mark.parametrize("rule", ["throughput", "bba", "bola"])
async def test_plays_the_whole_video_and_counts_every_byte(
    origin: OriginProcess, rule: str
) -> None:
    url = origin.url("/sample/manifest.mpd")
    async with HttpClient() as client:
        manifest = parse_manifest((await client.request("GET", url)).content)
        report = await play(url, make_abr(rule), client, options=PlayerOptions(startup_seconds=1.0))
    assert report.segments == manifest.segment_count
    assert report.played_seconds == pytest.approx(manifest.duration)
    assert report.startup_delay_s is not None
    assert report.bytes_from_edges == report.bytes_from_peers == 0
    # Every byte came from the origin: init + media segments of the chosen renditions.
    expected = 0
    video_ids = {rep.id: rep for rep in manifest.video}
    for index, rendition in enumerate(report.renditions):
        segment = video_ids[rendition].segments[index]
        expected += len(await _get(url, segment.url))
    for rendition in set(report.renditions):
        expected += len(await _get(url, video_ids[rendition].initialization))
    audio = manifest.audio[-1]
    expected += len(await _get(url, audio.initialization))
    for segment in audio.segments[: report.segments]:
        expected += len(await _get(url, segment.url))
    assert report.bytes_from_origin == expected
    assert set(report.served_by) == {origin.name}


async def _get(manifest_url: str, relative: str) -> bytes:
    from urllib.parse import urljoin

    async with HttpClient() as client:
        return (await client.request("GET", urljoin(manifest_url, relative))).content


async def test_seconds_limits_what_is_played(origin: OriginProcess) -> None:
    async with HttpClient() as client:
        report = await play(
            origin.url("/sample/manifest.mpd"),
            make_abr("throughput"),
            client,
            options=PlayerOptions(seconds=2.0, startup_seconds=1.0),
        )
    assert report.segments == 1
    assert report.played_seconds == pytest.approx(2.0)


async def test_missing_video_fails_with_a_clear_error(origin: OriginProcess) -> None:
    async with HttpClient() as client:
        with pytest.raises(PlaybackFailed, match="HTTP 404"):
            await play(origin.url("/nope/manifest.mpd"), make_abr("bba"), client)


async def test_unreachable_server_fails_after_retries_not_a_hang() -> None:
    async with HttpClient(connect_timeout=0.5) as client:
        with trio.fail_after(20):
            with pytest.raises(PlaybackFailed):
                await play("http://127.0.0.1:9/x/manifest.mpd", make_abr("bba"), client)


def test_play_command_prints_the_qoe_json(origin: OriginProcess) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "seedcast",
            "play",
            origin.url("/sample/manifest.mpd"),
            "--json",
            "--seconds",
            "2",
            "--abr",
            "bola",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in (
        "startup_delay_s",
        "stall_count",
        "stall_seconds",
        "avg_bitrate_kbps",
        "switches",
        "bytes_from_peers",
        "bytes_from_edges",
        "bytes_from_origin",
    ):
        assert key in report
    assert report["bytes_from_origin"] > 0
