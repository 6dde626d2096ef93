"""Prometheus metrics of an HttpServer, read from ``statistics()`` at scrape time.

The request path only bumps plain integers; this collector turns a snapshot
into metric families when Prometheus asks, so metrics cost nothing per request:

- ``seedcast_<component>_http_requests_total{method,status}``
- ``seedcast_<component>_http_request_duration_seconds`` (histogram; from the
  request head to the last response byte handed to the kernel)
- ``seedcast_<component>_http_open_connections``
- ``seedcast_<component>_http_connections_total``
- ``seedcast_<component>_http_bad_requests_total{reason}``
- ``seedcast_<component>_http_aborted_responses_total``
- ``seedcast_<component>_http_evicted_connections_total{reason}`` (``full``,
  ``per_source``) and ``seedcast_<component>_http_refused_connections_total``
- ``seedcast_<component>_http_response_body_bytes_total``
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

if TYPE_CHECKING:
    from ._server import HttpServer


def server_metrics(prefix: str, server: HttpServer) -> Iterable[Metric]:
    stats = server.statistics()
    requests = CounterMetricFamily(
        f"{prefix}_http_requests", "HTTP requests answered", labels=["method", "status"]
    )
    for (method, status), count in sorted(stats.requests.items()):
        requests.add_metric([method, str(status)], count)
    yield requests
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip(
        [*stats.duration_buckets, math.inf], stats.duration_counts, strict=True
    ):
        cumulative += count
        buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
    yield HistogramMetricFamily(
        f"{prefix}_http_request_duration_seconds",
        "Time from a request head to its last response byte",
        buckets=buckets,
        sum_value=stats.duration_sum,
    )
    yield GaugeMetricFamily(
        f"{prefix}_http_open_connections", "Open client connections", value=stats.open_connections
    )
    yield CounterMetricFamily(
        f"{prefix}_http_connections", "Accepted connections", value=stats.connections_total
    )
    bad = CounterMetricFamily(
        f"{prefix}_http_bad_requests", "Requests refused as malformed or abusive", labels=["reason"]
    )
    for reason, count in sorted(stats.bad_requests.items()):
        bad.add_metric([reason], count)
    yield bad
    yield CounterMetricFamily(
        f"{prefix}_http_aborted_responses",
        "Responses cut short (client vanished or stalled)",
        value=stats.aborted_responses,
    )
    evicted = CounterMetricFamily(
        f"{prefix}_http_evicted_connections",
        "Idle connections closed to make room (server full, or the source at its cap)",
        labels=["reason"],
    )
    for reason, count in sorted(stats.evicted_connections.items()):
        evicted.add_metric([reason], count)
    yield evicted
    yield CounterMetricFamily(
        f"{prefix}_http_refused_connections",
        "Connections closed at accept: their source already held its cap of busy ones",
        value=stats.refused_connections,
    )
    yield CounterMetricFamily(
        f"{prefix}_http_response_body_bytes",
        "Response body bytes sent",
        value=stats.response_body_bytes,
    )


class _ServerCollector:
    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._prefix = f"seedcast_{server.component}"

    def collect(self) -> Iterable[Metric]:
        return server_metrics(self._prefix, self._server)

    def describe(self) -> Iterable[Metric]:
        return []


def server_collector(server: HttpServer, registry: Any) -> Any:
    """Register ``server``'s metrics in ``registry``; returns the collector to unregister.

    Two live servers of the same component in one registry would export the
    same series twice: give each server its own component.
    """
    collector = _ServerCollector(server)
    registry.register(collector)
    return collector
