"""Streaming under latency: ``seedcast bench streaming`` at several RTTs, one table and plot.

    python benchmarks/latency_sweep.py --rtt 0,20,80,150 --out results/latency -- --viewers 4
    python benchmarks/latency_sweep.py --collect results/latency   # table + plot again

Each RTT is one bounded ``bench streaming --rtt MS`` run (cdn and hybrid,
viewer-to-edge paths through ``seedcast netem`` relays; RTT 0 is the
baseline without relays), written to ``<out>/rtt-<MS>/``. The sweep then
prints startup, stalls, P2P share and CDN egress per RTT and strategy and
plots them in ``<out>/latency.png`` (``latency.json`` holds the rows).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

FIELDS = ("startup_median_s", "startup_p95_s", "stall_ratio", "p2p_share", "cdn_egress_bytes")


def run_sweep(rtts: list[float], out: Path, extra: list[str]) -> None:
    for rtt in rtts:
        target = out / f"rtt-{rtt:g}"
        argv = [sys.executable, "-m", "seedcast", "bench", "streaming", "--rtt", f"{rtt:g}"]
        subprocess.run([*argv, "--out", str(target), *extra], check=True, timeout=900)


def collect(out: Path) -> list[dict[str, Any]]:
    rows = []
    for folder in sorted(out.glob("rtt-*"), key=lambda path: float(path.name[4:])):
        data = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        for run in data["runs"]:
            rows.append(
                {
                    "rtt_ms": float(folder.name[4:]),
                    "strategy": run["strategy"],
                    "viewers": run["viewers"],
                    **{name: run.get(name) for name in FIELDS},
                }
            )
    return rows


def report(rows: list[dict[str, Any]], out: Path) -> None:
    print(
        f"{'RTT':>5} {'strategy':>8} {'startup':>8} {'p95':>6} {'stalls':>7} {'P2P':>6} {'CDN MiB':>8}"
    )
    for row in rows:
        print(
            f"{row['rtt_ms']:>5g} {row['strategy']:>8} {row['startup_median_s']:>8.2f} "
            f"{row['startup_p95_s']:>6.2f} {row['stall_ratio']:>7.2%} {row['p2p_share']:>6.1%} "
            f"{row['cdn_egress_bytes'] / 2**20:>8.2f}"
        )
    (out / "latency.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for strategy in sorted({row["strategy"] for row in rows}):
        mine = [row for row in rows if row["strategy"] == strategy]
        rtts = [row["rtt_ms"] for row in mine]
        axes[0].plot(rtts, [row["startup_median_s"] for row in mine], "o-", label=strategy)
        axes[1].plot(rtts, [100 * row["stall_ratio"] for row in mine], "o-", label=strategy)
        axes[2].plot(rtts, [100 * row["p2p_share"] for row in mine], "o-", label=strategy)
    titles = ("median startup (s)", "stall ratio (%)", "P2P share (%)")
    for axis, title in zip(axes, titles, strict=True):
        axis.set_xlabel("viewer-edge RTT (ms)")
        axis.set_title(title)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "latency.png", dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt", default="0,20,80,150", help="RTTs in ms (default 0,20,80,150)")
    parser.add_argument("--out", default="bench-latency", help="output folder")
    parser.add_argument("--collect", metavar="DIR", help="only rebuild the table and plot")
    parser.add_argument("extra", nargs="*", help="after --: options for bench streaming")
    args = parser.parse_args()
    out = Path(args.collect or args.out)
    if not args.collect:
        out.mkdir(parents=True, exist_ok=True)
        run_sweep([float(part) for part in args.rtt.split(",")], out, args.extra)
    report(collect(out), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
