"""The streaming benchmark's pure parts: arrivals, percentiles, the per-strategy record,
its cluster file, options, goal sentences, and its place in the shared report."""

from __future__ import annotations

import csv
import itertools
import json
import random
import statistics
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.bench._streaming_run import Addresses, _RunState, cluster_toml
from seedcast.bench.report import write_results
from seedcast.bench.streaming import (
    StreamingOptions,
    check_options,
    flash_arrivals,
    goal_sentences,
    percentile,
    plan_viewers,
    poisson_arrivals,
    summarise_viewers,
)
from seedcast.config import load_config
from seedcast.errors import UsageError

# -- arrivals ------------------------------------------------------------------------------


def test_arrivals_are_seeded_and_start_at_zero() -> None:
    first = poisson_arrivals(20, 2.0, random.Random(5))
    assert first == poisson_arrivals(20, 2.0, random.Random(5))
    assert first != poisson_arrivals(20, 2.0, random.Random(6))
    assert first[0] == 0.0
    assert first == sorted(first)


def test_inter_arrival_times_have_mean_one_over_rate() -> None:
    arrivals = poisson_arrivals(20_001, 4.0, random.Random(1))
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert statistics.fmean(gaps) == pytest.approx(0.25, rel=0.03)
    # Exponential: the standard deviation equals the mean.
    assert statistics.pstdev(gaps) == pytest.approx(0.25, rel=0.05)


@given(st.integers(0, 60), st.floats(0.01, 100), st.integers(0, 2**32))
def test_arrivals_are_ordered_and_counted(count: int, rate: float, seed: int) -> None:
    arrivals = poisson_arrivals(count, rate, random.Random(seed))
    assert len(arrivals) == count
    assert all(earlier <= later for earlier, later in itertools.pairwise(arrivals))


def test_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        poisson_arrivals(3, 0.0, random.Random(1))


def test_both_strategies_see_the_same_viewers() -> None:
    options = StreamingOptions(viewers=12, seed=9)
    viewers = plan_viewers(options)
    assert viewers == plan_viewers(options)
    assert [viewer.index for viewer in viewers] == list(range(1, 13))
    assert {viewer.region for viewer in viewers} <= {"eu", "us"}


# -- figures -------------------------------------------------------------------------------


def test_a_flash_crowd_arrives_within_its_span() -> None:
    arrivals = flash_arrivals(50, 2.0, random.Random(4))
    assert len(arrivals) == 50
    assert arrivals[0] == 0.0
    assert arrivals == sorted(arrivals)
    assert arrivals[-1] <= 2.0
    options = StreamingOptions(viewers=50, arrivals="flash", flash_seconds=2.0)
    assert max(viewer.arrival for viewer in plan_viewers(options)) <= 2.0
    with pytest.raises(ValueError, match="seconds"):
        flash_arrivals(3, -1.0, random.Random(0))


def test_percentile_interpolates() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(map(float, range(101))), 95) == pytest.approx(95.0)
    assert percentile([4.0, 1.0, 2.0, 3.0], 100) == 4.0


def _report(peers: int, edges: int, *, stall: float = 0.0, startup: float | None = 0.5) -> Any:
    return {
        "startup_delay_s": startup,
        "stall_count": 1 if stall else 0,
        "stall_seconds": stall,
        "played_seconds": 10.0,
        "avg_bitrate_kbps": 500.0,
        "switches": 1,
        "bytes_from_peers": peers,
        "bytes_from_edges": edges,
        "bytes_from_origin": 0,
        "renditions": ["1", "0"],
    }


def _agent(
    uploaded: int, peer: int, edge: int, downloaded: int = 0, played: int = 0
) -> dict[str, Any]:
    return {
        "downloaded": downloaded,
        "played": played,
        "wasted": {"duplicate": downloaded - played, "hash": 0, "skipped": 0},
        "fetched": {"peer": peer, "edge": edge, "origin": 0, "cache": 0},
        "uploaded": uploaded,
        "edge_runs": 2,
        "edge_failures": 0,
        "hash_failures": 0,
        "bans": 0,
    }


def test_a_strategy_record_from_viewer_messages() -> None:
    results = [
        {"event": "done", "viewer": 1, "region": "eu", "arrival_s": 0.0, "join_to_play_s": 0.7,
         "report": _report(0, 1000), "agent": _agent(600, 0, 1100, 1010, 1000)},
        {"event": "done", "viewer": 2, "region": "us", "arrival_s": 1.0, "join_to_play_s": 1.5,
         "report": _report(900, 100, stall=1.0, startup=1.2),
         "agent": _agent(0, 950, 100, 1100, 1000)},
        {"event": "failed", "viewer": 3, "region": "eu", "arrival_s": 2.0, "reason": "stopped",
         "join_to_play_s": None, "report": None},
    ]  # fmt: skip
    record = summarise_viewers("hybrid", results, viewers=3, edge_egress=1250, origin_egress=99)
    assert record["finished"] == 2
    assert record["failed"] == 1
    assert record["failures"] == ["stopped"]
    assert record["bytes"] == {"peers": 900, "edges": 1100, "origin": 0, "total": 2000}
    assert record["p2p_share"] == pytest.approx(0.45)
    assert record["stall_ratio"] == pytest.approx(1.0 / 20.0)
    assert record["stalled_viewers"] == 1
    assert record["startup_median_s"] == pytest.approx(0.85)
    assert record["join_p95_s"] == pytest.approx(0.7 + 0.95 * 0.8)
    assert record["cdn_egress_bytes"] == 1250
    assert record["cdn_egress_from"] == "edge metrics"
    assert record["cdn_offload"] == pytest.approx(1 - 1250 / 2000)
    assert record["agents"]["uploaded"] == 600
    assert record["agents"]["fetched_from_edges"] == 1200
    assert [row["outcome"] for row in record["per_viewer"]] == ["done", "done", "failed"]
    assert record["per_viewer"][2]["bytes_peers"] == 0
    # Downloaded per played byte: each viewer's, the worst and the median; waste by reason.
    assert record["download_ratio_max"] == pytest.approx(1.1)
    assert record["download_ratio_median"] == pytest.approx(1.055)
    assert record["wasted_bytes"] == {"duplicate": 110, "hash": 0, "skipped": 0}
    assert record["per_viewer"][0]["download_ratio"] == pytest.approx(1.01)
    assert record["per_viewer"][2]["download_ratio"] is None


def test_without_edge_counters_the_players_bytes_stand_for_cdn_egress() -> None:
    results = [{"event": "done", "viewer": 1, "report": _report(0, 700), "join_to_play_s": 0.2}]
    record = summarise_viewers("cdn", results, viewers=1)
    assert record["cdn_egress_bytes"] == 700
    assert record["cdn_egress_from"] == "players"
    assert record["p2p_share"] == 0.0
    assert "agents" not in record


def test_nothing_played_gives_no_ratios() -> None:
    record = summarise_viewers("cdn", [], viewers=2)
    assert record["failed"] == 2
    assert record["stall_ratio"] is None
    assert record["p2p_share"] is None
    assert record["startup_median_s"] is None


def test_goal_sentences_judge_the_largest_v() -> None:
    cdn = {"strategy": "cdn", "viewers": 50, "stall_ratio": 0.01, "p2p_share": 0.0}
    hybrid = {
        "strategy": "hybrid",
        "viewers": 50,
        "stall_ratio": 0.005,
        "p2p_share": 0.85,
        "startup_median_s": 1.2,
        "join_median_s": 1.4,
    }
    small = {**hybrid, "viewers": 5, "p2p_share": 0.1}
    sentences = goal_sentences([small, cdn, hybrid])
    assert sentences[0].startswith("P2P share at V=50: hybrid carried 85.0%")
    assert sentences[0].endswith("met).")
    assert "NOT" not in " ".join(sentences)
    worse = goal_sentences([cdn, {**hybrid, "stall_ratio": 0.02, "startup_median_s": 2.5}])
    assert "no worse: NOT met" in worse[1]
    assert "NOT met" in worse[2]
    assert goal_sentences([cdn]) == []
    timed = goal_sentences(
        [
            {**cdn, "startup_median_s": 0.1, "startup_p90_s": 0.2},
            {**hybrid, "startup_median_s": 0.11, "startup_p90_s": 0.3, "download_ratio_max": 1.05,
             "download_ratio_median": 1.01, "wasted_bytes": {"duplicate": 5}},
        ]
    )  # fmt: skip
    text = " ".join(timed)
    assert "worst viewer 1.050, median 1.010 (goal <= 1.02: NOT met)" in text
    assert "Startup median at V=50: hybrid 0.11 s = 1.10x cdn-only's 0.10 s" in text
    assert "(goal <= 1.2x: met)" in text
    assert "Startup p90 at V=50: hybrid 0.30 s = 1.50x" in text


def test_run_state_counts_viewers_and_notices_a_worker_that_died() -> None:
    state = _RunState(viewers=2, workers=1)
    state.on_message({"worker": "viewers-1", "event": "ready"})
    assert state.all_ready.is_set()
    state.on_message({"worker": "viewers-1", "event": "joined", "viewer": 1})
    state.on_message({"worker": "viewers-1", "event": "done", "viewer": 1, "report": None})
    assert not state.all_done.is_set()
    state.on_message({"worker": "viewers-1", "event": "exit"})
    assert state.all_done.is_set()
    assert state.errors == ["viewers-1 exited before its viewers finished"]
    stopped = _RunState(viewers=1, workers=1, stopping=True)
    stopped.on_message({"worker": "w", "event": "ready"})
    stopped.on_message({"worker": "w", "event": "exit"})
    assert stopped.errors == []
    assert stopped.all_exited.is_set()


# -- options and the cluster file ----------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"strategies": ("cdn", "carrier-pigeon")}, "carrier-pigeon"),
        ({"strategies": ()}, "--strategy"),
        ({"viewers": 0}, "--viewers"),
        ({"viewers": 241}, "--viewers"),
        ({"rate": 0.0}, "--rate"),
        ({"edges": 0}, "--edges"),
        ({"abr": "guess"}, "--abr"),
        ({"block": 250}, "--block"),
        ({"video_seconds": 1.0}, "--video-seconds"),
        ({"arrivals": "stampede"}, "--arrivals"),
        ({"flash_seconds": -1.0}, "--flash"),
    ],
)
def test_bad_options_are_usage_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        check_options(StreamingOptions(**changes))


def test_the_cluster_file_is_a_valid_config(tmp_path: Path) -> None:
    options = StreamingOptions(edges=3, edge_up=4_000_000, max_connections=12, block=150)
    addresses = Addresses(options.block, options.port)
    path = tmp_path / "cluster.toml"
    path.write_text(cluster_toml(options, addresses, tmp_path / "data", tmp_path / "run"))
    config = load_config(path)
    assert [edge.listen for edge in config.edges] == [
        "127.0.152.1:18080",
        "127.0.152.2:18080",
        "127.0.152.3:18080",
    ]
    assert [edge.region for edge in config.edges] == ["eu", "us", "eu"]
    assert {edge.upload for edge in config.edges} == {4_000_000}
    assert config.dns.server == addresses.dns
    assert config.region("us").contains(addresses.viewer_source(1, 7))
    assert config.peers.max_connections == 12
    assert config.tracker.announce_url == addresses.tracker


# -- the report ----------------------------------------------------------------------------


def _streaming_record(strategy: str, share: float) -> dict[str, Any]:
    results = [
        {"event": "done", "viewer": 1, "arrival_s": 0.0, "join_to_play_s": 0.4,
         "report": _report(round(1000 * share), round(1000 * (1 - share)))},
    ]  # fmt: skip
    record = summarise_viewers(strategy, results, viewers=1, edge_egress=500)
    record.update(system_busy=0.3, cpu_share=0.1, loadavg_after=1.0)
    return record


def test_streaming_records_make_their_own_report(tmp_path: Path) -> None:
    records = [_streaming_record("cdn", 0.0), _streaming_record("hybrid", 0.9)]
    write_results(tmp_path, {"viewers": 1}, records, title="s", errors=["hybrid V=9: boom"])
    rows = list(csv.DictReader((tmp_path / "results.csv").read_text().splitlines()))
    assert [row["strategy"] for row in rows] == ["cdn", "hybrid"]
    assert float(rows[1]["p2p_share"]) == pytest.approx(0.9)
    assert int(rows[1]["bytes_peers"]) == 900
    page = (tmp_path / "report.html").read_text()
    assert "P2P share at V=1: hybrid carried 90.0%" in page
    assert "hybrid V=9: boom" in page
    for name in ("startup_cdf.png", "bytes_by_source.png", "per_viewer.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
    assert not (tmp_path / "distribution_time.png").exists()
    assert len(json.loads((tmp_path / "results.json").read_text())["runs"]) == 2


def test_a_folder_with_both_kinds_keeps_the_distribution_report(tmp_path: Path) -> None:
    distribution = {
        "strategy": "p2p",
        "clients": 4,
        "repeat": 0,
        "measured_s": 11.0,
        "bound_s": 10.0,
        "ratio": 1.1,
        "completion_s": [5.0, 11.0],
    }
    write_results(tmp_path, {}, [distribution, _streaming_record("hybrid", 0.5)], title="t")
    assert "p2p took 1.10x its lower bound" in (tmp_path / "report.html").read_text()
    rows = list(csv.DictReader((tmp_path / "results.csv").read_text().splitlines()))
    assert [row["strategy"] for row in rows] == ["p2p"]
    streaming = list(csv.DictReader((tmp_path / "streaming-results.csv").read_text().splitlines()))
    assert [row["strategy"] for row in streaming] == ["hybrid"]
    assert (tmp_path / "streaming-report.html").is_file()
    assert (tmp_path / "streaming-startup_cdf.png").is_file()
    assert len(json.loads((tmp_path / "results.json").read_text())["runs"]) == 2


def test_errors_come_out_of_their_nursery_groups() -> None:
    from seedcast.bench.streaming import _run_sync
    from seedcast.errors import SeedcastError

    def fails(error: BaseException) -> None:
        raise error

    nested = BaseExceptionGroup("outer", [BaseExceptionGroup("inner", [KeyboardInterrupt()])])
    with pytest.raises(KeyboardInterrupt):
        _run_sync(fails, nested)
    with pytest.raises(SeedcastError, match="workers did not start"):
        _run_sync(fails, ExceptionGroup("g", [SeedcastError("workers did not start")]))
    with pytest.raises(ExceptionGroup):
        _run_sync(fails, ExceptionGroup("g", [SeedcastError("a"), ValueError("b")]))
    assert _run_sync(lambda value: value * 2, 21) == 42
