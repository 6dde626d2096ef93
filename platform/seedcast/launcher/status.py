"""``seedcast status``: the processes of the running cluster, as a table or JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from seedcast.config import ClusterConfig
from seedcast.control import ControlError
from seedcast.errors import UsageError
from seedcast.launcher.cluster import (
    ClusterNotRunning,
    absolute_dirs,
    command_hint,
    query_cluster,
    stale_rows,
)
from seedcast.launcher.state import ClusterState, is_launcher, read_state
from seedcast.units import format_size


def configure_status(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print a JSON list with one object per process"
    )
    parser.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=1.0,
        default=None,
        metavar="S",
        help="keep the table on screen, refreshed every S seconds (default 1) until Ctrl-C",
    )


def run_status(args: argparse.Namespace, config: ClusterConfig) -> int:
    run_dir = absolute_dirs(config).run_dir
    state = read_state(run_dir)
    if state is None:
        raise ClusterNotRunning(f"no cluster is running in {run_dir} (start one with seedcast up)")
    stale = not is_launcher(state.launcher_pid, state)
    rows: list[dict[str, Any]]
    if not stale:
        try:
            rows = list(query_cluster(state)["processes"])
        except (ControlError, TimeoutError, OSError):
            rows = stale_rows(state)
            print(
                f"launcher {state.launcher_pid} does not answer; showing the state file",
                file=sys.stderr,
            )
    else:
        rows = stale_rows(state)
        print(
            f"launcher {state.launcher_pid} is gone: stale state (clean up with "
            f"{command_hint(args, 'down')})",
            file=sys.stderr,
        )
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    elif args.watch and not stale:
        _watch(state, args.watch)
    else:
        _printprocess_table(rows, state)
    return 1 if stale else 0


def _watch(state: ClusterState, interval: float) -> None:
    """A live table until Ctrl-C or until the cluster goes away."""
    from rich.console import Console
    from rich.live import Live

    if interval <= 0:
        raise UsageError("--watch: the interval must be positive")
    console = Console(width=max(120, Console().width))
    with Live(console=console, auto_refresh=False) as live:
        while True:
            try:
                rows = list(query_cluster(state)["processes"])
            except (ControlError, TimeoutError, OSError):
                live.update(f"cluster {state.cluster!r} is gone", refresh=True)
                return
            live.update(process_table(rows, state), refresh=True)
            try:
                time.sleep(interval)  # the refresh period of a display, not a wait for state
            except KeyboardInterrupt:
                return


_RATES = {
    "edge": (("req_per_s", "req/s", "{:.1f}"), ("hit_ratio", "hit", "{:.0%}")),
    "dns": (("queries_per_s", "q/s", "{:.1f}"),),
    "peer": (("peers", "peers", "{}"), ("bytes_up", "up", "size"), ("bytes_down", "down", "size")),
    "viewer": (
        ("peers", "peers", "{}"),
        ("bytes_up", "up", "size"),
        ("bytes_down", "down", "size"),
    ),
}


def format_rates(role: str, statistics: Mapping[str, Any]) -> str:
    parts = []
    known = _RATES.get(role)
    if known:
        for key, label, style in known:
            value = statistics.get(key)
            if value is None:
                continue
            with contextlib.suppress(TypeError, ValueError):
                shown = format_size(int(value)) if style == "size" else style.format(value)
                parts.append(f"{label} {shown}")
    else:
        for key, value in list(statistics.items())[:3]:
            parts.append(f"{key} {value}")
    return "  ".join(parts)


def _uptime(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or seconds <= 0:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def _printprocess_table(rows: Sequence[Mapping[str, Any]], state: ClusterState) -> None:
    from rich.console import Console

    console = Console(width=max(120, Console().width))
    console.print(process_table(rows, state))
    for row in rows:
        if row.get("state") == "failed" and row.get("error"):
            console.print(f"[red]{row['name']}: {row['error']}[/] (log: {row.get('log')})")


def process_table(rows: Sequence[Mapping[str, Any]], state: ClusterState) -> Any:
    from rich.table import Table

    table = Table(title=f"cluster {state.cluster!r} ({state.run_dir})")
    for column in ("role", "name", "pid", "address", "state", "uptime", "restarts", "RSS", "rates"):
        table.add_column(
            column, justify="right" if column in ("pid", "restarts", "RSS") else "left"
        )
    styles = {
        "ready": "green",
        "starting": "yellow",
        "restarting": "yellow",
        "failed": "bold red",
        "stopped": "dim",
    }
    for row in rows:
        state_text = str(row.get("state"))
        rss = row.get("rss_bytes")
        table.add_row(
            str(row.get("role")),
            str(row.get("name")),
            str(row.get("pid") or "-"),
            str(row.get("address")),
            f"[{styles.get(state_text, 'white')}]{state_text}[/]",
            _uptime(row.get("uptime")),
            str(row.get("restarts", 0)),
            format_size(rss) if isinstance(rss, int) else "-",
            format_rates(str(row.get("role")), row.get("statistics") or {}),
        )
    return table


__all__ = ["configure_status", "run_status"]
