"""The simulator against a real ``bench distribution`` run of the same settings (N = 4, 8).

Real clusters (every strategy, F = 4 MiB, the bench's default caps, which
leave the machine mostly idle: the caps decide the time, not the CPU), then
``seedcast simulate``'s piece level at the same settings: each simulated time
within 10% of the measured one and never below the bound. About a minute.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from seedcast.bench.distribution import DistributionOptions, run_benchmark
from seedcast.sim.calibration import TOLERANCE
from seedcast.sim.commands import simulate_record
from seedcast.units import MiB

pytestmark = pytest.mark.slow

OPTIONS = DistributionOptions(file_size=4 * MiB, clients=(4, 8), libtorrent=False, seed=1)


def test_simulation_agrees_with_the_real_run_at_small_n(tmp_path: Path) -> None:
    records, interrupted = run_benchmark(OPTIONS, tmp_path / "real")
    assert not interrupted
    measured = [record for record in records if "measured_s" in record]
    assert len(measured) == 8, [record.get("error") for record in records]
    misses = []
    for record in measured:
        simulated = simulate_record(record["strategy"], OPTIONS, record["clients"], model="piece")
        assert simulated["measured_s"] >= simulated["bound_s"] * (1 - 1e-9)
        error = simulated["measured_s"] / record["measured_s"] - 1
        if abs(error) > TOLERANCE:
            misses.append(f"{record['strategy']} N={record['clients']}: {error:+.1%}")
    assert not misses, misses
