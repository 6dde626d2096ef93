"""Prometheus metrics of the tracker, read from ``Tracker.statistics()`` at scrape time."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from seedcast.metrics import StatisticsCollector

from ._events import AnnounceEvent
from .swarms import Tracker

PER_TORRENT_SERIES = 200
"""Per-torrent series are exported for the busiest torrents only (bounded cardinality)."""


def register_tracker_metrics(registry: CollectorRegistry, tracker: Tracker) -> StatisticsCollector:
    return StatisticsCollector(registry, lambda: tracker_metric_families(tracker))


def tracker_metric_families(tracker: Tracker) -> Iterable[Metric]:
    statistics = tracker.statistics()
    announces = CounterMetricFamily(
        "seedcast_tracker_announces", "Announces answered, by event", labels=["event"]
    )
    for event in AnnounceEvent:
        announces.add_metric([event.label], statistics.announces.get(event.label, 0))
    yield announces
    yield CounterMetricFamily(
        "seedcast_tracker_scrapes", "Scrapes answered", value=statistics.scrapes
    )
    errors = CounterMetricFamily(
        "seedcast_tracker_errors", "Announces and scrapes refused, by reason", labels=["reason"]
    )
    for reason, count in sorted(statistics.errors.items()):
        errors.add_metric([reason], count)
    yield errors
    yield CounterMetricFamily(
        "seedcast_tracker_peers_not_stored",
        "Announces answered but not remembered because a memory bound was reached",
        value=statistics.peers_not_stored,
    )
    yield CounterMetricFamily(
        "seedcast_tracker_peers_displaced",
        "Unproven entries (announced once) replaced by newcomers under the per-source and"
        " per-swarm bounds",
        value=statistics.peers_displaced,
    )
    yield CounterMetricFamily(
        "seedcast_tracker_peers_expired",
        "Peers forgotten after missing announces for interval + grace",
        value=statistics.expired,
    )
    yield GaugeMetricFamily(
        "seedcast_tracker_torrents", "Swarms tracked", value=statistics.torrents
    )
    yield GaugeMetricFamily("seedcast_tracker_peers", "Peers in all swarms", value=statistics.peers)
    yield GaugeMetricFamily(
        "seedcast_tracker_seeders", "Seeders in all swarms", value=statistics.seeders
    )
    peers = GaugeMetricFamily(
        "seedcast_tracker_swarm_peers", "Peers per torrent (busiest torrents)", labels=["info_hash"]
    )
    seeders = GaugeMetricFamily(
        "seedcast_tracker_swarm_seeders",
        "Seeders per torrent (busiest torrents)",
        labels=["info_hash"],
    )
    completed = CounterMetricFamily(
        "seedcast_tracker_swarm_completed",
        "Completed downloads per torrent (busiest torrents)",
        labels=["info_hash"],
    )
    for swarm in tracker.swarm_statistics(PER_TORRENT_SERIES):
        label = [swarm.info_hash.hex()]
        peers.add_metric(label, swarm.seeders + swarm.leechers)
        seeders.add_metric(label, swarm.seeders)
        completed.add_metric(label, swarm.downloaded)
    yield peers
    yield seeders
    yield completed
