"""Prometheus metrics of a viewer agent, read from ``Agent.statistics()`` at scrape time.

Names follow ``seedcast_agent_<what>_<unit>``. The swarms' own figures
(``seedcast_peer_*``: peers, bytes up and down, hash failures, bans) are
exported alongside, one ``torrent`` label per video.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from seedcast.metrics import StatisticsCollector
from seedcast.peer.metrics import register_swarm_metrics

if TYPE_CHECKING:
    from seedcast.agent.server import Agent, AgentStatistics

__all__ = [
    "agent_metric_families",
    "player_metric_families",
    "register_agent_metrics",
    "register_player_metrics",
]

STARTUP_BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


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


def register_player_metrics(
    registry: CollectorRegistry, figures: Callable[[], Mapping[str, Any]]
) -> None:
    """Export the watching viewer's player (``player_*`` status figures) into ``registry``."""
    StatisticsCollector(registry, lambda: player_metric_families(figures()))


def player_metric_families(figures: Mapping[str, Any]) -> Iterable[Metric]:
    """``seedcast_player_*`` from one viewer's figures (all zero until it plays)."""
    played = CounterMetricFamily(
        "seedcast_player_played_seconds", "Media seconds the viewer's player has played"
    )
    played.add_metric([], float(figures.get("player_played_s") or 0.0))
    stall_seconds = CounterMetricFamily(
        "seedcast_player_stall_seconds", "Seconds the viewer's player spent stalled"
    )
    stall_seconds.add_metric([], float(figures.get("player_stall_s") or 0.0))
    stalls = CounterMetricFamily("seedcast_player_stalls", "Stalls of the viewer's player")
    stalls.add_metric([], float(figures.get("player_stalls") or 0))
    bitrate = GaugeMetricFamily(
        "seedcast_player_bitrate_bits_per_second", "Average bitrate the viewer's player chose"
    )
    bitrate.add_metric([], float(figures.get("player_bitrate_kbps") or 0.0) * 1000)
    startup = HistogramMetricFamily(
        "seedcast_player_startup_delay_seconds", "Startup delay of the viewer's player"
    )
    delay = figures.get("player_startup_s")
    observed = [] if delay is None else [float(delay)]
    buckets = [
        (str(bound), float(sum(1 for value in observed if value <= bound)))
        for bound in (*STARTUP_BUCKETS, math.inf)
    ]
    buckets[-1] = ("+Inf", float(len(observed)))
    startup.add_metric([], buckets, sum_value=sum(observed))
    yield from (played, stall_seconds, stalls, bitrate, startup)
