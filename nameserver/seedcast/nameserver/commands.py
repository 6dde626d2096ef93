"""``seedcast dns``: run the authoritative DNS server in the foreground."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from seedcast.config import ClusterConfig
from seedcast.errors import ConfigError, UsageError
from seedcast.units import parse_host_port


def configure_dns(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="dns", help="process name (default: dns)")
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=None,
        help="UDP and TCP address to answer on (default: dns.listen, 127.0.53.1:5353)",
    )
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        default=None,
        help="HTTP address for /metrics and /healthz (default: dns.metrics_listen)",
    )
    parser.add_argument(
        "--no-health-checks",
        action="store_true",
        help="don't probe the edges' /healthz (every configured edge stays eligible)",
    )
    parser.add_argument(
        "zone_files",
        metavar="ZONEFILE",
        nargs="*",
        help="extra RFC 1035 master files; the zone is the file's $ORIGIN, else its name "
        "(kingcdn.test.zone); merged with [dns] zones of the same apex",
    )


def _address(option: str, value: str) -> str:
    try:
        host, port = parse_host_port(value)
    except ValueError as error:
        raise UsageError(f"{option}: {error}") from None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def apply_options(args: argparse.Namespace, config: ClusterConfig) -> ClusterConfig:
    """The config with ``--listen``, ``--metrics-listen`` and zone files applied."""
    from seedcast.nameserver.zones import zone_config_from_file

    changes: dict[str, Any] = {}
    if args.listen is not None:
        changes["listen"] = _address("--listen", args.listen)
    if args.metrics_listen is not None:
        changes["metrics_listen"] = _address("--metrics-listen", args.metrics_listen)
    if args.zone_files:
        extra = tuple(zone_config_from_file(path) for path in args.zone_files)
        changes["zones"] = config.dns.zones + extra
    if args.no_health_checks:
        changes["health_interval"] = 0.0
    if not changes:
        return config
    return dataclasses.replace(config, dns=dataclasses.replace(config.dns, **changes))


def resolve_advertised_names(config: ClusterConfig) -> ClusterConfig:
    """Public URLs that name hosts (Kubernetes Services, compose services) -> their addresses.

    DNS answers are addresses, so each edge's and the origin's advertised host
    is looked up once, with the system resolver, when the server starts.
    Raises ConfigError naming the key when a name does not resolve.
    """
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    def resolved(url: str, key: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            ipaddress.ip_address(host)
            return url
        except ValueError:
            pass
        try:
            found = socket.getaddrinfo(host, parts.port or 80, type=socket.SOCK_STREAM)
        except OSError as error:
            raise ConfigError(f"{config.source}: {key}: cannot resolve {host!r}: {error}") from None
        address = str(found[0][4][0])
        netloc = f"[{address}]" if ":" in address else address
        if parts.port:
            netloc += f":{parts.port}"
        return parts._replace(netloc=netloc).geturl()

    edges = tuple(
        dataclasses.replace(
            edge, public_url=resolved(edge.public_url, f"edges[{index}].public_url")
        )
        if edge.public_url
        else edge
        for index, edge in enumerate(config.edges)
    )
    origin = config.origin
    if origin.public_url:
        origin = dataclasses.replace(
            origin, public_url=resolved(origin.public_url, "origin.public_url")
        )
    return dataclasses.replace(config, edges=edges, origin=origin)


def run_dns(args: argparse.Namespace, config: ClusterConfig) -> int:
    from seedcast.nameserver.server import NameServer
    from seedcast.roles import run_role

    config = resolve_advertised_names(apply_options(args, config))
    server = NameServer(config, args.name)  # parses the zones now: errors before any socket
    return run_role(
        role="dns",
        name=args.name,
        config=config,
        serve=lambda task_status: server.serve(task_status=task_status),
        control_handlers={"set-load": server.control_set_load, "health": server.control_health},
        statistics=server.status,
        debug=bool(getattr(args, "debug", False)),
        metrics_address=config.dns.metrics_listen,
    )
