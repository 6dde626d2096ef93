"""The origin's service: build the app and its HTTP server, serve, run as a role.

:func:`serve` serves the library of ``config.data_dir`` with an
:class:`~seedcast.origin.app.OriginApp` (routing, see there) on the shared
:class:`~seedcast.http11.HttpServer`, with the origin's Prometheus metrics
(:func:`origin_metrics`) and upload limit; :func:`serve_origin_role` is
``seedcast origin``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

import trio
from seedcast.config import ClusterConfig
from seedcast.http11 import HttpServer
from seedcast.origin.app import INDEX_RECHECK_SECONDS, OriginApp, OriginStatistics
from seedcast.origin.library import Library
from seedcast.origin.pages import find_dashjs
from seedcast.origin.serving import PathRefused

__all__ = [
    "INDEX_RECHECK_SECONDS",
    "OriginApp",
    "OriginStatistics",
    "build_origin",
    "find_dashjs",
    "origin_metrics",
    "serve",
    "serve_origin_role",
]

log = logging.getLogger("seedcast.origin")


# --- metrics ------------------------------------------------------------------------------


def origin_metrics(app: OriginApp) -> Iterable[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    stats = app.statistics()
    yield GaugeMetricFamily("seedcast_origin_videos", "Videos in the library", value=stats.videos)
    yield GaugeMetricFamily(
        "seedcast_origin_library_bytes", "Bytes of published media", value=stats.library_bytes
    )
    yield GaugeMetricFamily(
        "seedcast_origin_unique_viewers",
        "Distinct viewer cookies seen since start",
        value=stats.unique_viewers,
    )
    yield CounterMetricFamily(
        "seedcast_origin_viewer_cookies_issued",
        "Viewer cookies handed to first-time visitors",
        value=stats.viewer_cookies_issued,
    )
    refused = CounterMetricFamily(
        "seedcast_origin_refused_paths",
        "Request paths refused as hostile (traversal, bad escapes, symlinks...)",
        labels=["reason"],
    )
    for reason in PathRefused:
        refused.add_metric([reason.value], stats.refused_paths.get(reason.value, 0))
    yield refused
    files = CounterMetricFamily(
        "seedcast_origin_files_served", "Media files answered with a body", labels=["kind"]
    )
    sent = CounterMetricFamily(
        "seedcast_origin_file_bytes", "Media bytes sent (GET bodies)", labels=["kind"]
    )
    for kind in ("manifest", "segment", "torrent"):
        files.add_metric([kind], stats.files_served.get(kind, 0))
        sent.add_metric([kind], stats.bytes_served.get(kind, 0))
    yield files
    yield sent
    yield CounterMetricFamily(
        "seedcast_origin_not_modified", "304 answers to conditional GETs", value=stats.not_modified
    )
    yield CounterMetricFamily(
        "seedcast_origin_partial_content", "206 answers to Range requests", value=stats.partial
    )
    yield CounterMetricFamily(
        "seedcast_origin_redirects", "301 answers for renamed videos", value=stats.redirects
    )


# --- running ------------------------------------------------------------------------------


def build_origin(
    config: ClusterConfig,
    name: str,
    *,
    registry: Any = None,
    rng: random.Random | None = None,
) -> tuple[OriginApp, HttpServer]:
    """The app and its HTTP server (not yet listening)."""
    from seedcast.metrics import StatisticsCollector, new_registry

    library = Library.for_data_dir(config.data_dir)
    library.repair()
    registry = registry if registry is not None else new_registry("origin", name)
    app = OriginApp(
        library,
        name=name,
        manifest_max_age=config.origin.manifest_max_age,
        segment_max_age=config.origin.segment_max_age,
        dashjs=find_dashjs(config.origin.dashjs),
        rng=rng,
    )
    StatisticsCollector(registry, lambda: origin_metrics(app))
    from seedcast.ratelimit import TokenBucket

    upload = config.origin.upload
    server = HttpServer(
        app,
        registry=registry,
        component="origin",
        upload_limit=TokenBucket(upload) if upload > 0 else None,
    )
    return app, server


async def serve(
    config: ClusterConfig,
    name: str = "origin",
    *,
    listen: str | None = None,
    on_ready: Callable[[OriginApp, HttpServer], None] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the library of ``config.data_dir`` on ``listen`` (default: origin.listen).

    Calls ``task_status.started(["host:port"])`` once listening (port 0 picks one).
    """
    app, server = build_origin(config, name)
    if on_ready is not None:
        on_ready(app, server)
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(server.serve, [listen or config.origin.listen])
        addresses = [f"{host}:{port}" for host, port in bound]
        log.info(
            "origin serving",
            extra={
                "fields": {
                    "addresses": ",".join(addresses),
                    "videos": len(app.catalog()),
                    "dashjs": str(app.dashjs or "missing"),
                }
            },
        )
        task_status.started(addresses)


def serve_origin_role(
    config: ClusterConfig, *, name: str, listen: str | None, debug: bool = False
) -> int:
    """``seedcast origin``: run :func:`serve` as a role (logging, signals, control channel)."""
    from seedcast.roles import run_role
    from seedcast.units import parse_host_port

    if listen:
        try:
            parse_host_port(listen)
        except ValueError as error:
            from seedcast.errors import UsageError

            raise UsageError(f"--listen: {error}") from None
    holder: dict[str, OriginApp] = {}

    async def serve_fn(task_status: Any) -> None:
        await serve(
            config,
            name,
            listen=listen,
            on_ready=lambda app, server: holder.__setitem__("app", app),
            task_status=task_status,
        )

    def statistics() -> dict[str, float | int | str]:
        app = holder.get("app")
        if app is None:
            return {}
        stats = app.statistics()
        return {
            "videos": stats.videos,
            "unique_viewers": stats.unique_viewers,
            "refused_paths": sum(stats.refused_paths.values()),
            "segments_served": stats.files_served.get("segment", 0),
        }

    started = time.monotonic()
    code = run_role(
        role="origin", name=name, config=config, serve=serve_fn, statistics=statistics, debug=debug
    )
    log.debug("origin stopped", extra={"fields": {"uptime": round(time.monotonic() - started, 1)}})
    return code
