"""``seedcast bench streaming`` on a small scenario: real clusters, invariants of the numbers.

Three viewers arriving as a Poisson process watch an 8 s video, once
straight from the edges (cdn) and once through their own agents (hybrid).
Nothing here asserts speed: what is checked holds whatever the machine's
load -- every byte a player got is a byte of the media it played, the
sources add up, the edges sent at least what the players say came from
them, shares are fractions, the report files exist and parse, and no
process outlives the run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from seedcast.bench.streaming import StreamingOptions, plan_viewers, run_benchmark
from seedcast.dash import parse_manifest
from seedcast.launcher.state import pid_alive

pytestmark = pytest.mark.slow

OPTIONS = StreamingOptions(
    viewers=3,
    rate=2.0,
    video_seconds=8.0,
    max_buffer=6.0,
    workers=1,
    seed=3,
    block=190,
    run_timeout=45.0,
)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("streaming")
    workdir = tmp_path_factory.mktemp("streaming-work")
    records, interrupted = run_benchmark(OPTIONS, out, workdir=workdir)
    assert not interrupted
    return out, workdir, records


def _media_bytes(library: Path, renditions: list[str]) -> int:
    """Bytes of what a player fetched for ``renditions`` (the video rendition of each
    segment): every init it used once, each video segment, and the audio alongside."""
    folder = library / "library" / "sample"
    manifest = parse_manifest((folder / "manifest.mpd").read_bytes())
    video = {representation.id: representation for representation in manifest.video}
    tracks = [(video[rendition], number) for number, rendition in enumerate(renditions)]
    if manifest.audio:
        tracks += [(manifest.audio[-1], number) for number in range(len(renditions))]
    total = 0
    initialised: set[str] = set()
    for representation, number in tracks:
        if representation.id not in initialised and representation.initialization:
            initialised.add(representation.id)
            total += (folder / representation.initialization).stat().st_size
        total += (folder / representation.segments[number].url).stat().st_size
    return total


def test_every_viewer_of_both_strategies_finished(
    small_run: tuple[Path, Path, list[dict[str, Any]]],
) -> None:
    _, _, records = small_run
    assert [record["strategy"] for record in records] == ["cdn", "hybrid"]
    for record in records:
        assert "error" not in record, record
        assert record["viewers"] == 3
        assert record["finished"] == 3, record["failures"]
        assert not record["timed_out"]
        assert [row["viewer"] for row in record["per_viewer"]] == [1, 2, 3]
        arrivals = [row["arrival_s"] for row in record["per_viewer"]]
        assert arrivals == [viewer.arrival for viewer in plan_viewers(OPTIONS)]
        for row in record["per_viewer"]:
            assert row["played_s"] == pytest.approx(OPTIONS.video_seconds, abs=0.01)
            assert row["startup_s"] is not None
            assert row["startup_s"] >= 0
            # Arrival to first frame includes the manifest (and the agent's start).
            assert row["join_s"] >= row["startup_s"]


def test_bytes_add_up(small_run: tuple[Path, Path, list[dict[str, Any]]]) -> None:
    _, workdir, records = small_run
    library = workdir / "library" / "data"
    for record in records:
        received = record["bytes"]
        assert received["peers"] + received["edges"] + received["origin"] == received["total"]
        for source in ("peers", "edges", "origin"):
            assert sum(row[f"bytes_{source}"] for row in record["per_viewer"]) == received[source]
        for row in record["per_viewer"]:
            got = row["bytes_peers"] + row["bytes_edges"] + row["bytes_origin"]
            # Every byte a player got is a byte of the media it played, whatever the source.
            assert got == _media_bytes(library, row["renditions"]), row["viewer"]
        # Two independent counts: the edges' own counters and the players' accounting.
        assert record["cdn_egress_from"] == "edge metrics"
        assert record["edge_egress_bytes"] >= received["edges"]
        assert record["cdn_egress_bytes"] >= received["edges"] + received["origin"]
    cdn, hybrid = records
    assert cdn["bytes"]["peers"] == 0
    agents = hybrid["agents"]
    # Pieces counted as fetched from peers were sent by some viewer (piece data up to
    # the end of its file, so they are at least what the players were handed).
    assert agents["uploaded"] >= agents["fetched_from_peers"] >= hybrid["bytes"]["peers"]
    assert agents["hash_failures"] == 0
    # What the agents downloaded, their players played (nothing fetched twice).
    assert agents["downloaded"] >= agents["played"] > 0
    assert hybrid["download_ratio_max"] is not None
    assert set(hybrid["wasted_bytes"]) == {"duplicate", "hash", "skipped"}


def test_shares_and_ratios_are_fractions(
    small_run: tuple[Path, Path, list[dict[str, Any]]],
) -> None:
    _, _, records = small_run
    for record in records:
        assert 0.0 <= record["p2p_share"] <= 1.0
        assert record["stall_ratio"] >= 0.0
        assert record["cdn_offload"] <= 1.0
        assert record["startup_median_s"] <= record["startup_p95_s"]
        assert record["join_median_s"] <= record["join_p95_s"]
        assert 0 < record["cpu_share"] <= 1.0
    assert records[0]["p2p_share"] == 0.0


def test_report_files_exist_and_parse(small_run: tuple[Path, Path, list[dict[str, Any]]]) -> None:
    out, _, records = small_run
    document = json.loads((out / "results.json").read_text())
    assert document["config"]["viewers"] == 3
    assert document["config"]["seed"] == 3
    assert [run["strategy"] for run in document["runs"]] == ["cdn", "hybrid"]
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert [row["strategy"] for row in rows] == ["cdn", "hybrid"]
    assert float(rows[1]["p2p_share"]) == pytest.approx(records[1]["p2p_share"])
    assert int(rows[0]["bytes_total"]) == records[0]["bytes"]["total"]
    report = (out / "report.html").read_text()
    assert "Quality of experience" in report
    assert "P2P share at V=3" in report
    for name in ("startup_cdf.png", "bytes_by_source.png", "per_viewer.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{name}"' in report


def test_no_process_outlives_the_run(small_run: tuple[Path, Path, list[dict[str, Any]]]) -> None:
    _, _, records = small_run
    for record in records:
        assert record["pids"]
        assert not [pid for pid in record["pids"] if pid_alive(pid)]
