"""``seedcast edge``: run one CDN edge cache in the foreground."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import trio
from seedcast.config import ClusterConfig
from seedcast.edge.eviction import POLICIES
from seedcast.edge.proxy import Edge
from seedcast.edge.server import EdgeOptions, serve
from seedcast.errors import UsageError
from seedcast.http11 import HttpServer
from seedcast.units import parse_size


def _disk_option(text: str) -> tuple[str, int]:
    directory, sep, size = text.rpartition(":")
    if not sep or not directory:
        raise argparse.ArgumentTypeError(
            f"expected DIR:BYTES (e.g. /var/cache/edge:2GiB), got {text!r}"
        )
    try:
        return directory, parse_size(size)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _size_option(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def configure_edge(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name",
        default=None,
        help="edge name from the config (default: the first edge, else 'edge')",
    )
    parser.add_argument(
        "--origin", metavar="URL", default=None, help="origin URL (default: the config's origin)"
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=None,
        help="address to serve on (default: from the config)",
    )
    parser.add_argument(
        "--parent",
        metavar="URL",
        default=None,
        help="parent edge to fetch from instead of the origin (tiered caching)",
    )
    parser.add_argument(
        "--cache-memory",
        metavar="BYTES",
        type=_size_option,
        default=None,
        help="memory tier budget, e.g. 256MiB",
    )
    parser.add_argument(
        "--cache-disk",
        metavar="DIR:BYTES",
        type=_disk_option,
        default=None,
        help="disk tier folder and budget, e.g. /tmp/edge:2GiB (survives restarts)",
    )
    parser.add_argument(
        "--prefetch-next",
        action="store_true",
        default=None,
        help="prefetch segment N+1 when segment N is requested",
    )
    parser.add_argument(
        "--eviction",
        choices=POLICIES,
        default=None,
        help="eviction policy (default: from the config, s3-fifo)",
    )
    parser.add_argument(
        "--upload",
        metavar="RATE",
        type=_rate_option,
        default=None,
        help="egress cap, e.g. 4MiB/s or 32Mbit/s (default: the edge's upload; 0 = unlimited)",
    )


def _rate_option(text: str) -> float:
    from seedcast.units import parse_rate

    try:
        return parse_rate(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class EdgeRole:
    """The control-channel side of a running edge: purge, drain, statistics."""

    def __init__(self) -> None:
        self.edge: Edge | None = None
        self.server: HttpServer | None = None

    def on_ready(self, edge: Edge, server: HttpServer) -> None:
        self.edge = edge
        self.server = server

    async def purge(self, message: Mapping[str, Any]) -> Mapping[str, Any]:
        """``{"prefix": "/sample/"}`` or ``{"id": "sample"}`` -> ``{"purged": n}``."""
        if self.edge is None:
            return {"purged": 0}
        fields = {key: message[key] for key in ("id", "prefix") if key in message}
        return {"purged": self.edge.purge_message(fields)}

    async def drain(self, message: Mapping[str, Any]) -> Mapping[str, Any]:
        """Report unhealthy (so the DNS moves viewers away), finish in-flight requests, stop."""
        if self.edge is None or self.server is None:
            return {"drained": False}
        self.edge.draining = True
        self.server.shutdown()
        await self.server.wait_stopped()
        return {"drained": True}

    def statistics(self) -> Mapping[str, Any]:
        return self.edge.statistics() if self.edge is not None else {}


def run_edge(args: argparse.Namespace, config: ClusterConfig) -> int:
    from seedcast.roles import run_role

    name = args.name or (config.edges[0].name if config.edges else "edge")
    disk_dir, disk_size = args.cache_disk if args.cache_disk else (None, None)
    if args.listen is not None:
        try:
            from seedcast.units import parse_host_port

            parse_host_port(args.listen)
        except ValueError as error:
            raise UsageError(f"--listen: {error}") from None
    options = EdgeOptions(
        origin=args.origin,
        listen=args.listen,
        parent=args.parent,
        cache_memory=args.cache_memory,
        cache_disk_dir=disk_dir,
        cache_disk=disk_size,
        prefetch_next=args.prefetch_next,
        eviction=args.eviction,
        upload=getattr(args, "upload", None),
    )
    role = EdgeRole()

    async def serve_edge(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await serve(config, name, options=options, on_ready=role.on_ready, task_status=task_status)

    return run_role(
        role="edge",
        name=name,
        config=config,
        serve=serve_edge,
        control_handlers={"purge": role.purge, "drain": role.drain},
        statistics=role.statistics,
        debug=bool(getattr(args, "debug", False)),
    )
