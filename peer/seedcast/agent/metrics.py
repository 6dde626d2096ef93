"""Prometheus metrics of a viewer agent, read from ``Agent.statistics()`` at scrape time.

Names follow ``seedcast_agent_<what>_<unit>``. The swarms' own figures
(``seedcast_peer_*``: peers, bytes up and down, hash failures, bans) are
exported alongside, one ``torrent`` label per video.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from seedcast.metrics import StatisticsCollector
from seedcast.peer.metrics import register_swarm_metrics

if TYPE_CHECKING:
    from seedcast.agent.server import Agent, AgentStatistics

__all__ = ["agent_metric_families", "register_agent_metrics"]


def register_agent_metrics(registry: CollectorRegistry, agent: Agent) -> None:
    """Export ``agent`` and its swarms into ``registry``."""
    StatisticsCollector(registry, lambda: agent_metric_families(agent.statistics()))
    register_swarm_metrics(registry, lambda: [session.swarm for session in agent.videos.values()])


def agent_metric_families(snapshot: AgentStatistics) -> Iterable[Metric]:
    served = CounterMetricFamily(
        "seedcast_agent_served_bytes",
        "Bytes served to players, by where they came from (peer, edge, origin, cache)",
        labels=["source"],
    )
    for source, count in sorted(snapshot.served_bytes.items()):
        served.add_metric([source], count)
    fetched = CounterMetricFamily(
        "seedcast_agent_fetched_bytes",
        "Verified piece bytes stored (trailing padding left out), by where they came from",
        labels=["source"],
    )
    for source, count in sorted(snapshot.fetched_bytes.items()):
        fetched.add_metric([source], count)
    requests = CounterMetricFamily(
        "seedcast_agent_requests",
        "Player requests: served at once (local), after waiting (waited), failed (error), "
        "relayed to the CDN (relay)",
        labels=["result"],
    )
    for result, count in sorted(snapshot.requests.items()):
        requests.add_metric([result], count)
    waits = SummaryMetricFamily(
        "seedcast_agent_wait_seconds",
        "Time player requests waited for pieces",
        count_value=snapshot.waits,
        sum_value=snapshot.wait_seconds_total,
    )
    edge = CounterMetricFamily(
        "seedcast_agent_edge_fetches", "Range requests sent to the CDN", labels=["result"]
    )
    edge.add_metric(["started"], snapshot.edge_runs)
    edge.add_metric(["failed"], snapshot.edge_failures)
    hash_failures = CounterMetricFamily(
        "seedcast_agent_hash_failures",
        "Pieces whose bytes failed SHA-1 verification, by source (never stored nor served)",
        labels=["source"],
    )
    hash_failures.add_metric(["edge"], snapshot.edge_hash_failures)
    hash_failures.add_metric(["peer"], snapshot.peer_hash_failures)
    share = GaugeMetricFamily(
        "seedcast_agent_p2p_ratio", "Share of served media bytes that came from peers"
    )
    share.add_metric([], snapshot.p2p_share)
    waiting = GaugeMetricFamily(
        "seedcast_agent_waiting_requests", "Player requests waiting for pieces now"
    )
    waiting.add_metric([], snapshot.waiting_requests)
    wasted = CounterMetricFamily(
        "seedcast_agent_wasted_bytes",
        "Downloaded bytes not needed: duplicate (a block or piece already here, or of a piece "
        "never finished), hash (failed verification), skipped (outside the range asked)",
        labels=["reason"],
    )
    for reason, count in sorted(snapshot.wasted_bytes.items()):
        wasted.add_metric([reason], count)
    downloaded = CounterMetricFamily(
        "seedcast_agent_downloaded_bytes",
        "Bytes received for the videos (peers' piece data and the edge's bodies)",
        value=snapshot.downloaded_bytes,
    )
    played = CounterMetricFamily(
        "seedcast_agent_played_bytes",
        "File bytes served to players from the videos' pieces",
        value=snapshot.played_bytes,
    )
    yield from (served, fetched, requests, waits, edge, hash_failures, share, waiting)
    yield from (wasted, downloaded, played)
