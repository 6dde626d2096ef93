"""``seedcast down``: stop the running cluster (its launcher, else what is left)."""

from __future__ import annotations

import argparse

from seedcast.config import ClusterConfig
from seedcast.launcher.cluster import (
    SHUTDOWN_SECONDS,
    ClusterNotRunning,
    absolute_dirs,
    remove_network,
    stop_cluster,
)
from seedcast.launcher.state import read_state


def configure_down(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=SHUTDOWN_SECONDS,
        metavar="S",
        help=f"seconds to wait for a graceful stop before killing (default {SHUTDOWN_SECONDS:g})",
    )


def run_down(args: argparse.Namespace, config: ClusterConfig) -> int:
    run_dir = absolute_dirs(config).run_dir
    state = read_state(run_dir)
    if state is None:
        network = remove_network(run_dir)
        if network:
            print(f"no cluster is running in {run_dir} ({network})")
            return 0
        raise ClusterNotRunning(f"no cluster is running in {run_dir}: nothing to stop")
    how = stop_cluster(state, args.timeout)
    print(f"cluster {state.cluster!r} stopped ({len(state.processes)} processes; {how})")
    return 0


__all__ = ["configure_down", "run_down"]
