from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.bench.theory import Scenario, bound, client_server_bound, p2p_bound
from seedcast.units import MiB


def test_textbook_numbers() -> None:
    # F = 64 MiB, u_s = 4 MiB/s, u_i = 1 MiB/s, d = 8 MiB/s.
    assert client_server_bound(64 * MiB, 32, 4 * MiB, [8 * MiB] * 32) == 512.0
    assert p2p_bound(64 * MiB, 4 * MiB, [1 * MiB] * 32, [8 * MiB] * 32) == pytest.approx(
        64 * 32 / 36
    )
    assert p2p_bound(64 * MiB, 4 * MiB, [1 * MiB], [8 * MiB]) == 16.0  # F/u_s dominates


def test_cdn_uses_the_edges_combined_upload() -> None:
    scenario = Scenario(
        file_size=64 * MiB, clients=16, server_up=4 * MiB, peer_up=MiB, peer_down=8 * MiB, edges=2
    )
    assert bound("cdn", scenario) == 16 * 64 / 8
    assert bound("hybrid", scenario) < bound("p2p", scenario)


@given(
    clients=st.integers(min_value=1, max_value=512),
    server_up=st.floats(min_value=1e3, max_value=1e9),
    peer_up=st.floats(min_value=1e3, max_value=1e9),
    peer_down=st.floats(min_value=1e3, max_value=1e9),
)
def test_p2p_never_needs_longer_than_client_server(
    clients: int, server_up: float, peer_up: float, peer_down: float
) -> None:
    scenario = Scenario(
        file_size=MiB, clients=clients, server_up=server_up, peer_up=peer_up, peer_down=peer_down
    )
    assert bound("p2p", scenario) <= bound("client-server", scenario) * (1 + 1e-9)


def test_client_server_grows_linearly_while_p2p_flattens() -> None:
    def at(strategy: str, clients: int) -> float:
        return bound(strategy, Scenario(64 * MiB, clients, 4 * MiB, MiB, 8 * MiB))

    assert at("client-server", 64) == 2 * at("client-server", 32)
    assert at("p2p", 64) < 1.2 * at("p2p", 32)


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        bound("carrier-pigeon", Scenario(1, 1, 1, 1, 1))


def test_report_files_are_written_and_parse(tmp_path: Path) -> None:
    import csv
    import json

    from seedcast.bench.report import verdict, write_results

    records = [
        {
            "strategy": "p2p",
            "clients": n,
            "repeat": 0,
            "measured_s": 1.1 * n,
            "bound_s": n * 1.0,
            "ratio": 1.1,
            "completion_s": [0.5 * n, 1.1 * n],
            "source": "seedcast",
        }
        for n in (1, 2, 4)
    ]
    write_results(tmp_path, {"seed": 7}, records, title="test")
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["config"]["seed"] == 7
    assert len(document["runs"]) == 3
    rows = list(csv.DictReader((tmp_path / "results.csv").read_text().splitlines()))
    assert [row["clients"] for row in rows] == ["1", "2", "4"]
    for name in ("distribution_time.png", "completion_cdf.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
    assert "p2p took 1.10x its lower bound" in (tmp_path / "report.html").read_text()
    assert "within 10%" in verdict("cdn", [1.05])
