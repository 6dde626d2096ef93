"""The distribution benchmark's pure parts: run plan, options, message handling, web seed
piece choice, and the report's reference lines and scale verdict."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from seedcast.bench._distribution_plan import (
    DistributionOptions,
    RunSpec,
    check_options,
    plan_runs,
    split_jobs,
    worker_count,
)
from seedcast.bench._distribution_run import _RunState
from seedcast.bench._webseed import choose_piece
from seedcast.bench.report import reference_sentence, scale_sentence, summarise, write_results
from seedcast.errors import UsageError
from seedcast.units import MiB


def test_plan_runs_by_n_then_strategy_with_the_libtorrent_reference_after_p2p() -> None:
    options = DistributionOptions(clients=(2, 8), strategies=("client-server", "p2p"), repeat=2)
    runs = plan_runs(options)
    assert runs[:3] == [
        RunSpec("client-server", 2, 0),
        RunSpec("p2p", 2, 0),
        RunSpec("p2p", 2, 0, "libtorrent"),
    ]
    assert len(runs) == 2 * 2 * 3
    assert runs[-1] == RunSpec("p2p", 8, 1, "libtorrent")
    without = plan_runs(DistributionOptions(clients=(4,), libtorrent=False))
    assert [run.strategy for run in without] == ["client-server", "cdn", "p2p", "hybrid"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"strategies": ("p2p", "carrier-pigeon")}, "carrier-pigeon"),
        ({"clients": (0,)}, "--clients"),
        ({"clients": (251,)}, "--clients"),
        ({"server_up": 0.0}, "--server-up"),
        ({"file_size": 1024}, "--file-size"),
        ({"edges": 0}, "--edges"),
        ({"repeat": 0}, "--repeat"),
    ],
)
def test_bad_options_are_usage_errors(changes: dict[str, Any], message: str) -> None:
    options = DistributionOptions(libtorrent=False, **changes)
    with pytest.raises(UsageError, match=message):
        check_options(options)


def test_edges_are_only_needed_by_cdn_and_hybrid() -> None:
    check_options(DistributionOptions(edges=0, strategies=("p2p",), libtorrent=False))


def test_scenario_uses_the_server_rate_for_edges_unless_told() -> None:
    assert DistributionOptions().scenario(4).edge_up == 4 * MiB
    assert DistributionOptions(edge_up=2 * MiB).scenario(4).edge_up == 2 * MiB


@given(clients=st.integers(1, 250), workers=st.integers(0, 20))
def test_clients_are_spread_over_workers(clients: int, workers: int) -> None:
    count = worker_count(DistributionOptions(workers=workers), clients)
    assert 1 <= count <= clients
    items = [{"index": k} for k in range(clients)]
    jobs = split_jobs(items, count)
    assert sorted(item["index"] for job in jobs for item in job) == list(range(clients))
    assert max(map(len, jobs)) - min(map(len, jobs)) <= 1


def test_run_state_counts_completions_of_counted_workers_only() -> None:
    async def main() -> None:
        state = _RunState(clients=2, expected_workers=2)
        state.counted = {"clients-1"}
        state.on_message({"event": "ready", "worker": "seed"})
        assert not state.all_ready.is_set()
        state.on_message({"event": "ready", "worker": "clients-1"})
        assert state.all_ready.is_set()
        state.on_message({"event": "complete", "worker": "seed", "client": 0, "elapsed": 0.1})
        state.on_message({"event": "progress", "worker": "seed", "bytes": 99})
        state.on_message({"event": "complete", "worker": "clients-1", "client": 1, "elapsed": 2.0})
        assert not state.all_done.is_set()
        state.on_message({"event": "failed", "worker": "clients-1", "client": 2, "reason": "x"})
        assert state.all_done.is_set()
        assert state.completions == {1: 2.0}
        assert state.progress == {}

    trio.run(main)


def test_a_worker_dying_early_ends_the_wait() -> None:
    async def main() -> None:
        state = _RunState(clients=4, expected_workers=2)
        state.on_message({"event": "exit", "worker": "clients-2"})
        assert state.all_ready.is_set()
        assert state.all_done.is_set()
        assert state.errors == ["clients-2 exited before it was ready"]

    trio.run(main)


# -- the web seed's choice --------------------------------------------------------------------


@given(data=st.data(), pieces=st.integers(1, 64))
def test_choose_piece_takes_a_missing_free_piece_of_least_availability(
    data: st.DataObject, pieces: int
) -> None:
    have = bytes(data.draw(st.lists(st.integers(0, 1), min_size=pieces, max_size=pieces)))
    availability = data.draw(st.lists(st.integers(0, 9), min_size=pieces, max_size=pieces))
    busy = set(data.draw(st.lists(st.integers(0, pieces - 1), max_size=pieces)))
    order = list(range(pieces))
    random.Random(data.draw(st.integers())).shuffle(order)
    chosen = choose_piece(have, availability, busy, order)
    eligible = [i for i in range(pieces) if not have[i] and i not in busy]
    if not eligible:
        assert chosen is None
        return
    assert chosen in eligible
    assert availability[chosen] == min(availability[i] for i in eligible)


def test_choose_piece_breaks_ties_by_its_own_order() -> None:
    have = bytes(4)
    assert choose_piece(have, [1, 0, 0, 1], set(), [3, 2, 1, 0]) == 2
    assert choose_piece(have, [1, 0, 0, 1], {2}, [3, 2, 1, 0]) == 1
    assert choose_piece(bytes([1, 1, 1, 1]), [0] * 4, set(), [0, 1, 2, 3]) is None


# -- report: reference lines and the scale verdict ----------------------------------------


def _record(
    strategy: str, clients: int, measured: float, bound: float, **extra: Any
) -> dict[str, Any]:
    return {
        "strategy": strategy,
        "clients": clients,
        "repeat": 0,
        "measured_s": measured,
        "bound_s": bound,
        "ratio": measured / bound,
        "completion_s": [measured / 2, measured],
        **extra,
    }


def test_reference_source_is_its_own_series(tmp_path: Path) -> None:
    records = [
        _record("p2p", 8, 11.0, 10.0, cpu_share=0.2, system_busy=0.5, loadavg_after=1.0),
        _record("p2p", 8, 13.0, 10.0, source="libtorrent", cpu_share=0.1, system_busy=0.95),
        _record("client-server", 8, 10.5, 10.0, bytes={"from_server": 8 * MiB}),
    ]
    summary = summarise(records)
    assert set(summary) == {
        ("p2p", "seedcast", 8),
        ("p2p", "libtorrent", 8),
        ("client-server", "seedcast", 8),
    }
    sentence = reference_sentence("p2p", "libtorrent", summary)
    assert sentence.startswith("p2p (libtorrent) took 1.30x its lower bound")
    assert "0.85 at N=8" in sentence
    scale = scale_sentence(records)
    assert scale is not None
    assert "below 90% busy: 8" in scale
    assert "p2p (libtorrent) N=8" in scale
    write_results(tmp_path, {"seed": 1}, records, title="t", errors=["cdn N=4: boom"])
    html = (tmp_path / "report.html").read_text()
    assert "p2p took 1.10x its lower bound" in html
    assert "p2p (libtorrent) took 1.30x" in html
    assert "cdn N=4: boom" in html
    assert (tmp_path / "scale.png").read_bytes().startswith(b"\x89PNG")
    rows = list(csv.DictReader((tmp_path / "results.csv").read_text().splitlines()))
    assert [row["source"] for row in rows] == ["seedcast", "libtorrent", "seedcast"]
    assert json.loads((tmp_path / "results.json").read_text())["errors"] == ["cdn N=4: boom"]


def test_records_without_cpu_figures_still_make_a_report(tmp_path: Path) -> None:
    write_results(tmp_path, {}, [_record("cdn", 2, 1.0, 1.0)], title="t")
    assert not (tmp_path / "scale.png").exists()
    assert "cdn took 1.00x its lower bound" in (tmp_path / "report.html").read_text()
    assert scale_sentence([_record("cdn", 2, 1.0, 1.0)]) is None


def test_cdn_with_fewer_clients_than_edges_is_explained(tmp_path: Path) -> None:
    records = [_record("cdn", 1, 4.0, 2.0), _record("cdn", 4, 8.0, 8.0)]
    write_results(tmp_path, {"edges": 2}, records, title="t")
    html = (tmp_path / "report.html").read_text()
    assert "cdn with N &lt; E (N=1, E=2)" in html
    write_results(tmp_path, {"edges": 2}, records[1:], title="t")
    assert "N &lt; E" not in (tmp_path / "report.html").read_text()
