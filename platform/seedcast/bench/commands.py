"""``seedcast bench MODE``: each mode lives in the module that owns what it measures.

A mode module defines ``configure(parser)`` and ``run(args, config) -> int``,
like a command. Benchmarks run our code and the named baseline in the same run
and print the ratio; they are never part of the test suite.

Every mode module is imported to build ``seedcast bench --help``, so a mode
imports the roles it measures (servers, swarm, HTTP core: ~0.35 s together,
measured with ``python -X importtime``) inside the function that runs them,
each with a comment; everything cheap is imported at the top.
"""

from __future__ import annotations

import argparse
import importlib

from seedcast.config import ClusterConfig
from seedcast.errors import NotReadyError

MODES: dict[str, tuple[str, str]] = {
    "http": ("seedcast.bench.http", "HTTP core vs nginx and aiohttp, load from wrk"),
    "origin": ("seedcast.bench.origin", "origin segments/manifest vs nginx; publish vs raw ffmpeg"),
    "edge": (
        "seedcast.bench.edge",
        "edge cache hits vs nginx proxy_cache; eviction policy hit ratio",
    ),
    "dns": (
        "seedcast.bench.dns",
        "DNS vs a dnspython responder and Knot, load from dnsperf",
    ),
    "swarm": ("seedcast.bench.swarm", "BitTorrent swarm vs the bound and libtorrent"),
    "launch": (
        "seedcast.bench.launch",
        "time to ready and RSS per process of the default cluster",
    ),
    "distribution": (
        "seedcast.bench.distribution",
        "client-server vs CDN vs P2P vs hybrid against the bound",
    ),
    "streaming": (
        "seedcast.bench.streaming",
        "Poisson viewers, cdn vs hybrid: startup, stalls, P2P share",
    ),
}


def configure_bench(parser: argparse.ArgumentParser) -> None:
    modes = parser.add_subparsers(dest="mode", metavar="MODE", required=True)
    for mode, (module_name, help_text) in MODES.items():
        sub = modes.add_parser(mode, help=help_text, description=help_text)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                sub.set_defaults(bench_missing=module_name)
                continue
            raise
        module.configure(sub)
        sub.set_defaults(bench_run=module.run)


def run_bench(args: argparse.Namespace, config: ClusterConfig) -> int:
    run = getattr(args, "bench_run", None)
    if run is None:
        raise NotReadyError(f"bench {args.mode}: not built yet ({args.bench_missing} is missing)")
    result: int = run(args, config)
    return result
