"""What every benchmark report writes the same way: files replaced whole, the CSV, the
figures and the HTML page around a report's own sections.

Used by :mod:`seedcast.bench.report` (distribution) and
:mod:`seedcast.bench._streaming_report` (streaming), so their files look alike.
"""

from __future__ import annotations

import csv
import html
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

_DPI = 110


def machine() -> dict[str, Any]:
    """What a report records about the machine it ran on (CPUs, Python, system, load)."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "loadavg_at_start": os.getloadavg()[0],
    }


def atomic_write(path: Path, text: str) -> None:
    """Write ``path`` through a temporary file, so a reader never sees half a report."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``rows`` as CSV with ``columns`` (other keys ignored), replacing ``path`` whole."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    temporary.replace(path)


def cell(value: Any, pattern: str = "{:.2f}") -> str:
    """A table cell: ``value`` formatted, or "-" when there is none."""
    return "-" if value is None else pattern.format(value)


def label_axes(
    axes: Any,
    *,
    title: str,
    ylabel: str,
    xlabel: str | None = None,
    grid_axis: str = "both",
    legend_loc: str = "best",
) -> None:
    """Title, axis labels, the light grid and the small legend every report figure has."""
    if xlabel is not None:
        axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3, axis=grid_axis)
    axes.legend(fontsize=8, loc=legend_loc)


def save_figure(figure: Any, out: Path, name: str) -> str:
    """Lay out, save as ``out/name`` and close ``figure``; returns ``name`` for the page."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(out / name, dpi=_DPI)
    plt.close(figure)
    return name


def error_section(errors: Sequence[str]) -> str:
    """The "Runs that failed" list, or nothing when every run was measured."""
    if not errors:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in errors)
    return f"<h2>Runs that failed</h2><ul>{items}</ul>"


def page(title: str, body: str, errors: Sequence[str]) -> str:
    """The whole HTML page: head and style, ``body``, failed runs, then where the
    configuration is (results.json beside the page holds it once, with the runs)."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:64em;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
{body}
{error_section(errors)}
<h2>Configuration</h2>
<p>The options, the machine and the definitions of this report are the <code>config</code>
of <a href="results.json">results.json</a>, beside its runs.</p>
</body></html>
"""
