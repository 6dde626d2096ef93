"""The simulator's calibrated constants, and the report that checks them against real runs.

Two fits, both small and both stated in every report:

* **Piece level vs reality**: ``start_seconds`` (0.05 s) is what real
  client-server and cdn runs take beyond their bound (-0.01 to 0.17 s over
  benchmarks/distribution_results/ and benchmarks/sim_results/real-small/:
  process start, connect, request, less the token buckets' 50 ms burst).
  The swarm's behaviour is the product's picker and choker; the one other
  choice, ``job_blocks`` (blocks an uploader sends as one transfer), was
  picked by a grid over {1, 4} x ``connect_seconds`` {0, 0.15, 0.3} against
  the p2p and hybrid runs: 4 and 0 s gave the smallest worst error (8.3%;
  1 block: 11.5%, at p2p N=4 with 4 MiB).
* **Fluid vs piece level**: the peer-upload ``efficiency`` of the flow model
  per strategy, fitted (:func:`seedcast.sim.fluid.fit_efficiency`) to
  piece-level runs at N = 64, 128, 256 with the standard caps (``FLUID_EFFICIENCY``;
  rerun :func:`fit_fluid` after changing the picker or choker).

:func:`write_calibration` sets real bench results beside both models at the
same settings: one table and one plot, the relative error at each point,
and whether every simulation stays at or above the bound.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seedcast.sim.fluid import FluidSettings
from seedcast.sim.swarm import PieceSettings

__all__ = ["FLUID_EFFICIENCY", "PIECE", "describe", "fit_fluid", "write_calibration"]

PIECE = PieceSettings(start_seconds=0.05)
FLUID_EFFICIENCY = {"p2p": 0.91, "hybrid": 0.86}
"""Fitted by :func:`fit_fluid` at N = 64, 128, 256 (standard caps, seed 1): 0.915, 0.864."""
TOLERANCE = 0.10


def fluid_settings(strategy: str) -> FluidSettings:
    return FluidSettings(
        efficiency=FLUID_EFFICIENCY.get(strategy, 1.0),
        start_seconds=PIECE.start_seconds,
        steps=500,
    )


def describe() -> dict[str, Any]:
    """What a report says about the models' constants."""
    return {
        "piece_level": dataclasses.asdict(PIECE),
        "fluid_efficiency": dict(FLUID_EFFICIENCY),
        "start_seconds": PIECE.start_seconds,
    }


def stream_settings(options: Any, strategy: str, arrivals: str, flash: float) -> Any:
    """A :class:`~seedcast.sim.streaming.StreamSettings` from the streaming bench's options."""
    from seedcast.origin.ladder import parse_ladder
    from seedcast.sim.streaming import StreamSettings

    rungs = parse_ladder(options.ladder)
    return StreamSettings(
        viewers=options.viewers,
        strategy=strategy,
        arrivals=arrivals,
        rate=options.rate,
        flash_seconds=flash,
        video_seconds=options.watch_time,
        bitrates=tuple(sorted(rung.bitrate_kbps * 1000 for rung in rungs)),
        upload=options.upload,
        download=options.download,
        edges=options.edges,
        edge_up=options.edge_up,
        abr=options.abr,
        max_buffer=options.max_buffer,
        urgent_seconds=options.urgent_seconds,
        efficiency=FLUID_EFFICIENCY["hybrid"],
        start_seconds=PIECE.start_seconds,
        seed=options.seed,
    )


def fit_fluid(strategy: str, clients: Sequence[int] = (64, 128, 256, 512)) -> float:
    """Refit the fluid model's efficiency for ``strategy`` against the piece level."""
    from seedcast.bench.distribution import DistributionOptions
    from seedcast.sim.fluid import fit_efficiency
    from seedcast.sim.swarm import simulate_distribution

    options = DistributionOptions()
    scenarios = [options.scenario(n) for n in clients]
    targets = [max(simulate_distribution(strategy, s, PIECE).completion_s) for s in scenarios]
    return fit_efficiency(strategy, scenarios, targets, fluid_settings(strategy))


# -- the report --------------------------------------------------------------------------------


def _real_runs(folders: Sequence[Path]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(config, record) of every finished Seedcast run in the folders' results.json."""
    runs = []
    for folder in folders:
        document = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        for record in document.get("runs", []):
            if record.get("source", "seedcast") == "seedcast" and "measured_s" in record:
                runs.append((document["config"], record))
    return runs


def _options(config: dict[str, Any]) -> Any:
    from seedcast.bench.distribution import DistributionOptions

    fields = {f.name for f in dataclasses.fields(DistributionOptions)}
    values = {k: v for k, v in config.items() if k in fields}
    values["clients"] = tuple(values.get("clients", ()))
    values["strategies"] = tuple(values.get("strategies", ()))
    return DistributionOptions(**values)


def calibration_rows(
    folders: Sequence[Path], clients: Sequence[int], *, fluid: bool = True
) -> list[dict[str, Any]]:
    """One row per real run at one of ``clients``: real, piece-level and fluid times."""
    from seedcast.sim.commands import simulate_record

    rows = []
    for config, record in _real_runs(folders):
        n = int(record["clients"])
        if n not in clients:
            continue
        options = _options(config)
        strategy = record["strategy"]
        piece = simulate_record(strategy, options, n, model="piece")
        row = {
            "strategy": strategy,
            "clients": n,
            "file_size": options.file_size,
            "real_s": record["measured_s"],
            "bound_s": piece["bound_s"],
            "piece_s": piece["measured_s"],
            "piece_error": piece["measured_s"] / record["measured_s"] - 1,
            "real_busy": record.get("system_busy"),
        }
        if fluid:
            flow = simulate_record(strategy, options, n, model="fluid")
            row["fluid_s"] = flow["measured_s"]
            row["fluid_error"] = flow["measured_s"] / record["measured_s"] - 1
        row["within"] = abs(row["piece_error"]) <= TOLERANCE
        row["above_bound"] = row["piece_s"] >= row["bound_s"] * (1 - 1e-9)
        rows.append(row)
    rows.sort(key=lambda row: (row["strategy"], row["clients"], row["file_size"]))
    return rows


def write_calibration(
    folders: Sequence[Path], out: Path, clients: Sequence[int], *, scale: bool = False
) -> list[str]:
    """Write calibration.json/.csv/.html and calibration.png (+ scale plots); returns a summary."""
    out.mkdir(parents=True, exist_ok=True)
    rows = calibration_rows(folders, clients)
    document: dict[str, Any] = {"constants": describe(), "tolerance": TOLERANCE, "rows": rows}
    plots = [_plot(out, rows)]
    if scale:
        from seedcast.sim.scale import distribution_scale, egress_scale

        document["scale"] = distribution_scale(out)
        document["egress"] = egress_scale(out)
        plots += ["scale_distribution.png", "scale_egress.png"]
    (out / "calibration.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
    worst = max((abs(row["piece_error"]) for row in rows), default=math.nan)
    summary = [
        f"{row['strategy']:>14} N={row['clients']:<3} real {row['real_s']:7.2f} s  piece "
        f"{row['piece_s']:7.2f} s ({row['piece_error']:+.1%})  fluid {row['fluid_s']:7.2f} s "
        f"({row['fluid_error']:+.1%})  bound {row['bound_s']:7.2f} s"
        for row in rows
    ]
    within = sum(row["within"] for row in rows)
    summary.append(
        f"piece level within {TOLERANCE:.0%} of the real run at {within}/{len(rows)} points "
        f"(worst {worst:.1%}); at or above the bound at "
        f"{sum(row['above_bound'] for row in rows)}/{len(rows)}"
    )
    (out / "calibration.html").write_text(
        _html(rows, plots, summary[-1], document), encoding="utf-8"
    )
    return summary


def _plot(out: Path, rows: Sequence[dict[str, Any]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({row["file_size"] for row in rows}) or [0]
    figure, panels = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 5.2), squeeze=False)
    strategies = sorted({row["strategy"] for row in rows})
    for axes, size in zip(panels[0], sizes, strict=True):
        for index, strategy in enumerate(strategies):
            mine = sorted(
                (r for r in rows if r["strategy"] == strategy and r["file_size"] == size),
                key=lambda r: r["clients"],
            )
            xs = [r["clients"] for r in mine]
            color = f"C{index}"
            axes.plot(xs, [r["real_s"] for r in mine], "o-", color=color, label=f"{strategy} real")
            axes.plot(
                xs,
                [r["piece_s"] for r in mine],
                "x--",
                color=color,
                ms=9,
                label=f"{strategy} simulated (piece level)",
            )
            if mine and "fluid_s" in mine[0]:
                axes.plot(xs, [r["fluid_s"] for r in mine], "+:", color=color, ms=9, alpha=0.7)
            axes.plot(xs, [r["bound_s"] for r in mine], "-", color=color, alpha=0.25, lw=4)
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xlabel("clients N")
        axes.set_ylabel("distribution time (s)")
        axes.set_title(f"F = {size / 2**20:g} MiB: real (o), piece level (x), fluid (+), bound")
        axes.grid(alpha=0.3, which="both")
        axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(out / "calibration.png", dpi=110)
    plt.close(figure)
    return "calibration.png"


def _html(
    rows: Sequence[dict[str, Any]], plots: Sequence[str], verdict: str, document: dict[str, Any]
) -> str:
    def cell(value: Any, pattern: str) -> str:
        return "-" if value is None else pattern.format(value)

    body = "".join(
        f"<tr><td>{html.escape(r['strategy'])}</td><td>{r['clients']}</td>"
        f"<td>{r['file_size'] / 2**20:.0f}</td><td>{r['real_s']:.2f}</td>"
        f"<td>{r['piece_s']:.2f}</td><td>{r['piece_error']:+.1%}</td>"
        f"<td>{cell(r.get('fluid_s'), '{:.2f}')}</td><td>{cell(r.get('fluid_error'), '{:+.1%}')}</td>"
        f"<td>{r['bound_s']:.2f}</td><td>{'yes' if r['within'] else 'NO'}</td>"
        f"<td>{'yes' if r['above_bound'] else 'NO'}</td>"
        f"<td>{cell(r.get('real_busy'), '{:.0%}')}</td></tr>"
        for r in rows
    )
    images = "".join(f'<p><img src="{name}" alt="{name}"></p>' for name in plots)
    constants = html.escape(json.dumps(document["constants"], indent=2))
    scale = ""
    if "scale" in document:
        scale_rows = "".join(
            f"<tr><td>{html.escape(s['strategy'])}</td><td>{s['clients']}</td>"
            f"<td>{s['measured_s']:.2f}</td><td>{s['bound_s']:.2f}</td><td>{s['ratio']:.3f}</td>"
            f"<td>{s['model']}</td><td>{cell(s.get('fluid_s'), '{:.2f}')}</td>"
            f"<td>{s['wall_cpu_s']:.1f}</td></tr>"
            for s in document["scale"]
        )
        scale = (
            "<h2>Simulated distribution time vs N</h2><table><tr><th>strategy</th><th>N</th>"
            "<th>simulated (s)</th><th>bound (s)</th><th>ratio</th><th>model</th>"
            f"<th>fluid at the same N (s)</th><th>CPU (s)</th></tr>{scale_rows}"
            "</table>"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Simulator calibration</title>
<style>body{{font-family:sans-serif;max-width:64em;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}</style>
</head><body>
<h1>Simulator calibration: real `bench distribution` runs vs `seedcast simulate`</h1>
<p>{html.escape(verdict)}. Real runs are the bench's measured times (every process real,
caps by token buckets); the piece level runs the product's picker and choker under a
virtual clock; the fluid model's peer-upload efficiency is fitted to the piece level.
"machine busy" is the real run's CPU: above 90% the real time measures Python, which no
simulation of the network models.</p>
<table><tr><th>strategy</th><th>N</th><th>F (MiB)</th><th>real (s)</th><th>piece (s)</th>
<th>piece vs real</th><th>fluid (s)</th><th>fluid vs real</th><th>bound (s)</th>
<th>within {TOLERANCE:.0%}</th><th>&ge; bound</th><th>machine busy</th></tr>{body}</table>
{images}
{scale}
<h2>Constants</h2><pre>{constants}</pre>
</body></html>
"""
