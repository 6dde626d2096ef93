"""``seedcast simulate distribution|streaming|calibrate``: the benches' scenarios, simulated.

``distribution`` and ``streaming`` take the options of ``seedcast bench
distribution`` / ``bench streaming`` (the same parser code) and write the
same results.json, results.csv, plots and report.html, from a virtual clock
instead of real processes, so N is no longer bounded by the machine:
``--model piece`` runs the product's picker and choker for every peer
(about 30 s of CPU at N = 256), ``--model fluid`` the flow model (10^6 peers in
seconds), ``auto`` picks piece level up to ``PIECE_LIMIT`` clients.
``calibrate`` sets simulations beside real bench results and writes the
calibration report.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

from seedcast.config import ClusterConfig
from seedcast.errors import UsageError

__all__ = ["configure_simulate", "run_simulate", "simulate_record"]

PIECE_LIMIT = 256
MAX_SIM_CLIENTS = 10_000_000
TITLE = "Simulated file distribution: client-server vs CDN vs P2P vs hybrid"
STREAMING_TITLE = "Simulated streaming: CDN only vs hybrid CDN + P2P"
_SUBSAMPLE = 2000
"""Completion times kept per record above this many clients (evenly spaced quantiles)."""


def configure_simulate(parser: argparse.ArgumentParser) -> None:
    from seedcast.bench import distribution, streaming

    modes = parser.add_subparsers(dest="mode", metavar="MODE", required=True)
    sub = modes.add_parser(
        "distribution",
        help="file distribution, the options of `seedcast bench distribution`",
        description="Simulate `seedcast bench distribution` (its options; N up to 10^7).",
    )
    distribution.configure(sub)
    sub.set_defaults(out="sim-distribution")
    sub.add_argument(
        "--model",
        choices=("auto", "piece", "fluid"),
        default="auto",
        help=f"piece: the product's picker and choker per peer; fluid: the flow model; "
        f"auto: piece up to {PIECE_LIMIT} clients (default)",
    )
    sub = modes.add_parser(
        "streaming",
        help="viewers streaming, the options of `seedcast bench streaming`",
        description="Simulate `seedcast bench streaming` (its options; V up to 10^6).",
    )
    streaming.configure(sub)
    sub.set_defaults(out="sim-streaming")
    # --arrivals poisson|flash and --flash come with the bench's own options.
    sub.add_argument(
        "--policy",
        choices=("round-robin", "consistent-hash"),
        default="round-robin",
        help="the DNS's edge policy for the viewers (default round-robin)",
    )
    sub = modes.add_parser(
        "calibrate",
        help="real bench results beside simulations of the same settings: the report",
        description="Set simulations beside real `bench distribution` results (table, plot).",
    )
    sub.add_argument(
        "--real",
        action="append",
        required=True,
        metavar="DIR",
        help="a `bench distribution` output folder (results.json); repeatable",
    )
    sub.add_argument("--clients", default="4,8,16,32,64", help="N to compare (4,8,16,32,64)")
    sub.add_argument(
        "--scale",
        action="store_true",
        help="also plot simulated time vs N from 1 to 10^6 and CDN egress vs viewers",
    )
    sub.add_argument("--out", default="sim-calibration", metavar="DIR", help="output folder")


def run_simulate(args: argparse.Namespace, config: ClusterConfig) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    if args.mode == "distribution":
        return _run_distribution(args, console)
    if args.mode == "streaming":
        return _run_streaming(args, console)
    from seedcast.sim.calibration import write_calibration

    clients = tuple(int(part) for part in args.clients.split(",") if part.strip())
    summary = write_calibration(
        [Path(folder) for folder in args.real], Path(args.out), clients, scale=args.scale
    )
    for line in summary:
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"report in {args.out}/ (calibration.html, calibration.json, *.png)")
    return 0


# -- distribution ----------------------------------------------------------------------------


def _distribution_options(args: argparse.Namespace) -> Any:
    from seedcast.bench.distribution import options_from_args

    clients = tuple(args.clients)
    if any(not 1 <= n <= MAX_SIM_CLIENTS for n in clients):
        raise UsageError(f"--clients: each N must be 1..{MAX_SIM_CLIENTS}")
    # The bench's own parsing and checks, minus its limit on real clients.
    args = argparse.Namespace(**{**vars(args), "clients": (1,), "libtorrent": False})
    return dataclasses.replace(options_from_args(args), clients=clients)


def simulate_record(
    strategy: str, options: Any, clients: int, *, model: str = "auto", repeat: int = 0
) -> dict[str, Any]:
    """One bench-shaped record (``measured_s``, ``bound_s``, ``ratio``, ...) from a simulation."""
    from seedcast.bench.theory import bound
    from seedcast.sim import calibration

    scenario = options.scenario(clients)
    chosen = model if model != "auto" else ("piece" if clients <= PIECE_LIMIT else "fluid")
    started = time.process_time()
    if chosen == "piece":
        from seedcast.sim.swarm import simulate_distribution

        settings = dataclasses.replace(calibration.PIECE, piece_length=options.piece_length)
        result = simulate_distribution(
            strategy, scenario, settings, seed=options.seed * 1000 + repeat
        )
        times = list(result.completion_s)
        unfinished, received = result.unfinished, result.bytes
    else:
        from seedcast.sim.fluid import fluid_distribution

        settings_f = dataclasses.replace(
            calibration.fluid_settings(strategy), piece_length=options.piece_length
        )
        finished = fluid_distribution(strategy, scenario, settings_f)
        done = finished[finished < math.inf]
        times = sorted(float(t) for t in (done if len(done) <= _SUBSAMPLE else _quantiles(done)))
        unfinished, received = int(len(finished) - len(done)), {}
    measured = max(times) if times else math.inf
    limit = bound(strategy, scenario)
    return {
        "strategy": strategy,
        "source": "seedcast",
        "model": chosen,
        "clients": clients,
        "repeat": repeat,
        "measured_s": measured,
        "bound_s": limit,
        "ratio": measured / limit,
        "min_client_s": min(times) if times else None,
        "completion_s": [round(t, 4) for t in times],
        "unfinished": unfinished,
        "bytes": received,
        "sim_cpu_s": round(time.process_time() - started, 3),
    }


def _quantiles(values: Any) -> Any:
    import numpy as np

    return np.quantile(values, np.linspace(0, 1, _SUBSAMPLE))


def _run_distribution(args: argparse.Namespace, console: Any) -> int:
    from seedcast.bench.report import write_results
    from seedcast.sim import calibration

    options = _distribution_options(args)
    out = Path(args.out)
    config = {
        **options.to_json(),
        "simulation": {"model": args.model, **calibration.describe()},
    }
    records: list[dict[str, Any]] = []
    for repeat in range(options.repeat):
        for clients in options.clients:
            for strategy in options.strategies:
                record = simulate_record(
                    strategy, options, clients, model=args.model, repeat=repeat
                )
                records.append(record)
                write_results(out, config, records, title=TITLE)
                console.print(
                    f"{strategy:>14} N={clients:<8} {record['measured_s']:9.2f} s  bound "
                    f"{record['bound_s']:9.2f} s  ratio {record['ratio']:.3f}  "
                    f"({record['model']}, {record['sim_cpu_s']:.1f} s CPU)",
                    highlight=False,
                    soft_wrap=True,
                )
    console.print(f"results in {out}/ (report.html, results.json, results.csv, *.png)")
    return 0


# -- streaming -------------------------------------------------------------------------------


def _run_streaming(args: argparse.Namespace, console: Any) -> int:
    from seedcast.bench.report import write_results
    from seedcast.bench.streaming import options_from_args, summarise_viewers
    from seedcast.sim import calibration
    from seedcast.sim.streaming import simulate_streaming, viewer_results

    viewers = int(args.viewers)
    if not 1 <= viewers <= MAX_SIM_CLIENTS:
        raise UsageError(f"--viewers must be 1..{MAX_SIM_CLIENTS}")
    options = dataclasses.replace(
        options_from_args(argparse.Namespace(**{**vars(args), "viewers": 1})), viewers=viewers
    )
    out = Path(args.out)
    config = {
        **options.to_json(),
        "arrivals": options.arrivals,
        "flash_seconds": options.flash_seconds,
        "policy": args.policy,
        "simulation": calibration.describe(),
    }
    records = []
    for strategy in options.strategies:
        settings = dataclasses.replace(
            calibration.stream_settings(options, strategy, options.arrivals, options.flash_seconds),
            policy=args.policy,
        )
        started = time.process_time()
        outcome = simulate_streaming(settings)
        results = viewer_results(outcome)
        record = summarise_viewers(strategy, results, viewers=viewers)
        if viewers > _SUBSAMPLE:
            record["per_viewer"] = record["per_viewer"][:_SUBSAMPLE]
        record["sim_cpu_s"] = round(time.process_time() - started, 3)
        records.append(record)
        write_results(out, config, records, title=STREAMING_TITLE)
        console.print(
            f"{strategy:>8} V={viewers}: startup median {record['startup_median_s']:.2f} s, "
            f"stall ratio {record['stall_ratio'] or 0:.4f}, P2P share "
            f"{record['p2p_share'] or 0:.0%}, CDN egress "
            f"{record['cdn_egress_bytes'] / 2**20:.0f} MiB ({record['sim_cpu_s']:.1f} s CPU)",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"results in {out}/ (report.html, results.json, results.csv, *.png)")
    return 0
