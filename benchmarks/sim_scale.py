"""The simulator at scale: wall time and peak memory of the two largest scenarios.

    .venv/bin/python benchmarks/sim_scale.py [--viewers 100000] [--peers 1000000]

1. 10^5 streaming viewers of a 10-minute video (hybrid, Poisson arrivals at
   200 per second, the streaming bench's caps), the flow model.
2. 10^6 peers in file distribution (p2p, 16 MiB, the distribution bench's
   caps), the flow model.

Each runs in a fresh process (so peak memory is its own) pinned to one core
when the OS allows; the goal is under 60 s each. The baseline is the bound:
the run prints its simulated time beside the theoretical bound.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _streaming(viewers: int) -> dict[str, object]:
    from seedcast.sim.streaming import StreamSettings, simulate_streaming

    settings = StreamSettings(
        viewers=viewers, strategy="hybrid", rate=200.0, video_seconds=600.0, dt=0.25
    )
    outcome = simulate_streaming(settings)
    played = float(outcome["played_s"].sum())
    total = float(outcome["bytes_peers"].sum() + outcome["bytes_edges"].sum())
    return {
        "finished": int(outcome["finished"].sum()),
        "stall_ratio": float(outcome["stall_s"].sum()) / played,
        "p2p_share": float(outcome["bytes_peers"].sum()) / total,
    }


def _distribution(peers: int) -> dict[str, object]:
    from seedcast.bench.distribution import DistributionOptions
    from seedcast.sim.commands import simulate_record

    record = simulate_record("p2p", DistributionOptions(), peers, model="fluid")
    return {key: record[key] for key in ("measured_s", "bound_s", "ratio", "unfinished")}


def _child(kind: str, size: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    started = time.perf_counter()
    result = _streaming(size) if kind == "streaming" else _distribution(size)
    result["wall_s"] = time.perf_counter() - started
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=100_000)
    parser.add_argument("--peers", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return 0
    failed = False
    for kind, size, label in (
        ("streaming", args.viewers, "streaming viewers, 10-min video"),
        ("distribution", args.peers, "peers, file distribution"),
    ):
        output = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(size)],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        ).stdout
        result = json.loads(output.strip().splitlines()[-1])
        verdict = "under 60 s" if result["wall_s"] < 60 else "OVER 60 s"
        print(
            f"{size:>9} {label}: {result['wall_s']:.1f} s wall on one core ({verdict}), "
            f"peak RSS {result['peak_rss_mib']:.0f} MiB; {json.dumps(result)}"
        )
        failed |= result["wall_s"] >= 60
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
