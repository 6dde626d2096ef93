"""``seedcast simulate``: the benches' options in, the benches' files out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from seedcast.cli import main


def test_simulate_distribution_writes_the_bench_files(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    code = main(
        [
            "simulate",
            "distribution",
            "--clients",
            "3,300",
            "--file-size",
            "1MiB",
            "--strategies",
            "client-server,p2p",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    document = json.loads((out / "results.json").read_text())
    runs = {(run["strategy"], run["clients"]): run for run in document["runs"]}
    assert set(runs) == {("client-server", 3), ("client-server", 300), ("p2p", 3), ("p2p", 300)}
    assert runs[("p2p", 3)]["model"] == "piece"
    assert runs[("p2p", 300)]["model"] == "fluid"
    assert all(run["ratio"] >= 1 - 1e-9 for run in runs.values())
    for name in ("results.csv", "report.html", "distribution_time.png"):
        assert (out / name).stat().st_size > 0


def test_simulate_streaming_writes_the_streaming_report(tmp_path: Path) -> None:
    out = tmp_path / "stream"
    code = main(
        [
            "simulate",
            "streaming",
            "--viewers",
            "300",
            "--rate",
            "20",
            "--video-seconds",
            "10",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    document = json.loads((out / "results.json").read_text())
    by_strategy = {run["strategy"]: run for run in document["runs"]}
    assert by_strategy["cdn"]["finished"] == 300
    assert by_strategy["hybrid"]["finished"] == 300
    assert by_strategy["hybrid"]["cdn_egress_bytes"] < by_strategy["cdn"]["cdn_egress_bytes"]
    assert (out / "report.html").stat().st_size > 0


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "distribution", "--clients", "0"],
        ["simulate", "distribution", "--strategies", "carrier-pigeon"],
        ["simulate", "streaming", "--viewers", "0"],
    ],
)
def test_bad_options_are_one_line_usage_errors(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("seedcast simulate: error:")
    assert "\n" not in error
