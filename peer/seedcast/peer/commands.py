"""``seedcast peer``: run a BitTorrent peer in the foreground.

``seedcast peer --torrent FILE --data DIR`` downloads what DIR lacks (DIR holds
the torrent's files in their layout, ``DIR/<name>/...``), then keeps seeding
until stopped. ``--seed`` insists DIR already holds everything. Metrics are
served on ``--metrics`` (default: the listen host, port ``peers.agent_port``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from seedcast.config import ClusterConfig
from seedcast.errors import ConfigError, UsageError
from seedcast.units import format_size, parse_host_port, parse_rate


def configure_peer(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--torrent", metavar="FILE", help=".torrent file of what to share")
    parser.add_argument(
        "--seed",
        action="store_true",
        help="the data folder (--data) already holds every piece: check it and seed",
    )
    parser.add_argument("--name", default="peer", help="process name (default: peer)")
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=None,
        help="BitTorrent address (default: the first peer address of peers.listen_prefix, "
        "port peers.port, i.e. 127.0.40.1:6881)",
    )
    parser.add_argument(
        "--upload", metavar="RATE", default=None, help="upload cap, e.g. 1MiB/s (0 = unlimited)"
    )
    parser.add_argument(
        "--download", metavar="RATE", default=None, help="download cap, e.g. 8MiB/s (0 = unlimited)"
    )
    parser.add_argument(
        "--tracker",
        metavar="URL",
        action="append",
        default=None,
        help="announce URL (repeatable; default: the torrent's announce)",
    )
    parser.add_argument(
        "--connect",
        metavar="HOST:PORT",
        action="append",
        default=[],
        help="also connect to this peer directly (repeatable)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="connection cap (default: peers.max_connections)",
    )
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        default=None,
        help="where /metrics is served (default: listen host, port peers.agent_port; 'off' = none)",
    )
    from seedcast.agent.commands import configure_agent_options

    configure_agent_options(parser)


def _rate(text: str | None, default: float, option: str) -> float:
    if text is None:
        return default
    try:
        return parse_rate(text)
    except ValueError as error:
        raise UsageError(f"{option}: {error}") from None


def _address(text: str, option: str) -> tuple[str, int]:
    try:
        return parse_host_port(text)
    except ValueError as error:
        raise UsageError(f"{option}: {error}") from None


def run_peer(args: argparse.Namespace, config: ClusterConfig) -> int:
    import random

    import trio
    from seedcast.metrics import new_registry
    from seedcast.peer.metainfo import Metainfo
    from seedcast.peer.metrics import register_swarm_metrics
    from seedcast.peer.storage import Storage
    from seedcast.peer.swarm import Swarm, SwarmSettings
    from seedcast.roles import run_role

    if getattr(args, "agent", False):
        from seedcast.agent.commands import run_agent

        return run_agent(args, config)
    if not args.torrent:
        raise UsageError("--torrent FILE is required")
    torrent_path = Path(args.torrent)
    try:
        metainfo = Metainfo.parse(torrent_path.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"--torrent: {torrent_path}: no such file") from None
    peers = config.peers
    if args.listen is None:
        listen = (peers.peer_address(1), peers.port)
    else:
        listen = _address(args.listen, "--listen")
    if args.metrics == "off":
        metrics_address: tuple[str, int] | None = None
    elif args.metrics is not None:
        metrics_address = _address(args.metrics, "--metrics")
    else:
        metrics_address = (listen[0], peers.agent_port if listen[1] else 0)
    connect = [_address(text, "--connect") for text in args.connect]
    settings = SwarmSettings(
        upload_rate=_rate(args.upload, peers.upload, "--upload"),
        download_rate=_rate(args.download, peers.download, "--download"),
        max_connections=args.max_connections or peers.max_connections,
        local_address=listen[0] if listen[0] not in ("0.0.0.0", "::", "") else None,
    )
    data_dir = config.data_dir
    storage = Storage(metainfo, data_dir)

    if sys.stderr.isatty():
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            task = progress.add_task(f"checking {metainfo.name}", total=metainfo.piece_count)
            have = storage.check(progress=lambda count: progress.advance(task, count))
    else:  # launched, logging to a file: no bar (and no rich import to pay for)
        have = storage.check()
    if args.seed and len(have) < metainfo.piece_count:
        raise ConfigError(
            f"--seed: {data_dir} holds {len(have)} of {metainfo.piece_count} pieces of "
            f"{metainfo.name!r} (expected the files under {data_dir / metainfo.name}); "
            "drop --seed to download the rest"
        )
    swarm = Swarm(
        metainfo,
        storage,
        settings=settings,
        listen=listen,
        announce_urls=args.tracker,
        rng=random.Random(),
        name=args.name,
        have=have,
    )
    registry = new_registry("peer", args.name)
    register_swarm_metrics(registry, lambda: [swarm])

    async def serve(task_status: Any) -> None:
        from seedcast.http11 import HttpServer, Router

        async with trio.open_nursery() as nursery:
            addresses: list[str] = await nursery.start(swarm.serve)
            if metrics_address is not None:
                server = HttpServer(Router(), registry=registry, component="peer")
                bound = await nursery.start(server.serve, [metrics_address])
                addresses += [f"{host}:{port}" for host, port in bound]
            for host, port in connect:
                swarm.add_peer(host, port)
            task_status.started(addresses)

    async def set_rate(message: Any) -> dict[str, Any]:
        upload = message.get("upload")
        download = message.get("download")
        swarm.set_rates(
            upload=None if upload is None else _rate(str(upload), 0, "upload"),
            download=None if download is None else _rate(str(download), 0, "download"),
        )
        return {"upload": swarm.upload_bucket.rate if swarm.upload_bucket else 0.0}

    def statistics() -> dict[str, Any]:
        snapshot = swarm.statistics()
        return {
            "peers": snapshot.peers_connected,
            "bytes_up": snapshot.bytes_uploaded,
            "bytes_down": snapshot.bytes_downloaded,
            "pieces": f"{snapshot.pieces_have}/{snapshot.pieces_total}",
            "unchoked": snapshot.peers_unchoked,
            "hash_failures": snapshot.hash_failures,
            "complete": snapshot.complete,
            "up": format_size(snapshot.bytes_uploaded),
        }

    try:
        return run_role(
            role="peer",
            name=args.name,
            config=config,
            serve=serve,
            control_handlers={"set-rate": set_rate},
            statistics=statistics,
            debug=bool(getattr(args, "debug", False)),
            metrics_address=(
                f"{metrics_address[0]}:{metrics_address[1]}"
                if metrics_address and metrics_address[1]
                else None
            ),
        )
    finally:
        storage.close()
