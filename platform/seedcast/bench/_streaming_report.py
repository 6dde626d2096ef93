"""The streaming benchmark's part of the report: its CSV columns, table, sentences and plots.

:func:`seedcast.bench.report.write_results` hands records with ``kind ==
"streaming"`` here (one per strategy and V; see
:func:`seedcast.bench.streaming.summarise_viewers`), so ``seedcast bench
streaming`` writes the same files as ``seedcast bench distribution``:
results.json (written by report.py), results.csv, PNG plots and
report.html. When one folder holds both kinds, the streaming files get a
``streaming-`` prefix and the distribution report keeps its names.
"""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["STREAMING_CSV_COLUMNS", "is_streaming", "write_streaming"]

STREAMING_CSV_COLUMNS = (
    "strategy",
    "viewers",
    "finished",
    "failed",
    "startup_median_s",
    "startup_p90_s",
    "startup_p95_s",
    "join_median_s",
    "join_p95_s",
    "stall_ratio",
    "stall_count",
    "stalled_viewers",
    "avg_bitrate_kbps",
    "bytes_peers",
    "bytes_edges",
    "bytes_origin",
    "bytes_total",
    "p2p_share",
    "cdn_egress_bytes",
    "edge_egress_bytes",
    "origin_egress_bytes",
    "cdn_offload",
    "download_ratio_max",
    "download_ratio_median",
    "wasted_bytes_total",
    "cpu_share",
    "system_busy",
    "loadavg_after",
)
_COLORS = {"cdn": "C0", "hybrid": "C1"}
_SOURCES = (("peers", "C2"), ("edges", "C0"), ("origin", "C3"))


def is_streaming(record: Mapping[str, Any]) -> bool:
    return record.get("kind") == "streaming"


def write_streaming(
    out: Path,
    config: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    *,
    title: str,
    errors: Sequence[str] = (),
    prefix: str = "",
) -> None:
    """Write ``<prefix>results.csv``, the plots and ``<prefix>report.html`` for ``records``."""
    csv_path = out / f"{prefix}results.csv"
    temporary = csv_path.with_suffix(".csv.tmp")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=STREAMING_CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow(_csv_row(record))
    temporary.replace(csv_path)
    plots = _plot(out, records, prefix)
    page = out / f"{prefix}report.html"
    page.with_suffix(".html.tmp").write_text(
        _html(title, config, records, plots, errors), encoding="utf-8"
    )
    page.with_suffix(".html.tmp").replace(page)


def _csv_row(record: Mapping[str, Any]) -> dict[str, Any]:
    received = record.get("bytes") or {}
    return {
        **record,
        **{f"bytes_{key}": received.get(key, 0) for key in ("peers", "edges", "origin", "total")},
        "wasted_bytes_total": sum((record.get("wasted_bytes") or {}).values()),
    }


def _label(record: Mapping[str, Any]) -> str:
    return f"{record['strategy']} V={record['viewers']}"


def _plot(out: Path, records: Sequence[Mapping[str, Any]], prefix: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    # Startup delay and join-to-play, CDF over viewers.
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    for record in records:
        color = _COLORS.get(str(record["strategy"]), "C4")
        rows = record.get("per_viewer") or []
        for key, style, what in (("startup_s", "-", "startup"), ("join_s", ":", "join to play")):
            values = sorted(float(row[key]) for row in rows if row.get(key) is not None)
            if values:
                fractions = [(rank + 1) / len(values) for rank in range(len(values))]
                axes.step(
                    values,
                    fractions,
                    where="post",
                    color=color,
                    linestyle=style,
                    label=f"{_label(record)}: {what}",
                )
    axes.axvline(2.0, color="0.5", linewidth=0.8, linestyle="--")
    axes.set_xlabel("seconds (solid: manifest to first frame; dotted: arrival to first frame)")
    axes.set_ylabel("fraction of viewers")
    axes.set_title("Startup delay, CDF over viewers (dashed: the 2 s goal)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    name = f"{prefix}startup_cdf.png"
    figure.savefig(out / name, dpi=110)
    plt.close(figure)
    files.append(name)

    # Bytes by source as the players saw them, and what the CDN sent.
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    labels = [_label(record) for record in records]
    bottoms = [0.0] * len(records)
    for source, color in _SOURCES:
        heights = [(record.get("bytes") or {}).get(source, 0) / 2**20 for record in records]
        axes.bar(labels, heights, bottom=bottoms, color=color, label=f"from {source}")
        bottoms = [low + high for low, high in zip(bottoms, heights, strict=True)]
    egress = [float(record.get("cdn_egress_bytes") or 0) / 2**20 for record in records]
    axes.plot(labels, egress, "kD", label="CDN egress (edges' counters)")
    axes.set_ylabel("MiB")
    axes.set_title("Bytes the players received, by source; CDN egress")
    axes.grid(alpha=0.3, axis="y")
    axes.legend(fontsize=8)
    figure.tight_layout()
    name = f"{prefix}bytes_by_source.png"
    figure.savefig(out / name, dpi=110)
    plt.close(figure)
    files.append(name)

    # Per viewer, by arrival: P2P share (hybrid) and stall time (all).
    figure, (share_axes, stall_axes) = plt.subplots(2, 1, figsize=(7.5, 6.4), sharex=True)
    for record in records:
        color = _COLORS.get(str(record["strategy"]), "C4")
        rows = [row for row in record.get("per_viewer") or [] if row.get("arrival_s") is not None]
        arrivals = [float(row["arrival_s"]) for row in rows]
        totals = [row["bytes_peers"] + row["bytes_edges"] + row["bytes_origin"] for row in rows]
        shares = [
            (arrival, row["bytes_peers"] / total)
            for arrival, row, total in zip(arrivals, rows, totals, strict=True)
            if total
        ]
        if shares and record["strategy"] != "cdn":
            share_axes.plot(
                [a for a, _ in shares],
                [s for _, s in shares],
                "o",
                color=color,
                label=_label(record),
            )
        stall_axes.plot(
            arrivals,
            [float(row.get("stall_s") or 0) for row in rows],
            "o",
            color=color,
            alpha=0.7,
            label=_label(record),
        )
    share_axes.axhline(0.8, color="0.5", linewidth=0.8, linestyle="--")
    share_axes.set_ylabel("share of bytes from peers")
    share_axes.set_ylim(-0.02, 1.02)
    share_axes.set_title("Per viewer, by arrival time (dashed: the 80% goal)")
    share_axes.grid(alpha=0.3)
    longest = max(
        (float(row.get("stall_s") or 0) for r in records for row in r.get("per_viewer") or []),
        default=0.0,
    )
    stall_axes.set_ylim(0, max(1.0, longest * 1.1))
    stall_axes.set_xlabel("arrival (s after the first viewer)")
    stall_axes.set_ylabel("stall time (s)")
    stall_axes.grid(alpha=0.3)
    for axes in (share_axes, stall_axes):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    figure.tight_layout()
    name = f"{prefix}per_viewer.png"
    figure.savefig(out / name, dpi=110)
    plt.close(figure)
    files.append(name)
    return files


def _cell(value: Any, pattern: str = "{:.2f}") -> str:
    return "-" if value is None else pattern.format(value)


def _mib(value: Any) -> str:
    return "-" if value is None else f"{float(value) / 2**20:.1f}"


def _html(
    title: str,
    config: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    plots: list[str],
    errors: Sequence[str],
) -> str:
    from seedcast.bench.streaming import goal_sentences

    sentences = goal_sentences([dict(record) for record in records])
    for record in records:
        if record.get("failed"):
            reasons = "; ".join(record.get("failures") or [])
            sentences.append(
                f"{_label(record)}: {record['failed']} viewer(s) did not finish ({reasons})."
            )
        if record.get("timed_out"):
            sentences.append(f"{_label(record)}: stopped at its time bound ({record['wall_s']} s).")
        for error in record.get("run_errors") or []:
            sentences.append(f"{_label(record)}: {error}.")
        busy = record.get("system_busy")
        if busy is not None and busy >= 0.9:
            sentences.append(
                f"{_label(record)}: the machine was {busy:.0%} busy during the run, so its "
                "stalls and startup measure the CPU as much as the network."
            )
    items = "".join(f"<li>{html.escape(sentence)}</li>" for sentence in sentences)
    qoe_rows = "".join(
        f"<tr><td>{html.escape(str(r['strategy']))}</td><td>{r['viewers']}</td>"
        f"<td>{r['finished']}</td><td>{r['failed']}</td>"
        f"<td>{_cell(r.get('startup_median_s'))}</td><td>{_cell(r.get('startup_p90_s'))}</td>"
        f"<td>{_cell(r.get('startup_p95_s'))}</td>"
        f"<td>{_cell(r.get('join_median_s'))}</td><td>{_cell(r.get('join_p95_s'))}</td>"
        f"<td>{_cell(r.get('stall_ratio'), '{:.2%}')}</td><td>{r.get('stalled_viewers', 0)}</td>"
        f"<td>{_cell(r.get('avg_bitrate_kbps'), '{:.0f}')}</td>"
        f"<td>{_cell(r.get('system_busy'), '{:.0%}')}</td></tr>"
        for r in records
    )
    bytes_rows = "".join(
        f"<tr><td>{html.escape(str(r['strategy']))}</td><td>{r['viewers']}</td>"
        + "".join(
            f"<td>{_mib((r.get('bytes') or {}).get(key))}</td>"
            for key in ("peers", "edges", "origin", "total")
        )
        + f"<td>{_cell(r.get('p2p_share'), '{:.1%}')}</td>"
        f"<td>{_mib(r.get('cdn_egress_bytes'))}</td><td>{_mib(r.get('origin_egress_bytes'))}</td>"
        f"<td>{_cell(r.get('cdn_offload'), '{:.1%}')}</td>"
        f"<td>{_mib((r.get('agents') or {}).get('uploaded'))}</td>"
        f"<td>{_cell(r.get('download_ratio_max'), '{:.3f}')}</td>"
        f"<td>{_mib(sum((r.get('wasted_bytes') or {}).values()) if r.get('wasted_bytes') is not None else None)}</td></tr>"
        for r in records
    )
    error_list = (
        "<h2>Runs that failed</h2><ul>"
        + "".join(f"<li>{html.escape(line)}</li>" for line in errors)
        + "</ul>"
        if errors
        else ""
    )
    images = "".join(f'<p><img src="{name}" alt="{name}"></p>' for name in plots)
    config_text = html.escape(json.dumps(dict(config), indent=2, default=str))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:64em;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<ul>{items}</ul>
<h2>Quality of experience</h2>
<table><tr><th>strategy</th><th>V</th><th>finished</th><th>failed</th>
<th>startup median (s)</th><th>startup p90 (s)</th><th>startup p95 (s)</th><th>join median (s)</th><th>join p95 (s)</th>
<th>stall ratio</th><th>viewers who stalled</th><th>avg bitrate (kbit/s)</th>
<th>machine busy</th></tr>
{qoe_rows}</table>
<p>Startup: from the manifest to the first frame (2 s buffered), as the player measures it.
Join: from the viewer's arrival to the first frame, the agent's start and the manifest
included. Stall ratio: stall time / play time over all viewers.</p>
<h2>Bytes by source (MiB) and CDN egress</h2>
<table><tr><th>strategy</th><th>V</th><th>from peers</th><th>from edges</th><th>from origin</th>
<th>total</th><th>P2P share</th><th>CDN egress</th><th>origin egress</th><th>CDN offload</th>
<th>viewers uploaded</th><th>downloaded / played (worst viewer)</th><th>wasted</th></tr>
{bytes_rows}</table>
<p>From peers / edges / origin: what the players received, by the source the bytes came from.
CDN egress: the edges' response bytes from their /metrics (plus origin bytes served to
viewers directly); origin egress is mostly the edges' cache fills. CDN offload = 1 - CDN
egress / bytes the players received. Downloaded / played: the bytes a hybrid viewer's agent
received (peers' piece data and the edge's bodies) per byte its player played, for the worst
viewer; wasted: downloaded bytes not needed (blocks or pieces that arrived twice or belong to
a piece never finished, failed hashes, bytes outside the range asked for).</p>
{images}
{error_list}
<h2>Configuration</h2><pre>{config_text}</pre>
</body></html>
"""
