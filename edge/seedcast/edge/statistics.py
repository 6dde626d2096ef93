"""The edge's counters and latency histogram, and their Prometheus form.

How it works: the hot path only bumps plain integers on :class:`EdgeCounters`
(and feeds :class:`seedcast.rates.RateMeter` / :class:`LatencyHistogram`, a few
float operations); :func:`metric_families` turns a snapshot into Prometheus
families at scrape time (through ``seedcast.metrics.StatisticsCollector``).
Nothing here reads a clock: callers pass ``now``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from seedcast.edge.storage import StorageStatistics


class CacheResult(StrEnum):
    """The ``X-Cache`` value of a response, and the label of the request counter."""

    HIT = "HIT"
    MISS = "MISS"
    REVALIDATED = "REVALIDATED"
    STALE = "STALE"
    PASS = "PASS"
    """Not cacheable (no-store, private, Authorization...): fetched for this viewer only."""
    ERROR = "ERROR"
    """The edge answered 502/504 itself: upstream failed and nothing stale was allowed."""


SERVED_FROM_CACHE = frozenset({CacheResult.HIT, CacheResult.REVALIDATED, CacheResult.STALE})


DEFAULT_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


@dataclass(slots=True)
class LatencyHistogram:
    bounds: tuple[float, ...] = DEFAULT_LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    observations: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.observations += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus buckets: (upper bound, cumulative count), ending with +Inf."""
        result: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            result.append((repr(bound), running))
        result.append(("+Inf", running + self.counts[-1]))
        return result


@dataclass(slots=True)
class EdgeCounters:
    """Monotonic counters the edge bumps as it works."""

    requests: dict[CacheResult, int] = field(default_factory=lambda: dict.fromkeys(CacheResult, 0))
    bytes_served: int = 0
    bytes_served_from_cache: int = 0
    bytes_fetched_upstream: int = 0
    upstream_requests: int = 0
    upstream_errors: dict[str, int] = field(default_factory=dict)
    coalesced_waiters: int = 0
    revalidations: int = 0
    background_refreshes: int = 0
    prefetches: int = 0
    prefetch_hits: int = 0
    purged_objects: int = 0
    refused_requests: int = 0
    upstream_latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def count_request(self, result: CacheResult) -> None:
        self.requests[result] += 1

    def count_upstream_error(self, kind: str) -> None:
        self.upstream_errors[kind] = self.upstream_errors.get(kind, 0) + 1

    @property
    def hit_ratio(self) -> float:
        total = sum(self.requests[result] for result in CacheResult)
        hits = sum(self.requests[result] for result in SERVED_FROM_CACHE)
        return hits / total if total else 0.0

    @property
    def byte_hit_ratio(self) -> float:
        return self.bytes_served_from_cache / self.bytes_served if self.bytes_served else 0.0


@dataclass(frozen=True, slots=True)
class TierStatistics:
    tier: str
    storage: StorageStatistics


def metric_families(
    counters: EdgeCounters,
    tiers: Iterable[TierStatistics],
    *,
    open_connections: int,
    bytes_out_per_second: float,
    in_flight_fills: int,
) -> Iterable[Metric]:
    """The edge's metrics, named ``seedcast_edge_<what>_<unit>``."""
    requests = CounterMetricFamily(
        "seedcast_edge_requests", "Viewer requests by cache result", labels=["cache"]
    )
    for result, count in counters.requests.items():
        requests.add_metric([result.value], count)
    yield requests
    yield _gauge("seedcast_edge_hit_ratio", "Requests served from cache / all", counters.hit_ratio)
    yield _gauge(
        "seedcast_edge_byte_hit_ratio", "Bytes served from cache / all", counters.byte_hit_ratio
    )
    simple_counters: Mapping[str, tuple[str, float]] = {
        "seedcast_edge_served_bytes": ("Body bytes sent to viewers", counters.bytes_served),
        "seedcast_edge_served_from_cache_bytes": (
            "Body bytes sent to viewers from cache",
            counters.bytes_served_from_cache,
        ),
        "seedcast_edge_upstream_fetched_bytes": (
            "Body bytes fetched from upstream",
            counters.bytes_fetched_upstream,
        ),
        "seedcast_edge_upstream_requests": ("Requests sent upstream", counters.upstream_requests),
        "seedcast_edge_coalesced_waiters": (
            "Viewer requests that joined an upstream fetch already under way",
            counters.coalesced_waiters,
        ),
        "seedcast_edge_revalidations": (
            "Conditional requests sent upstream",
            counters.revalidations,
        ),
        "seedcast_edge_background_refreshes": (
            "stale-while-revalidate refreshes started",
            counters.background_refreshes,
        ),
        "seedcast_edge_prefetches": ("Next-segment prefetches started", counters.prefetches),
        "seedcast_edge_prefetch_hits": (
            "Requests served from a prefetched object",
            counters.prefetch_hits,
        ),
        "seedcast_edge_purged_objects": ("Objects removed by purge", counters.purged_objects),
        "seedcast_edge_refused_requests": (
            "Requests refused (foreign host, absolute-form target, bad method)",
            counters.refused_requests,
        ),
    }
    for name, (documentation, value) in simple_counters.items():
        family = CounterMetricFamily(name, documentation)
        family.add_metric([], value)
        yield family
    errors = CounterMetricFamily(
        "seedcast_edge_upstream_errors", "Failed upstream fetches by kind", labels=["kind"]
    )
    for kind, count in sorted(counters.upstream_errors.items()):
        errors.add_metric([kind], count)
    yield errors
    histogram = HistogramMetricFamily(
        "seedcast_edge_upstream_latency_seconds",
        "Time from sending an upstream request to its response head",
    )
    latency = counters.upstream_latency
    histogram.add_metric([], latency.cumulative(), latency.total)
    yield histogram
    cache_bytes = GaugeMetricFamily("seedcast_edge_cache_bytes", "Bytes stored", labels=["tier"])
    capacity = GaugeMetricFamily(
        "seedcast_edge_cache_capacity_bytes", "Byte budget", labels=["tier"]
    )
    objects = GaugeMetricFamily("seedcast_edge_cache_objects", "Objects stored", labels=["tier"])
    evictions = CounterMetricFamily(
        "seedcast_edge_evictions", "Objects evicted to make room", labels=["tier"]
    )
    for tier in tiers:
        cache_bytes.add_metric([tier.tier], tier.storage.used + tier.storage.reserved)
        capacity.add_metric([tier.tier], tier.storage.capacity)
        objects.add_metric([tier.tier], tier.storage.objects)
        evictions.add_metric([tier.tier], tier.storage.evictions)
    yield from (cache_bytes, capacity, objects, evictions)
    yield _gauge("seedcast_edge_open_connections", "Open viewer connections", open_connections)
    yield _gauge("seedcast_edge_out_bytes_per_second", "Recent egress rate", bytes_out_per_second)
    yield _gauge("seedcast_edge_fills_in_flight", "Upstream fetches under way", in_flight_fills)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family
