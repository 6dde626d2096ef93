"""``seedcast bench distribution`` on a small scenario: real clusters, invariants of the numbers.

N = 2 and 4 clients, F = 4 MiB, fast caps; every strategy. These are not
speed assertions: a token bucket makes some results impossible (a client
faster than its download cap, a strategy faster than its bound), whatever
the machine's load.
"""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from seedcast.bench.distribution import DistributionOptions, run_benchmark
from seedcast.launcher.state import pid_alive
from seedcast.testing.processes import processes_mentioning
from seedcast.units import KiB, MiB

pytestmark = pytest.mark.slow

OPTIONS = DistributionOptions(
    file_size=4 * MiB,
    clients=(2, 4),
    server_up=16 * MiB,
    peer_up=4 * MiB,
    peer_down=16 * MiB,
    edges=2,
    libtorrent=False,
    seed=7,
    run_timeout=45.0,
)
BURST_SECONDS = 0.05
"""A token bucket left idle holds this many seconds of its rate (seedcast.ratelimit)."""
INGRESS_SLACK = 128 * KiB
"""Bytes a client may have received but not yet charged to its bucket when it finishes."""


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    from rich.console import Console

    out = tmp_path_factory.mktemp("distribution")
    records, interrupted = run_benchmark(
        OPTIONS, out, workdir=out / "work", console=Console(file=io.StringIO())
    )
    assert not interrupted
    return out, records


def test_every_run_finishes(small_run: tuple[Path, list[dict[str, Any]]]) -> None:
    _, records = small_run
    assert [record.get("error") for record in records] == [None] * 8
    assert {(r["strategy"], r["clients"]) for r in records} == {
        (strategy, n) for strategy in ("client-server", "cdn", "p2p", "hybrid") for n in (2, 4)
    }
    for record in records:
        assert record["unfinished"] == 0, record
        assert len(record["completion_s"]) == record["clients"]
        assert record["measured_s"] == max(record["completion_s"])


def test_no_client_finishes_faster_than_its_download_cap(
    small_run: tuple[Path, list[dict[str, Any]]],
) -> None:
    _, records = small_run
    d = OPTIONS.peer_down
    earliest = (OPTIONS.file_size - BURST_SECONDS * d - INGRESS_SLACK) / d
    for record in records:
        assert record["min_client_s"] == OPTIONS.file_size / d
        assert min(record["completion_s"]) >= earliest, record


def test_no_strategy_beats_its_bound(small_run: tuple[Path, list[dict[str, Any]]]) -> None:
    _, records = small_run
    for record in records:
        # Idle buckets start with BURST_SECONDS of credit: the only way under the bound.
        assert record["measured_s"] >= record["bound_s"] - BURST_SECONDS - 0.01, record
        assert record["ratio"] == pytest.approx(record["measured_s"] / record["bound_s"])


def test_client_server_time_grows_with_n(small_run: tuple[Path, list[dict[str, Any]]]) -> None:
    _, records = small_run
    times = {r["clients"]: r["measured_s"] for r in records if r["strategy"] == "client-server"}
    assert times[4] > times[2]


def test_hybrid_peers_use_both_the_swarm_and_the_edges(
    small_run: tuple[Path, list[dict[str, Any]]],
) -> None:
    _, records = small_run
    for record in records:
        totals = record["bytes"]
        if record["strategy"] == "hybrid":
            assert totals["from_edge"] > 0
            assert totals["from_peers"] > 0
            assert totals.get("edge_hash_failures", 0) == 0
        elif record["strategy"] == "p2p":
            assert totals["from_peers"] >= record["clients"] * OPTIONS.file_size
            assert "from_edge" not in totals
        else:
            assert totals["from_server"] == record["clients"] * OPTIONS.file_size


def test_report_files_exist_and_parse(small_run: tuple[Path, list[dict[str, Any]]]) -> None:
    out, records = small_run
    document = json.loads((out / "results.json").read_text())
    assert document["config"]["seed"] == 7
    assert document["config"]["file_size"] == OPTIONS.file_size
    assert len(document["runs"]) == len(records)
    for run in document["runs"]:
        for key in ("strategy", "clients", "measured_s", "bound_s", "ratio"):
            assert key in run
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert len(rows) == len(records)
    assert {float(row["ratio"]) > 0 for row in rows} == {True}
    for name in ("distribution_time.png", "completion_cdf.png", "scale.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    report = (out / "report.html").read_text()
    for strategy in ("client-server", "cdn", "p2p", "hybrid"):
        assert f"<li>{strategy} took " in report


def test_every_process_is_stopped(small_run: tuple[Path, list[dict[str, Any]]]) -> None:
    _, records = small_run
    pids = [pid for record in records for pid in record["pids"]]
    # origin, 2 workers | origin, 2 edges, 2 workers | tracker, seed, 2 workers | + origin, 2 edges
    assert len(pids) == 2 * (3 + 5 + 4 + 7)
    assert [pid for pid in pids if pid_alive(pid)] == []


def test_libtorrent_reference_runs_under_the_same_caps(tmp_path: Path) -> None:
    pytest.importorskip("libtorrent")
    from rich.console import Console

    options = DistributionOptions(
        file_size=4 * MiB,
        clients=(2,),
        server_up=16 * MiB,
        peer_up=4 * MiB,
        peer_down=16 * MiB,
        strategies=("p2p",),
        libtorrent=True,
        run_timeout=45.0,
    )
    records, _ = run_benchmark(options, tmp_path, console=Console(file=io.StringIO()))
    (ours,) = [r for r in records if r["source"] == "seedcast"]
    (theirs,) = [r for r in records if r["source"] == "libtorrent"]
    for record in (ours, theirs):
        assert record["unfinished"] == 0
        assert record["measured_s"] >= record["bound_s"] - BURST_SECONDS - 0.01
    assert theirs["bound_s"] == ours["bound_s"]
    assert "p2p (libtorrent) took" in (tmp_path / "report.html").read_text()


def test_ctrl_c_stops_cleanly_and_keeps_what_finished(tmp_path: Path) -> None:
    out = tmp_path / "out"
    work = tmp_path / "work"
    command = [
        sys.executable, "-m", "seedcast", "bench", "distribution",
        "--file-size", "2MiB", "--clients", "2", "--strategies", "client-server,p2p",
        "--no-libtorrent", "--server-up", "1MiB/s", "--peer-up", "256KiB/s",
        "--peer-down", "16MiB/s", "--out", str(out), "--workdir", str(work),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        assert process.stderr is not None
        seen = []
        for raw in process.stderr:  # the first run's result line, then Ctrl-C mid-second run
            line = raw.decode(errors="replace")
            seen.append(line)
            if "client-server N=2" in line and "ratio" in line:
                break
        else:
            pytest.fail("no result line: " + "".join(seen[-5:]))
        process.send_signal(signal.SIGINT)
        seen.append(process.stderr.read().decode(errors="replace"))
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
    assert code == 130, "".join(seen[-5:])
    document = json.loads((out / "results.json").read_text())
    assert [(run["strategy"], run["clients"]) for run in document["runs"]] == [("client-server", 2)]
    assert "client-server took" in (out / "report.html").read_text()
    assert processes_mentioning(str(work)) == []
