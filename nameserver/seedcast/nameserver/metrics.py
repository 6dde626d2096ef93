"""Prometheus families for the nameserver, built from statistics snapshots at scrape time.

Names: ``seedcast_dns_<what>_<unit>``. Queries by qtype and rcode, answers by
policy and edge, rate-limited responses, health state and load per edge,
probe results, the answer-cache, TCP connections and a latency histogram.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from seedcast.nameserver.delays import DelayRow
from seedcast.nameserver.health import EdgeHealth, EdgeState
from seedcast.nameserver.statistics import AnswererStatistics, HistogramSnapshot


@dataclass(frozen=True, slots=True)
class NameServerSnapshot:
    answerer: AnswererStatistics
    health: list[EdgeHealth]
    latency: HistogramSnapshot
    tcp_connections: int
    tcp_connections_total: int
    udp_send_errors: int
    tcp_evicted: int = 0
    tcp_refused: int = 0
    delays: list[DelayRow] = field(default_factory=list)


def families(snapshot: NameServerSnapshot) -> Iterable[Metric]:
    stats = snapshot.answerer
    queries = CounterMetricFamily(
        "seedcast_dns_queries", "DNS responses by query type and rcode", labels=["qtype", "rcode"]
    )
    for (qtype, rcode), count in sorted(stats.queries.items()):
        queries.add_metric([qtype, rcode], count)
    yield queries

    answers = CounterMetricFamily(
        "seedcast_dns_answers",
        "Edge addresses handed out, by policy and edge",
        labels=["policy", "edge"],
    )
    for (policy, edge), count in sorted(stats.answers.items()):
        answers.add_metric([policy, edge], count)
    yield answers

    limited = CounterMetricFamily(
        "seedcast_dns_rate_limited", "Rate-limited UDP responses by action", labels=["action"]
    )
    for action in ("dropped", "slipped"):
        limited.add_metric([action], stats.rate_limited.get(action, 0))
    yield limited

    dropped = CounterMetricFamily(
        "seedcast_dns_dropped", "Packets not answered, by reason", labels=["reason"]
    )
    for reason in ("short", "response", "rate-limited"):
        dropped.add_metric([reason], stats.dropped.get(reason, 0))
    yield dropped

    yield CounterMetricFamily(
        "seedcast_dns_truncated",
        "Responses sent truncated (TC) because they did not fit",
        value=stats.truncated,
    )
    yield CounterMetricFamily(
        "seedcast_dns_answer_cache_hits",
        "Queries answered from the rendered-answer cache",
        value=stats.cache_hits,
    )
    yield CounterMetricFamily(
        "seedcast_dns_answer_cache_misses",
        "Queries answered by the full dnspython path",
        value=stats.cache_misses,
    )
    yield GaugeMetricFamily(
        "seedcast_dns_answer_cache_entries", "Rendered answers cached", value=stats.cache_entries
    )

    healthy = GaugeMetricFamily(
        "seedcast_dns_edge_healthy", "1 when the edge is up by its health checks", labels=["edge"]
    )
    state = GaugeMetricFamily(
        "seedcast_dns_edge_state", "Health state of each edge (one-hot)", labels=["edge", "state"]
    )
    load = GaugeMetricFamily(
        "seedcast_dns_edge_load", "Last load figure reported by each edge", labels=["edge"]
    )
    probes = CounterMetricFamily(
        "seedcast_dns_health_probes", "Health probes by edge and result", labels=["edge", "result"]
    )
    for health in snapshot.health:
        healthy.add_metric([health.edge], 1.0 if health.state is EdgeState.UP else 0.0)
        for candidate in EdgeState:
            state.add_metric(
                [health.edge, candidate.name.lower()], 1.0 if health.state is candidate else 0.0
            )
        if health.load is not None:
            load.add_metric([health.edge], health.load)
        probes.add_metric([health.edge, "ok"], health.probes - health.failures)
        probes.add_metric([health.edge, "failed"], health.failures)
    yield healthy
    yield state
    yield load
    yield probes

    latency = snapshot.latency
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip((*latency.bounds, float("inf")), latency.counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    histogram = HistogramMetricFamily(
        "seedcast_dns_query_duration_seconds", "Time to answer one query inside the server"
    )
    histogram.add_metric([], buckets, latency.total)
    yield histogram

    yield GaugeMetricFamily(
        "seedcast_dns_tcp_connections",
        "Open DNS-over-TCP connections",
        value=snapshot.tcp_connections,
    )
    yield CounterMetricFamily(
        "seedcast_dns_tcp_connections_accepted",
        "DNS-over-TCP connections accepted",
        value=snapshot.tcp_connections_total,
    )
    yield CounterMetricFamily(
        "seedcast_dns_tcp_connections_evicted",
        "Idle DNS-over-TCP connections closed to make room for a new one",
        value=snapshot.tcp_evicted,
    )
    yield CounterMetricFamily(
        "seedcast_dns_tcp_connections_refused",
        "DNS-over-TCP connections closed at accept (server or source full of busy ones)",
        value=snapshot.tcp_refused,
    )
    yield CounterMetricFamily(
        "seedcast_dns_udp_send_errors",
        "UDP responses the kernel would not take",
        value=snapshot.udp_send_errors,
    )
    yield from delay_families(snapshot.delays)


def delay_families(rows: Iterable[DelayRow]) -> Iterable[Metric]:
    """Measured path figures per client prefix and edge (the latency policy's inputs)."""
    labels = ["region", "prefix", "edge"]
    rtt = GaugeMetricFamily(
        "seedcast_dns_path_rtt_seconds",
        "Moving-average round-trip time from a region's clients to an edge",
        labels=labels,
    )
    loss = GaugeMetricFamily(
        "seedcast_dns_path_loss_ratio", "Moving-average probe loss", labels=labels
    )
    probes = CounterMetricFamily(
        "seedcast_dns_path_probes", "Path probes by result", labels=[*labels, "result"]
    )
    chosen = GaugeMetricFamily(
        "seedcast_dns_path_chosen", "1 for the edge a region is sent to", labels=labels
    )
    for row in rows:
        key = [row.region, row.prefix, row.edge]
        rtt.add_metric(key, row.rtt)
        loss.add_metric(key, row.loss)
        probes.add_metric([*key, "ok"], row.samples - row.lost)
        probes.add_metric([*key, "lost"], row.lost)
        chosen.add_metric(key, 1.0 if row.chosen else 0.0)
    yield from (rtt, loss, probes, chosen)


def producer(snapshot: Callable[[], NameServerSnapshot]) -> Callable[[], Iterable[Metric]]:
    """For :class:`seedcast.metrics.StatisticsCollector`."""
    return lambda: families(snapshot())
