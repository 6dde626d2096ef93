"""Running an edge: wiring config, store, upstream client, HTTP server and metrics.

:func:`serve` is the role's trio entry point. It builds the
:class:`~seedcast.edge.proxy.Edge` from the cluster config (plus the command
line's overrides in :class:`EdgeOptions`), rebuilds the disk tier's index,
listens, and reports the bound address through ``task_status.started``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import trio
from seedcast.config import ClusterConfig, EdgeConfig
from seedcast.edge.eviction import POLICIES
from seedcast.edge.guard import HostRules
from seedcast.edge.proxy import Edge
from seedcast.edge.settings import EdgeSettings
from seedcast.edge.store import CacheStore
from seedcast.errors import ConfigError
from seedcast.http11 import HttpClient, HttpServer, ServerLimits
from seedcast.metrics import StatisticsCollector, new_registry
from seedcast.units import parse_host_port

log = logging.getLogger("seedcast.edge")


@dataclass(frozen=True, slots=True)
class EdgeOptions:
    """Command-line overrides of the edge's config section (None = keep the config's)."""

    origin: str | None = None
    listen: str | None = None
    parent: str | None = None
    cache_memory: int | None = None
    cache_disk_dir: str | None = None
    cache_disk: int | None = None
    prefetch_next: bool | None = None
    eviction: str | None = None
    upload: float | None = None


def edge_config_for(config: ClusterConfig, name: str, options: EdgeOptions) -> EdgeConfig:
    """The named edge's section (or a fresh one for an unknown name) with overrides applied."""
    known = {edge.name: edge for edge in config.edges}
    base = known.get(name) or EdgeConfig(name=name, region="")
    changes = {
        field.name: getattr(options, field.name)
        for field in dataclasses.fields(EdgeOptions)
        if field.name != "origin" and getattr(options, field.name) is not None
    }
    edge_config = dataclasses.replace(base, **changes)
    if edge_config.eviction not in POLICIES:
        raise ConfigError(
            f"edge {name}: eviction: unknown policy {edge_config.eviction!r} "
            f"(known: {', '.join(POLICIES)})"
        )
    return edge_config


def host_rules(
    config: ClusterConfig, edge_config: EdgeConfig, bound: list[tuple[str, int]]
) -> HostRules:
    """Hosts this edge answers for: its addresses, localhost, and the DNS zones' names."""
    names = {host for host, _ in bound}
    names.add(parse_host_port(edge_config.listen)[0])
    if edge_config.public_url:
        public = urlsplit(edge_config.public_url).hostname
        if public:
            names.add(public)
    zones = [zone.origin for zone in config.dns.zones]
    zones += [steered.name for steered in config.dns.names]
    return HostRules.build(names, zones)


async def serve(
    config: ClusterConfig,
    name: str,
    *,
    options: EdgeOptions | None = None,
    clock: Callable[[], float] = time.time,
    on_ready: Callable[[Edge, HttpServer], None] | None = None,
    limits: ServerLimits | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the edge called ``name`` until cancelled.

    ``options.origin`` (else the config's origin URL) is the upstream, unless a
    parent edge is configured. Raises ConfigError for bad settings and OSError
    when the address can't be bound.
    """
    options = options or EdgeOptions()
    edge_config = edge_config_for(config, name, options)
    upstream = edge_config.parent or options.origin or config.origin.url
    settings = EdgeSettings(
        name=name,
        upstream=upstream,
        upstream_timeout=edge_config.upstream_timeout,
        stale_if_error=edge_config.stale_if_error,
        prefetch_next=edge_config.prefetch_next,
        admin_token=edge_config.admin_token,
        upload=edge_config.upload,
    )
    disk_directory = Path(edge_config.cache_disk_dir) if edge_config.cache_disk_dir else None
    if disk_directory is not None and edge_config.cache_disk <= 0:
        raise ConfigError(f"edge {name}: cache_disk_dir is set but cache_disk is 0 bytes")
    store = CacheStore(
        edge_config.cache_memory,
        disk_directory=disk_directory,
        disk_capacity=edge_config.cache_disk,
        policy=edge_config.eviction,
    )
    restored = store.load_disk()
    if disk_directory is not None:
        log.info(
            "disk tier loaded",
            extra={"fields": {"directory": disk_directory, "objects": restored}},
        )
    registry = new_registry("edge", name)
    client = HttpClient(
        connect_timeout=settings.upstream_timeout,
        read_timeout=settings.upstream_timeout,
        max_connections_per_host=settings.max_connections_per_upstream,
    )
    edge = Edge(settings, store, client, clock=clock)
    StatisticsCollector(registry, edge.metric_families)
    server = HttpServer(edge.handle, registry=registry, component="edge", limits=limits)
    edge.open_connections = lambda: server.statistics().open_connections
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(edge.run)
            bound: list[tuple[str, int]] = await nursery.start(server.serve, [edge_config.listen])
            edge.settings = dataclasses.replace(
                settings, hosts=host_rules(config, edge_config, bound)
            )
            log.info(
                "edge ready",
                extra={
                    "fields": {
                        "upstream": upstream,
                        "memory": edge_config.cache_memory,
                        "eviction": edge_config.eviction,
                    }
                },
            )
            if on_ready is not None:
                on_ready(edge, server)
            task_status.started([f"{host}:{port}" for host, port in bound])
            await server.wait_stopped()
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await client.aclose()
