"""Prometheus metrics of BitTorrent swarms, read from ``Swarm.statistics()`` at scrape time.

Names follow ``seedcast_peer_<what>_<unit>``; every family carries a
``torrent`` label (the info hash, hex) so one process can share several
torrents (a viewer agent) or host several virtual peers (the benchmark).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from seedcast.metrics import StatisticsCollector
from seedcast.peer.swarm import Swarm, SwarmStatistics

__all__ = ["register_swarm_metrics", "swarm_metric_families"]


def register_swarm_metrics(
    registry: CollectorRegistry, swarms: Callable[[], Iterable[Swarm]]
) -> StatisticsCollector:
    """Export every swarm ``swarms()`` returns at scrape time."""
    return StatisticsCollector(
        registry, lambda: swarm_metric_families(swarm.statistics() for swarm in swarms())
    )


def swarm_metric_families(snapshots: Iterable[SwarmStatistics]) -> Iterable[Metric]:
    labels = ["name", "torrent"]
    uploaded = CounterMetricFamily(
        "seedcast_peer_uploaded_bytes", "Piece payload bytes sent to peers", labels=labels
    )
    downloaded = CounterMetricFamily(
        "seedcast_peer_downloaded_bytes", "Piece payload bytes received from peers", labels=labels
    )
    pieces = GaugeMetricFamily("seedcast_peer_pieces", "Verified pieces we have", labels=labels)
    pieces_total = GaugeMetricFamily(
        "seedcast_peer_pieces_total", "Pieces in the torrent", labels=labels
    )
    peers = GaugeMetricFamily(
        "seedcast_peer_peers", "Connected peers by state", labels=[*labels, "state"]
    )
    hash_failures = CounterMetricFamily(
        "seedcast_peer_hash_failures", "Pieces that failed SHA-1 verification", labels=labels
    )
    bans = CounterMetricFamily("seedcast_peer_bans", "Peers banned for bad data", labels=labels)
    refused = CounterMetricFamily(
        "seedcast_peer_connections_refused",
        "Incoming connections refused, by reason (banned, per_host cap, full)",
        labels=[*labels, "reason"],
    )
    pex = CounterMetricFamily(
        "seedcast_peer_pex_learned_peers",
        "Peer addresses first learned through peer exchange (ut_pex)",
        labels=labels,
    )
    unfinished = CounterMetricFamily(
        "seedcast_peer_unfinished_handshakes",
        "Connections that ended before both handshakes were done (churn, scans, timeouts)",
        labels=labels,
    )
    evictions = CounterMetricFamily(
        "seedcast_peer_evictions",
        "Useless connections dropped to make room for a newcomer",
        labels=labels,
    )
    errors = CounterMetricFamily(
        "seedcast_peer_protocol_errors",
        "Connections dropped for breaking the protocol, by reason",
        labels=[*labels, "reason"],
    )
    complete = GaugeMetricFamily(
        "seedcast_peer_complete_seconds",
        "Seconds from start to a complete download (NaN until complete)",
        labels=labels,
    )
    for snapshot in snapshots:
        values = [snapshot.name, snapshot.info_hash]
        uploaded.add_metric(values, snapshot.bytes_uploaded)
        downloaded.add_metric(values, snapshot.bytes_downloaded)
        pieces.add_metric(values, snapshot.pieces_have)
        pieces_total.add_metric(values, snapshot.pieces_total)
        for state, count in (
            ("connected", snapshot.peers_connected),
            ("unchoked", snapshot.peers_unchoked),
            ("interested", snapshot.peers_interested),
            ("unchoking_us", snapshot.peers_unchoking_us),
        ):
            peers.add_metric([*values, state], count)
        hash_failures.add_metric(values, snapshot.hash_failures)
        bans.add_metric(values, snapshot.bans)
        for reason, count in sorted(snapshot.refusals.items()):
            refused.add_metric([*values, reason], count)
        evictions.add_metric(values, snapshot.evictions)
        pex.add_metric(values, snapshot.pex_learned)
        unfinished.add_metric(values, snapshot.unfinished_handshakes)
        for reason, count in sorted(snapshot.protocol_errors.items()):
            errors.add_metric([*values, reason], count)
        seconds = snapshot.seconds_to_complete
        complete.add_metric(values, math.nan if seconds is None else seconds)
    yield from (
        uploaded,
        downloaded,
        pieces,
        pieces_total,
        peers,
        hash_failures,
        bans,
        refused,
        evictions,
        pex,
        unfinished,
        errors,
        complete,
    )
