"""Plain counters the nameserver keeps on its hot path, and their frozen snapshots.

Nothing here touches Prometheus: :mod:`seedcast.nameserver.metrics`
turns snapshots into metric families at scrape time, so a query costs a few
dictionary increments and no locks.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import dns.rcode
import dns.rdatatype

# Query types that get their own metric label; anything else is "other", so a
# client cannot grow the label set by asking for TYPE12345.
_COMMON_TYPES = frozenset(
    dns.rdatatype.to_text(rdtype)
    for rdtype in (
        dns.rdatatype.A,
        dns.rdatatype.AAAA,
        dns.rdatatype.CNAME,
        dns.rdatatype.NS,
        dns.rdatatype.SOA,
        dns.rdatatype.MX,
        dns.rdatatype.TXT,
        dns.rdatatype.SRV,
        dns.rdatatype.PTR,
        dns.rdatatype.ANY,
        dns.rdatatype.AXFR,
        dns.rdatatype.IXFR,
        dns.rdatatype.HTTPS,
        dns.rdatatype.SVCB,
        dns.rdatatype.CAA,
        dns.rdatatype.DS,
        dns.rdatatype.DNSKEY,
    )
)


def qtype_label(rdtype: int | None) -> str:
    if rdtype is None:
        return "none"
    text = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))
    return text if text in _COMMON_TYPES else "other"


def rcode_label(rcode: int) -> str:
    try:
        return dns.rcode.to_text(dns.rcode.Rcode(rcode))
    except ValueError:
        return "other"


@dataclass(frozen=True, slots=True)
class AnswererStatistics:
    queries: Mapping[tuple[str, str], int]
    """Responses sent (or dropped by the rate limiter) by (qtype, rcode)."""
    answers: Mapping[tuple[str, str], int]
    """Addresses handed out by (policy, edge)."""
    dropped: Mapping[str, int]
    """Packets not answered, by reason (short, response, rate-limited)."""
    rate_limited: Mapping[str, int]
    """Rate-limited responses by action (dropped, slipped)."""
    truncated: int
    cache_hits: int
    cache_misses: int
    cache_entries: int


class Counters:
    """Mutable counters owned by one Answerer."""

    __slots__ = (
        "answers",
        "cache_hits",
        "cache_misses",
        "dropped",
        "queries",
        "rate_limited",
        "truncated",
    )

    def __init__(self) -> None:
        self.queries: dict[tuple[str, str], int] = {}
        self.answers: dict[tuple[str, str], int] = {}
        self.dropped: dict[str, int] = {}
        self.rate_limited: dict[str, int] = {}
        self.truncated = 0
        self.cache_hits = 0
        self.cache_misses = 0

    def snapshot(self, cache_entries: int) -> AnswererStatistics:
        return AnswererStatistics(
            queries=dict(self.queries),
            answers=dict(self.answers),
            dropped=dict(self.dropped),
            rate_limited=dict(self.rate_limited),
            truncated=self.truncated,
            cache_hits=self.cache_hits,
            cache_misses=self.cache_misses,
            cache_entries=cache_entries,
        )


DEFAULT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.1,
)


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    """Per bucket (not cumulative); one more than ``bounds``: the last is +Inf."""
    total: float
    count: int = field(default=0)


class LatencyHistogram:
    """Time spent answering one query, in seconds (observed by the shell)."""

    def __init__(self, bounds: Sequence[float] = DEFAULT_LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self._total = 0.0
        self._count = 0

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self._total += seconds
        self._count += 1

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, tuple(self._counts), self._total, self._count)
