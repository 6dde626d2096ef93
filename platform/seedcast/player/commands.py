"""``seedcast play URL``: the headless player from the command line.

The player knows nothing of viewer agents: ``--via-peer`` is added by
:mod:`seedcast.agent.commands`, which owns the command and hands
:func:`run_play` a ``via`` (the player streams through what it yields).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import urlsplit

import trio
from seedcast.config import ClusterConfig
from seedcast.errors import SeedcastError, UsageError
from seedcast.player.abr import ABR_RULES, make_abr
from seedcast.player.session import PlayerOptions, PlayerReport, play
from seedcast.units import parse_host_port


def configure_play(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url", help="manifest URL, e.g. http://video.netcinema.test/sample/manifest.mpd"
    )
    parser.add_argument("--abr", choices=sorted(ABR_RULES), default="throughput", help="ABR rule")
    parser.add_argument("--seconds", type=float, default=None, help="stop after S seconds of media")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object with the QoE figures"
    )
    parser.add_argument(
        "--dns",
        metavar="HOST:PORT",
        default=None,
        help="Seedcast DNS server for names in the URL (default: the config's dns.server)",
    )
    parser.add_argument(
        "--local-address",
        metavar="ADDRESS",
        default=None,
        help="source address for the player's connections (a viewer address in its region)",
    )
    parser.add_argument(
        "--max-buffer", type=float, default=20.0, help="seconds buffered ahead at most"
    )


Via = Callable[[str, ClusterConfig, Any, "str | None"], AbstractAsyncContextManager[str]]
"""``via(url, config, resolver, local_address)``: yields the URL to play instead of ``url``."""


def run_play(args: argparse.Namespace, config: ClusterConfig, *, via: Via | None = None) -> int:
    """Play ``args.url`` (through ``via`` when given); prints the QoE summary or JSON."""
    dns_server = args.dns or config.dns.server
    try:
        parse_host_port(dns_server, default_port=53)
    except ValueError as error:
        raise UsageError(f"--dns: {error}") from None
    if args.seconds is not None and args.seconds <= 0:
        raise UsageError("--seconds must be positive")
    parts = urlsplit(args.url)
    if parts.scheme != "http" or not parts.hostname:
        raise UsageError(
            f"expected a manifest URL such as http://HOST[:PORT]/<id>/manifest.mpd,"
            f" got {args.url!r}"
        )
    options = PlayerOptions(
        seconds=args.seconds, max_buffer_seconds=args.max_buffer, local_address=args.local_address
    )
    try:
        report = trio.run(_play, args, config, options, dns_server, via)
    except Exception as error:
        if args.json:  # scripts get the object with its error too; the CLI prints the line
            failed = PlayerReport(url=args.url, abr=args.abr, error=_message(error))
            json.dump(failed.as_json(), sys.stdout)
            sys.stdout.write("\n")
        raise
    report.url = args.url
    if args.json:
        json.dump(report.as_json(), sys.stdout)
        sys.stdout.write("\n")
    else:
        _print_summary(report)
    return 0


async def _play(
    args: argparse.Namespace,
    config: ClusterConfig,
    options: PlayerOptions,
    dns_server: str,
    via: Via | None,
) -> PlayerReport:
    from seedcast.http11 import HttpClient
    from seedcast.resolver import StubResolver

    resolver = StubResolver(dns_server, local_address=args.local_address)
    client = HttpClient(connect_timeout=3.0, read_timeout=10.0)
    url = args.url
    try:
        if via is not None:
            async with via(url, config, resolver, args.local_address) as via_url:
                return await play(via_url, make_abr(args.abr), client, options=options)
        return await play(
            url, make_abr(args.abr), client, options=options, resolve=resolver.resolve_endpoint
        )
    finally:
        await client.aclose()


def _message(error: BaseException) -> str:
    """The text of the first of our errors inside (nested) exception groups."""
    while isinstance(error, BaseExceptionGroup):
        leaves: list[BaseException] = list(error.exceptions)
        ours = [leaf for leaf in leaves if isinstance(leaf, SeedcastError | OSError)]
        error = (ours or leaves)[0]
    return str(error)


def _print_summary(report: PlayerReport) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"seedcast play {report.url}", show_header=False)
    startup = "-" if report.startup_delay_s is None else f"{report.startup_delay_s:.2f} s"
    rows = [
        ("ABR", report.abr),
        ("played", f"{report.played_seconds:.1f} s in {report.segments} segments"),
        ("startup delay", startup),
        ("stalls", f"{report.stall_count} ({report.stall_seconds:.2f} s)"),
        ("average bitrate", f"{report.avg_bitrate_kbps:.0f} kbit/s"),
        ("switches", str(report.switches)),
        (
            "bytes from peers / edges / origin",
            f"{report.bytes_from_peers} / {report.bytes_from_edges} / {report.bytes_from_origin}",
        ),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)
