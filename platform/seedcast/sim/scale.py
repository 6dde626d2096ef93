"""The simulator at internet scale: time vs N from 1 to 10^6, CDN egress vs viewers.

Used by ``seedcast simulate calibrate --scale`` (plots in the report) and by
benchmarks/sim_scale.py (wall time and peak memory of the largest runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["DISTRIBUTION_N", "VIEWERS", "distribution_scale", "egress_scale"]

DISTRIBUTION_N = (1, 4, 16, 64, 256, 1000, 10_000, 100_000, 1_000_000)
VIEWERS = (10, 100, 1000, 10_000, 100_000)


def distribution_scale(
    out: Path, clients: tuple[int, ...] = DISTRIBUTION_N
) -> list[dict[str, Any]]:
    """Simulate every strategy at each N (standard caps) and plot time vs N beside both bounds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from seedcast.bench.distribution import DistributionOptions
    from seedcast.bench.theory import bound
    from seedcast.sim.commands import simulate_record

    options = DistributionOptions()
    rows = []
    for strategy in ("client-server", "cdn", "p2p", "hybrid"):
        for n in clients:
            record = simulate_record(strategy, options, n, model="auto")
            row = {
                key: record[key]
                for key in ("strategy", "clients", "measured_s", "bound_s", "ratio", "model")
            }
            row["wall_cpu_s"] = record["sim_cpu_s"]
            if record["model"] == "piece" and n >= 16:
                # The fluid model beside the piece level it is fitted to.
                row["fluid_s"] = simulate_record(strategy, options, n, model="fluid")["measured_s"]
            rows.append(row)
    figure, axes = plt.subplots(figsize=(8, 5.2))
    for index, strategy in enumerate(("client-server", "cdn", "p2p", "hybrid")):
        mine = [row for row in rows if row["strategy"] == strategy]
        axes.plot(
            [r["clients"] for r in mine],
            [r["measured_s"] for r in mine],
            "o-",
            color=f"C{index}",
            label=f"{strategy} simulated",
        )
    dense = sorted({round(10 ** (k / 8)) for k in range(0, 49)})
    axes.plot(
        dense,
        [bound("client-server", options.scenario(n)) for n in dense],
        "k--",
        label="client-server bound N F / u_s",
    )
    axes.plot(
        dense,
        [bound("p2p", options.scenario(n)) for n in dense],
        "k:",
        label="p2p bound max(F/u_s, F/d, N F/(u_s + N u))",
    )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("clients N")
    axes.set_ylabel("distribution time (s)")
    axes.set_title("Distribution time vs N, F = 16 MiB (piece level to 256, fluid beyond)")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "scale_distribution.png", dpi=110)
    plt.close(figure)
    return rows


def egress_scale(out: Path, viewers: tuple[int, ...] = VIEWERS) -> list[dict[str, Any]]:
    """CDN egress vs viewers for cdn and hybrid (60 s video, the streaming bench's caps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from seedcast.bench.streaming import StreamingOptions
    from seedcast.sim.calibration import stream_settings
    from seedcast.sim.streaming import simulate_streaming

    rows: list[dict[str, Any]] = []
    for strategy in ("cdn", "hybrid"):
        for count in viewers:
            # Arrivals at 1 per second per 10 viewers keep ~the same overlap at every V.
            options = StreamingOptions(viewers=count, rate=max(1.0, count / 100))
            outcome = simulate_streaming(stream_settings(options, strategy, "poisson", 10.0))
            rows.append(
                {
                    "strategy": strategy,
                    "viewers": count,
                    "cdn_egress_bytes": float(outcome["bytes_edges"].sum()),
                    "peer_bytes": float(outcome["bytes_peers"].sum()),
                    "stall_ratio": float(
                        outcome["stall_s"].sum() / max(outcome["played_s"].sum(), 1e-9)
                    ),
                }
            )
    figure, axes = plt.subplots(figsize=(8, 5.2))
    for index, strategy in enumerate(("cdn", "hybrid")):
        mine = [row for row in rows if row["strategy"] == strategy]
        axes.plot(
            [r["viewers"] for r in mine],
            [r["cdn_egress_bytes"] / 2**30 for r in mine],
            "o-",
            color=f"C{index}",
            label=strategy,
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("viewers V (Poisson arrivals at V/100 per second, 60 s video)")
    axes.set_ylabel("CDN egress (GiB)")
    axes.set_title("CDN egress vs viewers: CDN only vs hybrid CDN + P2P (simulated)")
    axes.grid(alpha=0.3, which="both")
    axes.legend()
    figure.tight_layout()
    figure.savefig(out / "scale_egress.png", dpi=110)
    plt.close(figure)
    return rows
