"""The simulator against a real ``bench distribution`` run of the same settings (N = 4, 8).

Real clusters with the bench's default caps, which leave the machine mostly
idle (the caps decide the time, not the CPU), then ``seedcast simulate``'s
piece level at the same settings: each simulated time within 10% of the
measured one and never below the bound. client-server and cdn with a 4 MiB
file; p2p and hybrid with the standard 16 MiB: with 4 MiB their runs last
1-5 s, and the real swarm's fixed start-up cost (issue #18 item 6) puts
real p2p 6-11% behind the simulation at N = 4 and real hybrid 4-10% ahead
of it, run to run: the test would sit on the tolerance. About 90 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from seedcast.bench.distribution import DistributionOptions, run_benchmark
from seedcast.sim.calibration import TOLERANCE
from seedcast.sim.commands import simulate_record
from seedcast.units import MiB

pytestmark = pytest.mark.slow

SMALL = DistributionOptions(
    file_size=4 * MiB,
    clients=(4, 8),
    strategies=("client-server", "cdn"),
    libtorrent=False,
    seed=1,
)
SWARMS = DistributionOptions(
    file_size=16 * MiB, clients=(4, 8), strategies=("p2p", "hybrid"), libtorrent=False, seed=1
)


@pytest.mark.parametrize("options", [SMALL, SWARMS], ids=["http-4MiB", "swarms-16MiB"])
def test_simulation_agrees_with_the_real_run_at_small_n(
    options: DistributionOptions, tmp_path: Path
) -> None:
    records, interrupted = run_benchmark(options, tmp_path / "real")
    assert not interrupted
    measured = [record for record in records if "measured_s" in record]
    assert len(measured) == 2 * len(options.strategies), [r.get("error") for r in records]
    misses = []
    for record in measured:
        simulated = simulate_record(record["strategy"], options, record["clients"], model="piece")
        assert simulated["measured_s"] >= simulated["bound_s"] * (1 - 1e-9)
        error = simulated["measured_s"] / record["measured_s"] - 1
        if abs(error) > TOLERANCE:
            misses.append(f"{record['strategy']} N={record['clients']}: {error:+.1%}")
    assert not misses, misses
