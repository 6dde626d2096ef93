"""Writing load-test results: results.json, results.csv, PNG plots, report.html.

A run record is a flat dict with at least ``strategy``, ``clients``,
``measured_s``, ``bound_s``, ``ratio`` and ``completion_s`` (each client's
completion time). The report is rewritten after every finished run, so
Ctrl-C keeps everything that finished.
"""

from __future__ import annotations

import csv
import html
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CSV_COLUMNS = ("strategy", "clients", "repeat", "measured_s", "bound_s", "ratio", "source")


def write_results(
    out: Path, config: Mapping[str, Any], records: Sequence[Mapping[str, Any]], *, title: str
) -> None:
    """(Re)write every output file in ``out`` from the records so far."""
    out.mkdir(parents=True, exist_ok=True)
    document = {"title": title, "config": dict(config), "runs": list(records)}
    _atomic_write(out / "results.json", json.dumps(document, indent=2, default=str))
    with (out / "results.csv.tmp").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow(record)
    (out / "results.csv.tmp").replace(out / "results.csv")
    plots = _plot(out, records)
    _atomic_write(out / "report.html", _html(title, config, records, plots))


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def summarise(records: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], dict[str, float]]:
    """Per (strategy, clients): mean measured time, bound and ratio over repeats."""
    grouped: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        grouped[(record["strategy"], int(record["clients"]))].append(record)
    summary = {}
    for key, runs in sorted(grouped.items()):
        measured = sum(run["measured_s"] for run in runs) / len(runs)
        bound = runs[0]["bound_s"]
        summary[key] = {
            "measured_s": measured,
            "bound_s": bound,
            "ratio": measured / bound,
            "runs": len(runs),
        }
    return summary


def _plot(out: Path, records: Sequence[Mapping[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(records)
    strategies = sorted({strategy for strategy, _ in summary})
    files = []
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for index, strategy in enumerate(strategies):
        points = sorted(
            (clients, values) for (name, clients), values in summary.items() if name == strategy
        )
        color = f"C{index}"
        xs = [clients for clients, _ in points]
        axes.plot(
            xs,
            [values["measured_s"] for _, values in points],
            "o-",
            color=color,
            label=f"{strategy} measured",
        )
        axes.plot(
            xs,
            [values["bound_s"] for _, values in points],
            "--",
            color=color,
            alpha=0.6,
            label=f"{strategy} bound",
        )
    axes.set_xlabel("clients N")
    axes.set_ylabel("distribution time (s)")
    axes.set_title("Distribution time vs N")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "distribution_time.png", dpi=110)
    plt.close(figure)
    files.append("distribution_time.png")

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for index, strategy in enumerate(strategies):
        largest = max((int(r["clients"]) for r in records if r["strategy"] == strategy), default=0)
        times = sorted(
            time
            for r in records
            if r["strategy"] == strategy and int(r["clients"]) == largest
            for time in r.get("completion_s", [])
        )
        if times:
            fractions = [(rank + 1) / len(times) for rank in range(len(times))]
            axes.step(
                times, fractions, where="post", color=f"C{index}", label=f"{strategy} (N={largest})"
            )
    axes.set_xlabel("client completion time (s)")
    axes.set_ylabel("fraction of clients done")
    axes.set_title("CDF of client completion times")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "completion_cdf.png", dpi=110)
    plt.close(figure)
    files.append("completion_cdf.png")
    return files


def verdict(strategy: str, ratios: Sequence[float]) -> str:
    """One sentence on how far a strategy is from its bound."""
    if not ratios:
        return f"{strategy}: no finished runs."
    worst, best = max(ratios), min(ratios)
    spread = (
        f"{best:.2f}x"
        if math.isclose(worst, best, rel_tol=0.005)
        else f"{best:.2f}x to {worst:.2f}x"
    )
    if worst <= 1.1:
        judgement = "within 10% of the theoretical optimum"
    elif worst <= 1.3:
        judgement = "close to the bound"
    else:
        judgement = "well above the bound; see the CDF for stragglers"
    return f"{strategy} took {spread} its lower bound: {judgement}."


def _html(
    title: str, config: Mapping[str, Any], records: Sequence[Mapping[str, Any]], plots: list[str]
) -> str:
    summary = summarise(records)
    rows = "".join(
        f"<tr><td>{html.escape(strategy)}</td><td>{clients}</td><td>{values['measured_s']:.2f}</td>"
        f"<td>{values['bound_s']:.2f}</td><td>{values['ratio']:.2f}</td><td>{values['runs']:.0f}</td></tr>"
        for (strategy, clients), values in summary.items()
    )
    by_strategy: dict[str, list[float]] = defaultdict(list)
    for (strategy, _), values in summary.items():
        by_strategy[strategy].append(values["ratio"])
    sentences = "".join(
        f"<li>{html.escape(verdict(name, ratios))}</li>" for name, ratios in by_strategy.items()
    )
    images = "".join(f'<p><img src="{name}" alt="{name}"></p>' for name in plots)
    config_text = html.escape(json.dumps(dict(config), indent=2, default=str))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<ul>{sentences}</ul>
<table><tr><th>strategy</th><th>N</th><th>measured (s)</th><th>bound (s)</th><th>ratio</th><th>runs</th></tr>
{rows}</table>
{images}
<h2>Configuration</h2><pre>{config_text}</pre>
</body></html>
"""
