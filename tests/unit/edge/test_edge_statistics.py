"""Rate meter, latency histogram and the metric families they produce."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from seedcast.edge.statistics import (
    CacheResult,
    EdgeCounters,
    LatencyHistogram,
    TierStatistics,
    metric_families,
)
from seedcast.edge.storage import StorageIndex
from seedcast.metrics import StatisticsCollector


def test_histogram_cumulative_buckets() -> None:
    histogram = LatencyHistogram(bounds=(0.1, 1.0))
    for value in (0.05, 0.5, 0.5, 5.0):
        histogram.observe(value)
    assert histogram.cumulative() == [("0.1", 1), ("1.0", 3), ("+Inf", 4)]


def test_ratios_and_exposition() -> None:
    counters = EdgeCounters()
    counters.count_request(CacheResult.HIT)
    counters.count_request(CacheResult.HIT)
    counters.count_request(CacheResult.STALE)
    counters.count_request(CacheResult.MISS)
    counters.bytes_served = 400
    counters.bytes_served_from_cache = 100
    counters.upstream_latency.observe(0.02)
    counters.count_upstream_error("timeout")
    assert counters.hit_ratio == 0.75
    assert counters.byte_hit_ratio == 0.25
    registry = CollectorRegistry()
    tiers = [TierStatistics("memory", StorageIndex(100).statistics())]
    StatisticsCollector(
        registry,
        lambda: metric_families(
            counters, tiers, open_connections=3, bytes_out_per_second=10.0, in_flight_fills=1
        ),
    )
    text = generate_latest(registry).decode()
    assert 'seedcast_edge_requests_total{cache="HIT"} 2.0' in text
    assert "seedcast_edge_hit_ratio 0.75" in text
    assert "seedcast_edge_byte_hit_ratio 0.25" in text
    assert 'seedcast_edge_cache_bytes{tier="memory"} 0.0' in text
    assert 'seedcast_edge_upstream_errors_total{kind="timeout"} 1.0' in text
    assert "seedcast_edge_upstream_latency_seconds_count 1.0" in text
    assert "seedcast_edge_open_connections 3.0" in text
