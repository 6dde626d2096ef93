"""Writing load-test results: results.json, results.csv, PNG plots, report.html.

A run record is a flat dict with at least ``strategy``, ``clients``,
``measured_s``, ``bound_s``, ``ratio`` and ``completion_s`` (each client's
completion time). Optional fields the report uses when present: ``source``
(``"seedcast"``, the default, or a reference implementation such as
``"libtorrent"``, drawn as a grey reference line beside the strategy it
implements), ``unfinished`` (clients that did not finish in time),
``cpu_share`` (CPU seconds of the run's processes / (wall time x CPUs)),
``system_busy`` (the whole machine's busy fraction during the run),
``loadavg_after`` and ``bytes`` (bytes by source). The report is rewritten
after every finished run, so Ctrl-C keeps everything that finished.

Records with ``kind == "streaming"`` (``seedcast bench streaming``: QoE and
bytes by source per strategy) get their own CSV columns, table and plots
from :mod:`seedcast.bench._streaming_report`, in the same files.
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

from seedcast.bench._streaming_report import write_streaming

CSV_COLUMNS = (
    "strategy",
    "clients",
    "repeat",
    "measured_s",
    "bound_s",
    "ratio",
    "source",
    "unfinished",
    "cpu_share",
    "system_busy",
    "loadavg_after",
    "shaping",
)
DEFAULT_SOURCE = "seedcast"
BUSY_LIMIT = 0.9
"""A run during which the machine was busier than this measured the CPU, not the network."""

SummaryKey = tuple[str, str, int]


def write_results(
    out: Path,
    config: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    *,
    title: str,
    errors: Sequence[str] = (),
) -> None:
    """(Re)write every output file in ``out`` from the records so far.

    ``errors`` (runs that could not be measured, one line each) are listed in the report.
    """
    out.mkdir(parents=True, exist_ok=True)
    document = {"title": title, "config": dict(config), "runs": list(records)}
    if errors:
        document["errors"] = list(errors)
    _atomic_write(out / "results.json", json.dumps(document, indent=2, default=str))
    streaming = [record for record in records if record.get("kind") == "streaming"]
    if streaming:  # seedcast bench streaming: its own table and plots, same files
        records = [record for record in records if record.get("kind") != "streaming"]
        prefix = "streaming-" if records else ""
        write_streaming(out, config, streaming, title=title, errors=errors, prefix=prefix)
        if not records:
            return
    with (out / "results.csv.tmp").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({"source": DEFAULT_SOURCE, **record})
    (out / "results.csv.tmp").replace(out / "results.csv")
    plots = _plot(out, records)
    _atomic_write(out / "report.html", _html(title, config, records, plots, errors))


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def _source(record: Mapping[str, Any]) -> str:
    return str(record.get("source") or DEFAULT_SOURCE)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(records: Sequence[Mapping[str, Any]]) -> dict[SummaryKey, dict[str, Any]]:
    """Per (strategy, source, clients): means over repeats of time, ratio and CPU figures."""
    grouped: dict[SummaryKey, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        grouped[(record["strategy"], _source(record), int(record["clients"]))].append(record)
    summary: dict[SummaryKey, dict[str, Any]] = {}
    for key, runs in sorted(grouped.items()):
        measured = sum(run["measured_s"] for run in runs) / len(runs)
        bound = runs[0]["bound_s"]
        summary[key] = {
            "measured_s": measured,
            "bound_s": bound,
            "ratio": measured / bound,
            "runs": len(runs),
            "unfinished": sum(int(run.get("unfinished", 0)) for run in runs),
            "cpu_share": _mean([run["cpu_share"] for run in runs if "cpu_share" in run]),
            "system_busy": _mean(
                [run["system_busy"] for run in runs if run.get("system_busy") is not None]
            ),
            "loadavg": _mean([run["loadavg_after"] for run in runs if "loadavg_after" in run]),
        }
    return summary


def _name(strategy: str, source: str) -> str:
    return strategy if source == DEFAULT_SOURCE else f"{strategy} ({source})"


def _plot(out: Path, records: Sequence[Mapping[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(records)
    strategies = sorted({strategy for strategy, _, _ in summary})
    colors = {strategy: f"C{index}" for index, strategy in enumerate(strategies)}
    series = sorted({(strategy, source) for strategy, source, _ in summary})

    def points(strategy: str, source: str) -> list[tuple[int, dict[str, Any]]]:
        return sorted(
            (clients, values)
            for (name, origin, clients), values in summary.items()
            if name == strategy and origin == source
        )

    files = []
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    for strategy, source in series:
        data = points(strategy, source)
        xs = [clients for clients, _ in data]
        measured = [values["measured_s"] for _, values in data]
        if source == DEFAULT_SOURCE:
            axes.plot(xs, measured, "o-", color=colors[strategy], label=f"{strategy} measured")
            axes.plot(
                xs,
                [values["bound_s"] for _, values in data],
                "--",
                color=colors[strategy],
                alpha=0.6,
                label=f"{strategy} bound",
            )
        else:
            axes.plot(
                xs,
                measured,
                "s:",
                color="0.45",
                label=f"{_name(strategy, source)} (reference)",
            )
    axes.set_xlabel("clients N")
    axes.set_ylabel("distribution time (s)")
    axes.set_title("Distribution time vs N (dashed: the lower bound)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "distribution_time.png", dpi=110)
    plt.close(figure)
    files.append("distribution_time.png")

    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    for strategy, source in series:
        chosen = [r for r in records if r["strategy"] == strategy and _source(r) == source]
        largest = max((int(r["clients"]) for r in chosen), default=0)
        times = sorted(
            time
            for r in chosen
            if int(r["clients"]) == largest
            for time in r.get("completion_s", [])
        )
        if times:
            fractions = [(rank + 1) / len(times) for rank in range(len(times))]
            reference = source != DEFAULT_SOURCE
            axes.step(
                times,
                fractions,
                where="post",
                color="0.45" if reference else colors[strategy],
                linestyle=":" if reference else "-",
                label=f"{_name(strategy, source)} (N={largest})",
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

    if any(values["cpu_share"] is not None for values in summary.values()):
        figure, axes = plt.subplots(figsize=(7.5, 4.8))
        cpu_axes = axes.twinx()
        for strategy, source in series:
            data = points(strategy, source)
            xs = [clients for clients, _ in data]
            reference = source != DEFAULT_SOURCE
            color = "0.45" if reference else colors[strategy]
            axes.plot(
                xs,
                [values["ratio"] for _, values in data],
                "s:" if reference else "o-",
                color=color,
                label=f"{_name(strategy, source)} measured/bound",
            )
            cpu = [
                (x, v["cpu_share"])
                for x, (_, v) in zip(xs, data, strict=True)
                if v["cpu_share"] is not None
            ]
            if cpu:
                cpu_axes.plot(
                    [x for x, _ in cpu],
                    [100 * share for _, share in cpu],
                    "x--",
                    color=color,
                    alpha=0.5,
                )
        axes.axhline(1.0, color="black", linewidth=0.8)
        axes.set_xscale("log", base=2)
        ticks = sorted({clients for _, _, clients in summary})
        axes.set_xticks(ticks, [str(tick) for tick in ticks])
        axes.minorticks_off()
        axes.set_xlabel("clients N")
        axes.set_ylabel("measured / bound (solid)")
        cpu_axes.set_ylabel("CPU used by the run's processes, % of all cores (dashed)")
        cpu_axes.set_ylim(0, 100)
        axes.set_title("Does it measure the network or the CPU?")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc="upper left")
        figure.tight_layout()
        figure.savefig(out / "scale.png", dpi=110)
        plt.close(figure)
        files.append("scale.png")
    return files


def verdict(strategy: str, ratios: Sequence[float], clients: Sequence[int] = ()) -> str:
    """One sentence on how far a strategy is from its bound (``clients``: the N of each ratio)."""
    if not ratios:
        return f"{strategy}: no finished runs."
    worst, best = max(ratios), min(ratios)
    spread = (
        f"{best:.2f}x"
        if math.isclose(worst, best, rel_tol=0.005)
        else f"{best:.2f}x to {worst:.2f}x"
    )
    where = ""
    if len(clients) == len(ratios) and not math.isclose(worst, best, rel_tol=0.005):
        where = f" (worst at N={clients[list(ratios).index(worst)]})"
    if worst <= 1.1:
        judgement = "within 10% of the theoretical optimum"
    elif worst <= 1.3:
        judgement = "close to the bound"
    else:
        judgement = "well above the bound; see the CDF for stragglers"
    return f"{strategy} took {spread} its lower bound{where}: {judgement}."


def reference_sentence(
    strategy: str, source: str, summary: Mapping[SummaryKey, Mapping[str, Any]]
) -> str:
    """How a reference implementation did, and how ours compares with it at each N."""
    theirs = {
        clients: values
        for (name, origin, clients), values in summary.items()
        if name == strategy and origin == source
    }
    ours = {
        clients: values
        for (name, origin, clients), values in summary.items()
        if name == strategy and origin == DEFAULT_SOURCE
    }
    sentence = verdict(
        _name(strategy, source), [values["ratio"] for values in theirs.values()], list(theirs)
    )
    common = sorted(set(theirs) & set(ours))
    if common:
        comparison = ", ".join(
            f"{ours[n]['measured_s'] / theirs[n]['measured_s']:.2f} at N={n}" for n in common
        )
        sentence += f" Seedcast's {strategy} time / {source}'s: {comparison} (below 1 = faster)."
    return sentence


def scale_sentence(records: Sequence[Mapping[str, Any]]) -> str | None:
    """Which runs measured the network: the machine had spare CPU while they ran."""
    measured = [r for r in records if r.get("system_busy") is not None]
    if not measured:
        return None
    free = [r for r in measured if r["system_busy"] < BUSY_LIMIT]
    busy = [r for r in measured if r["system_busy"] >= BUSY_LIMIT]
    parts = []
    if free:
        largest = max(int(r["clients"]) for r in free)
        parts.append(
            f"Largest N whose run left the machine below {BUSY_LIMIT:.0%} busy: {largest}."
        )
    if busy:
        names = sorted({f"{_name(r['strategy'], _source(r))} N={r['clients']}" for r in busy})
        parts.append(
            f"Runs during which the machine was {BUSY_LIMIT:.0%}+ busy (CPU-bound: their time "
            f"measures Python and the other load, not the caps): {', '.join(names)}."
        )
    return " ".join(parts)


def caveats(config: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Where a bound is known not to be reachable by design, and why."""
    notes = []
    edges = int(config.get("edges") or 0)
    few = sorted(
        {int(r["clients"]) for r in records if r["strategy"] == "cdn"} & set(range(1, edges))
    )
    if few:
        notes.append(
            f"cdn with N < E ({', '.join(f'N={n}' for n in few)}, E={edges}): each client is "
            "served by one edge (as DNS maps a viewer to one edge), so only N edges can work "
            "and the combined-upload bound is out of reach by a factor of about E/N."
        )
    return notes


def _cell(value: Any, pattern: str = "{:.2f}") -> str:
    if value is None:
        return "-"
    return pattern.format(value)


def _html(
    title: str,
    config: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    plots: list[str],
    errors: Sequence[str] = (),
) -> str:
    summary = summarise(records)
    rows = "".join(
        f"<tr><td>{html.escape(_name(strategy, source))}</td><td>{clients}</td>"
        f"<td>{values['measured_s']:.2f}</td><td>{values['bound_s']:.2f}</td>"
        f"<td>{values['ratio']:.2f}</td><td>{values['runs']:.0f}</td>"
        f"<td>{values['unfinished']}</td><td>{_cell(values['cpu_share'], '{:.0%}')}</td>"
        f"<td>{_cell(values['system_busy'], '{:.0%}')}</td><td>{_cell(values['loadavg'], '{:.1f}')}</td></tr>"
        for (strategy, source, clients), values in summary.items()
    )
    by_series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for (strategy, source, clients), values in summary.items():
        by_series[(strategy, source)].append((clients, values["ratio"]))
    sentences = []
    for (strategy, source), points in by_series.items():
        if source == DEFAULT_SOURCE:
            ratios = [ratio for _, ratio in points]
            sentences.append(verdict(strategy, ratios, [clients for clients, _ in points]))
        else:
            sentences.append(reference_sentence(strategy, source, summary))
    scale = scale_sentence(records)
    sentences += caveats(config, records)
    items = "".join(f"<li>{html.escape(sentence)}</li>" for sentence in sentences)
    bytes_rows = "".join(
        f"<tr><td>{html.escape(_name(r['strategy'], _source(r)))}</td><td>{r['clients']}</td>"
        + "".join(
            f"<td>{r['bytes'].get(key, 0) / 2**20:.1f}</td>"
            for key in ("from_server", "from_edge", "from_peers", "edge_wasted")
        )
        + "</tr>"
        for r in records
        if r.get("bytes")
    )
    bytes_table = (
        "<h2>Bytes received by the clients, by source (MiB)</h2>"
        "<table><tr><th>strategy</th><th>N</th><th>from server</th><th>from edge</th>"
        f"<th>from peers</th><th>edge bytes wasted</th></tr>{bytes_rows}</table>"
        if bytes_rows
        else ""
    )
    error_list = (
        "<h2>Runs that failed</h2><ul>"
        + "".join(f"<li>{html.escape(line)}</li>" for line in errors)
        + "</ul>"
        if errors
        else ""
    )
    scale_text = (
        f"<h2>Network or CPU?</h2><p>{html.escape(scale)} The figure below sets each "
        "strategy's measured/bound beside the CPU its processes used: as long as the ratio "
        "stays flat while N grows, the caps (the network model) decide the time; once the "
        "processes approach all cores, Python does.</p>"
        if scale
        else ""
    )
    images = "".join(
        f'<p><img src="{name}" alt="{name}"></p>' for name in plots if name != "scale.png"
    )
    if "scale.png" in plots:
        scale_text += '<p><img src="scale.png" alt="scale.png"></p>'
    config_text = html.escape(json.dumps(dict(config), indent=2, default=str))
    shaping = (
        f"<p>Caps enforced by: {html.escape(str(config['caps_enforced_by']))} "
        f"(shaping: {html.escape(str(config.get('shaping', '')))}).</p>"
        if config.get("caps_enforced_by")
        else ""
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:64em;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
{shaping}
<ul>{items}</ul>
<table><tr><th>strategy</th><th>N</th><th>measured (s)</th><th>bound (s)</th><th>ratio</th>
<th>runs</th><th>unfinished</th><th>CPU ours</th><th>machine busy</th><th>load</th></tr>
{rows}</table>
{images}
{scale_text}
{bytes_table}
{error_list}
<h2>Configuration</h2><pre>{config_text}</pre>
</body></html>
"""


def progress_bar(console: Any) -> Any:
    """The rich progress bar every load test shows: description, bar, detail, elapsed."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
