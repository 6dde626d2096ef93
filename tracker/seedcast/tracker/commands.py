"""``seedcast tracker``: run the BitTorrent tracker in the foreground."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from seedcast.config import ClusterConfig
from seedcast.errors import UsageError
from seedcast.units import parse_host_port


def configure_tracker(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="tracker", help="process name (default: tracker)")
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=None,
        help="HTTP (and UDP) address to listen on (default: tracker.listen, 127.0.30.1:6969)",
    )
    parser.add_argument(
        "--allow",
        metavar="INFO_HASH",
        action="append",
        default=None,
        help="private mode: only this hex info hash (repeatable; default: tracker.allowlist)",
    )
    parser.add_argument("--no-udp", action="store_true", help="HTTP only, no BEP 15 UDP tracker")


def run_tracker(args: argparse.Namespace, config: ClusterConfig) -> int:
    from seedcast.roles import run_role

    from .server import TrackerService

    changes: dict[str, Any] = {}
    if args.listen is not None:
        try:
            host, port = parse_host_port(args.listen)
        except ValueError as error:
            raise UsageError(f"--listen: {error}") from None
        changes["listen"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if args.allow:
        changes["allowlist"] = tuple(args.allow)
    if args.no_udp:
        changes["udp"] = False
    if changes:
        config = dataclasses.replace(config, tracker=dataclasses.replace(config.tracker, **changes))
    service = TrackerService(config, args.name)

    def statistics() -> dict[str, float | int | str]:
        snapshot = service.tracker.statistics()
        return {
            "torrents": snapshot.torrents,
            "peers": snapshot.peers,
            "seeders": snapshot.seeders,
            "announces": sum(snapshot.announces.values()),
        }

    return run_role(
        role="tracker",
        name=args.name,
        config=config,
        serve=lambda task_status: service.serve(task_status=task_status),
        statistics=statistics,
        debug=bool(getattr(args, "debug", False)),
    )
