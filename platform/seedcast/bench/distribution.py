"""``seedcast bench distribution``: client-server vs CDN vs P2P vs hybrid against the bound.

Every run (one strategy, one N, one repeat) launches a real cluster of
separate processes on loopback, starts N clients at the same instant, records
each client's completion time, and stops every process it started:

- **client-server**: one origin (``seedcast origin --upload u_s``); N HTTP
  clients GET the file from it.
- **cdn**: an origin and E edges (``seedcast edge --upload u_e``, u_e = u_s
  unless ``--edge-up``); the edges are filled from the origin before the
  clock starts (the bound assumes warm edges); client k fetches from edge
  k mod E.
- **p2p**: a tracker, the origin's copy of the file as the only initial seed
  (``seedcast peer --seed --upload u_s`` on the origin's library folder), N
  leechers (Seedcast peers).
- **hybrid**: p2p plus warm edges: each peer also fetches, from its edge,
  the pieces nobody it is connected to has (range requests, verified
  against the torrent's hashes, then shared with the swarm).
- **p2p with libtorrent** (reference line, ``--libtorrent``): the same
  swarm built from libtorrent sessions with the same caps.

Caps: u_s on the origin's/seed's egress, u_e on each edge's egress, u_i on
each peer's upload, d_i on each client's ingress (HTTP and BitTorrent
alike), all enforced by token buckets in the processes themselves. The
clients are virtual (``python -m seedcast.bench._clients``, several per
process), each with its own sockets and its own loopback address.

With ``--netns`` (root, Linux) every node of a run (origin, tracker, seed,
edges, each client, and a ``bench`` node from which the benchmark warms
the edges) gets its own network namespace and address in 10.77.0.0/16
(10.77.10.1 for 127.0.10.1, and so on), joined by veth pairs to a bridge
(:func:`seedcast.launcher.netns.open_network`, built before the run's
processes start and removed after they stop, also on failure or Ctrl-C).
Each client then has a worker process of its own, so its link carries only
its sockets. ``--shaping`` picks who enforces the caps: ``tc`` (the
default with --netns: tbf on each node's link, the processes get 0 =
uncapped buckets), ``buckets`` (the processes, as without --netns) or
``both``. Every record and the config say which (``"shaping"``), and so
does report.html. On a small scenario (N = 4, F = 4 MiB, 1 MiB/s caps)
tc and the buckets agreed within 10% for client-server and p2p
(tests/integration/bench/test_distribution_netns.py).

Results go to ``--out``: results.json / results.csv (one record per run),
plots and report.html, rewritten after every run, so Ctrl-C keeps what
finished. Each record also carries the CPU seconds our processes used, the
machine's busy fraction and load average during the run: a run whose
processes saturate the CPUs measures Python, not the network (see the
report's scale section).

Scale on 2 cores (measured; benchmarks/distribution_results/): what limits a
run is the CPU our processes need, which grows with the aggregate rate the
swarm moves (u_s + N u_i: every byte is read, charged, framed, hashed and
written once per hop) and with N (each peer keeps up to 50 connections, and
HAVEs go to all of them). HTTP strategies move only u_s (or E u_e): N = 128
client-server and cdn runs used 3-6% of the machine and finished at 1.00x
their bound. With the default caps, p2p took 1.13x at N = 32 (our processes
38% of both cores), 1.17x at N = 64 (80%), 1.40x at N = 128 (90%, the
machine 100% busy; libtorrent 1.36x there at 92%). At N = 128 with a quarter
of the rates, our processes still needed 60% and the ratio was 1.26x. So the
largest N that measures the network rather than our CPU is about 64 for the
swarm strategies at these caps (32 with room to spare on a shared machine),
and at least 128 for client-server and cdn.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio
from seedcast.bench._content import prepare_content
from seedcast.bench._distribution_plan import (
    BUCKETS,
    NETNS_SUBNET,
    SEEDCAST,
    SHAPING_TEXT,
    SHAPINGS,
    TC,
    DistributionOptions,
    RunSpec,
    check_options,
    libtorrent_available,
    plan_runs,
)
from seedcast.bench.report import progress_bar as new_progress_bar
from seedcast.bench.report import summarise, write_results
from seedcast.bench.theory import STRATEGIES, bound
from seedcast.config import ClusterConfig
from seedcast.errors import SeedcastError, UsageError
from seedcast.launcher.netns import check_support
from seedcast.units import format_size, parse_duration, parse_rate, parse_size

__all__ = ["DistributionOptions", "RunSpec", "configure", "plan_runs", "run", "run_benchmark"]

TITLE = "File distribution: client-server vs CDN vs P2P vs hybrid"


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def configure(parser: argparse.ArgumentParser) -> None:
    defaults = DistributionOptions()
    parser.add_argument("--file-size", default="16MiB", help="file size F (default 16MiB)")
    parser.add_argument(
        "--clients",
        type=_int_list,
        default=defaults.clients,
        metavar="N,N,...",
        help="numbers of clients N (default 1,2,4,8,16,32; at most 250)",
    )
    parser.add_argument("--server-up", default="4MiB/s", help="server upload u_s (default 4MiB/s)")
    parser.add_argument("--peer-up", default="512KiB/s", help="peer upload u_i (default 512KiB/s)")
    parser.add_argument(
        "--peer-down", default="8MiB/s", help="client download d_i (default 8MiB/s)"
    )
    parser.add_argument("--edges", type=int, default=2, help="CDN edges E (default 2)")
    parser.add_argument(
        "--edge-up", default=None, help="upload of each edge (default: the same as --server-up)"
    )
    parser.add_argument(
        "--origin-up",
        default="0",
        help="origin's cap in cdn/hybrid, where it only fills the edges before the clock "
        "(default 0 = uncapped)",
    )
    parser.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help=f"comma-separated subset of {','.join(STRATEGIES)} (default: all)",
    )
    parser.add_argument(
        "--libtorrent",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run p2p with libtorrent sessions as a reference line "
        "(default: on when libtorrent is installed)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per (strategy, N) (default 1)")
    parser.add_argument(
        "--seed", type=int, default=1, help="random seed (file content, peer ids, piece order)"
    )
    parser.add_argument("--out", default="bench-distribution", metavar="DIR", help="output folder")
    parser.add_argument(
        "--piece-length", default="64KiB", help="torrent piece length (default 64KiB)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="client worker processes per run (default 0 = one per 8 clients, 2 to 8)",
    )
    parser.add_argument(
        "--run-timeout",
        default="0",
        help="time bound of each run (default 0 = 2 x its bound + 60 s)",
    )
    parser.add_argument(
        "--workdir", metavar="DIR", default=None, help="scratch folder (default: a temp dir)"
    )
    parser.add_argument(
        "--netns",
        action="store_true",
        help="put every node (origin, tracker, seed, edges, each client) in its own network "
        f"namespace with its own address in {NETNS_SUBNET}, joined by a bridge (root, Linux)",
    )
    parser.add_argument(
        "--shaping",
        choices=SHAPINGS,
        default=None,
        help="who enforces the caps: tc (tbf on each node's link), buckets (token buckets in "
        "the processes) or both (default: tc with --netns, else buckets; tc and both need "
        "--netns)",
    )


def options_from_args(args: argparse.Namespace) -> DistributionOptions:
    try:
        options = DistributionOptions(
            file_size=parse_size(args.file_size),
            clients=tuple(args.clients),
            server_up=parse_rate(args.server_up),
            peer_up=parse_rate(args.peer_up),
            peer_down=parse_rate(args.peer_down),
            edges=args.edges,
            edge_up=parse_rate(args.edge_up) if args.edge_up else 0.0,
            origin_up=parse_rate(args.origin_up),
            strategies=tuple(part.strip() for part in args.strategies.split(",") if part.strip()),
            libtorrent=libtorrent_available() if args.libtorrent is None else args.libtorrent,
            repeat=args.repeat,
            seed=args.seed,
            piece_length=parse_size(args.piece_length),
            workers=args.workers,
            run_timeout=parse_duration(args.run_timeout),
            netns=args.netns,
            shaping=args.shaping or (TC if args.netns else BUCKETS),
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    check_options(options)
    return options


def run(args: argparse.Namespace, config: ClusterConfig) -> int:
    from rich.console import Console

    options = options_from_args(args)
    console = Console(stderr=True)
    out = Path(args.out)
    try:
        records, interrupted = run_benchmark(
            options, out, workdir=Path(args.workdir) if args.workdir else None, console=console
        )
    except KeyboardInterrupt:  # pragma: no cover - run_benchmark handles it
        return 130
    _print_table(console, records)
    console.print(f"results in {out}/ (report.html, results.json, results.csv, *.png)")
    if interrupted:
        console.print("[yellow]interrupted: the report holds the runs that finished")
        return 130
    return 0


def run_benchmark(
    options: DistributionOptions,
    out: Path,
    *,
    workdir: Path | None = None,
    console: Any = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Run every planned run; returns (records, interrupted). Rewrites the report after each."""
    # The runner (HTTP core, cluster, netns) loads only when runs start: `seedcast bench`
    # imports every mode module for its --help (see seedcast.bench.commands).
    from seedcast.bench._distribution_run import run_network, run_once

    check_options(options)
    if options.netns:
        check_support("bench distribution --netns")
    out.mkdir(parents=True, exist_ok=True)
    scratch = workdir or Path(tempfile.mkdtemp(prefix="seedcast-distribution-"))
    scratch.mkdir(parents=True, exist_ok=True)
    runs = plan_runs(options)
    records: list[dict[str, Any]] = []
    config_echo = {
        **options.to_json(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
            "loadavg_at_start": os.getloadavg()[0],
        },
        "caps_enforced_by": SHAPING_TEXT.get(options.shaping, options.shaping),
        "theory": {
            "client-server": "max(N*F/u_s, F/d_min)",
            "cdn": "max(N*F/(E*u_e), F/d_min) (edges filled before the clock)",
            "p2p": "max(F/u_s, F/d_min, N*F/(u_s + sum u_i))",
            "hybrid": "max(F/(u_s+E*u_e), F/d_min, N*F/(u_s + E*u_e + sum u_i))",
        },
    }
    interrupted = False
    progress_bar = new_progress_bar(console)
    try:
        with progress_bar:
            overall = progress_bar.add_task("runs", total=len(runs), detail="")
            content_task = progress_bar.add_task(
                "file", total=None, detail=f"F = {format_size(options.file_size)}"
            )
            content = prepare_content(
                scratch / "data", options.file_size, options.seed, options.piece_length
            )
            progress_bar.remove_task(content_task)
            for spec in runs:
                current = progress_bar.add_task(
                    spec.label,
                    total=spec.clients * options.file_size,
                    detail=f"0/{spec.clients} done, bound {bound(spec.strategy, options.scenario(spec.clients)):.1f} s",
                )

                def update(
                    done: int, received: int, task: Any = current, spec: RunSpec = spec
                ) -> None:
                    progress_bar.update(
                        task,
                        completed=min(received, spec.clients * options.file_size),
                        detail=f"{done}/{spec.clients} done",
                    )

                try:
                    with run_network(spec, options) as network:
                        if network is not None and console is not None:
                            console.print(
                                f"network {network.layout.prefix}-*: {spec.label}, "
                                f"{len(network.layout.nodes)} namespaces in {NETNS_SUBNET}, "
                                f"shaping {options.shaping}",
                                highlight=False,
                            )
                        record = trio.run(
                            run_once, spec, options, content, scratch, out / "logs", update, network
                        )
                except SeedcastError as error:
                    record = {
                        "strategy": spec.strategy,
                        "source": spec.source,
                        "clients": spec.clients,
                        "repeat": spec.repeat,
                        "shaping": options.shaping,
                        "error": str(error),
                    }
                    if console is not None:
                        console.print(f"[red]{spec.label}: {error}")
                progress_bar.remove_task(current)
                records.append(record)
                finished = [r for r in records if "measured_s" in r]
                write_results(out, config_echo, finished, title=TITLE, errors=_errors(records))
                progress_bar.advance(overall)
                if console is not None and "measured_s" in record:
                    console.print(_line(record))
    except KeyboardInterrupt:
        interrupted = True
        finished = [r for r in records if "measured_s" in r]
        write_results(out, config_echo, finished, title=TITLE, errors=_errors(records))
    finally:
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return records, interrupted


def _errors(records: Sequence[dict[str, Any]]) -> list[str]:
    return [
        f"{record['strategy']} N={record['clients']}: {record['error']}"
        for record in records
        if "error" in record
    ]


def _line(record: dict[str, Any]) -> str:
    name = record["strategy"] + ("" if record["source"] == SEEDCAST else f" ({record['source']})")
    unfinished = f", {record['unfinished']} unfinished" if record.get("unfinished") else ""
    busy = record.get("system_busy")
    cpu = f", CPU ours {record['cpu_share']:.0%}" + (f" / machine {busy:.0%}" if busy else "")
    return (
        f"{name:>22} N={record['clients']:<4} {record['measured_s']:7.1f} s  "
        f"bound {record['bound_s']:7.1f} s  ratio {record['ratio']:.2f}{unfinished}{cpu}, "
        f"load {record['loadavg_after']:.1f}"
    )


def _print_table(console: Any, records: Sequence[dict[str, Any]]) -> None:
    from rich.table import Table

    finished = [record for record in records if "measured_s" in record]
    if not finished:
        return
    table = Table(title=TITLE)
    for column in ("strategy", "N", "measured s", "bound s", "ratio", "CPU ours", "machine busy"):
        table.add_column(column, justify="right")
    for (strategy, source, clients), values in summarise(finished).items():
        name = strategy if source == SEEDCAST else f"{strategy} ({source})"
        busy = values.get("system_busy")
        table.add_row(
            name,
            str(clients),
            f"{values['measured_s']:.1f}",
            f"{values['bound_s']:.1f}",
            f"{values['ratio']:.2f}",
            f"{values.get('cpu_share', 0):.0%}",
            "-" if busy is None else f"{busy:.0%}",
        )
    console.print(table)
