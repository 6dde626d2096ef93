"""``seedcast up --demo``: the whole product in one command (``make demo``).

It starts a detached cluster whose viewers stream the sample with the
headless player through their agents, joining ``peers.play_stagger`` seconds
apart (each viewer's agent starts its player itself, from the config, so the
launcher does nothing special for them). While they play, a live table shows
every process and each viewer's playback; when all have finished it prints a
QoE and offload summary and the URLs to watch in a browser, then keeps the
cluster up until Ctrl-C (or stops at once with ``--demo-exit``).

Viewers report their player through ``seedcast status`` figures named
``player_*`` (see ``seedcast.agent.watching``).
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from seedcast.config import ClusterConfig
from seedcast.errors import SeedcastError
from seedcast.launcher.cluster import query_cluster, stop_cluster
from seedcast.launcher.state import read_state
from seedcast.launcher.status import process_table
from seedcast.units import format_size

DEMO_PLAY_SECONDS = 30.0
REFRESH_SECONDS = 1.0
FINISHED = ("done", "failed")


def demo_config(config: ClusterConfig, seconds: float) -> ClusterConfig:
    """The cluster with viewers that play ``seconds`` of the sample as they start."""
    peers = dataclasses.replace(config.peers, play_seconds=seconds)
    return dataclasses.replace(config, peers=peers)


def run_demo(args: argparse.Namespace, config: ClusterConfig) -> int:
    from rich.console import Console
    from seedcast.launcher.up import run_up  # a cycle: `up --demo` runs this, which runs `up`

    console = Console(highlight=False, width=max(130, Console().width))
    if config.peers.count < 1:
        raise SeedcastError("the demo needs viewers: use --peers 1 or more")
    seconds = args.demo_seconds or DEMO_PLAY_SECONDS
    config = demo_config(config, seconds)
    detached = argparse.Namespace(**{**vars(args), "detach": True, "demo": False})
    status = run_up(detached, config)
    state = read_state(config.run_dir)
    if state is None:
        raise SeedcastError(f"the cluster did not start (see {config.run_dir / 'logs'})")
    try:
        if status != 0:
            console.print("[bold red]some processes failed to start; the demo goes on without them")
        # Join, play, and a margin for startup and stalls.
        deadline = time.monotonic() + seconds + config.peers.count * config.peers.play_stagger + 60
        rows = _watch_viewers(console, state, query_cluster, deadline)
        _print_summary(console, rows)
        _print_watch_hints(console, rows)
        if not args.demo_exit:
            console.print("[bold]The cluster keeps running; Ctrl-C stops it.")
            _wait_for_interrupt()
    finally:
        console.print(f"stopping: {stop_cluster(state, 15.0)}")
    failed = [row for row in _viewers(rows) if _player(row).get("state") != "done"]
    return 1 if failed else 0


def _viewers(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [row for row in rows if row.get("role") == "viewer"]


def _player(row: Mapping[str, Any]) -> dict[str, Any]:
    statistics = row.get("statistics") or {}
    return {
        key.removeprefix("player_"): value
        for key, value in statistics.items()
        if key.startswith("player_")
    }


def _watch_viewers(
    console: Any, state: Any, query: Any, deadline: float
) -> list[Mapping[str, Any]]:
    """Refresh the live table until every viewer's player is done (or the deadline)."""
    from rich.console import Group
    from rich.live import Live

    rows: list[Mapping[str, Any]] = []
    with Live(console=console, auto_refresh=False) as live:
        while time.monotonic() < deadline:
            rows = list(query(state)["processes"])
            live.update(Group(process_table(rows, state), _viewer_table(rows)), refresh=True)
            viewers = _viewers(rows)
            if viewers and all(_player(row).get("state") in FINISHED for row in viewers):
                break
            # A display's refresh period, not a stand-in for an event.
            time.sleep(REFRESH_SECONDS)
    return rows


def _viewer_table(rows: Sequence[Mapping[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="viewers: playback through their agents")
    for column in (
        "viewer",
        "region",
        "player",
        "played",
        "startup",
        "stalls",
        "bitrate",
        "from peers",
        "from edges",
        "P2P share",
    ):
        table.add_column(
            column, justify="left" if column in ("viewer", "region", "player") else "right"
        )
    for row in _viewers(rows):
        player = _player(row)
        peers, edges = int(player.get("bytes_peers", 0)), int(player.get("bytes_edges", 0))
        origin = int(player.get("bytes_origin", 0))
        total = peers + edges + origin
        startup = player.get("startup_s")
        table.add_row(
            str(row.get("name")),
            str(row.get("region") or "-"),
            str(player.get("state", "-")),
            f"{float(player.get('played_s', 0)):.0f} s",
            "-" if startup is None else f"{float(startup):.2f} s",
            f"{player.get('stalls', 0)} ({float(player.get('stall_s', 0)):.1f} s)",
            f"{float(player.get('bitrate_kbps', 0)):.0f} kbit/s",
            format_size(peers),
            format_size(edges + origin),
            f"{peers / total:.0%}" if total else "-",
        )
    return table


def _print_summary(console: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    viewers = [(row, _player(row)) for row in _viewers(rows)]
    if not viewers:
        console.print("[yellow]no viewers ran")
        return
    peers = sum(int(player.get("bytes_peers", 0)) for _, player in viewers)
    edges = sum(int(player.get("bytes_edges", 0)) for _, player in viewers)
    origin = sum(int(player.get("bytes_origin", 0)) for _, player in viewers)
    total = peers + edges + origin
    startups = [float(p["startup_s"]) for _, p in viewers if p.get("startup_s") is not None]
    stalls = sum(int(player.get("stalls", 0)) for _, player in viewers)
    failed = [row["name"] for row, player in viewers if player.get("state") != "done"]
    console.print(
        "[bold]QoE[/]: "
        + (f"median startup {sorted(startups)[len(startups) // 2]:.2f} s, " if startups else "")
        + f"{stalls} stall(s) over {len(viewers)} viewers"
        + (f"; [red]not finished: {', '.join(failed)}[/]" if failed else "")
    )
    if total:
        console.print(
            f"[bold]Offload[/]: {format_size(peers)} of {format_size(total)} "
            f"({peers / total:.0%}) came from other viewers; the CDN carried "
            f"{format_size(edges)} from edges and {format_size(origin)} from the origin."
        )


def _print_watch_hints(console: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    origin = next((row for row in rows if row.get("role") == "origin"), None)
    viewer = next(iter(_viewers(rows)), None)
    if origin is not None:
        console.print(f"[bold]Watch in a browser[/]: http://{origin['address']}/watch/sample")
    if viewer is not None:
        console.print(f"  through a viewer's agent: http://{viewer['address']}/watch/sample")
        console.print(f"  or: mpv http://{viewer['address']}/sample/manifest.mpd")


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
