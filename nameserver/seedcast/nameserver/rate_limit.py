"""Response rate limiting (RRL) per client prefix, with slip and bounded memory.

Each client prefix (IPv4 /24, IPv6 /56 by default) owns a token bucket that
refills at ``rate`` responses per second up to ``burst``. A UDP response
that finds the bucket empty is *limited*: every ``slip``-th limited response
goes out as a tiny truncated (TC) answer, so a real client behind a spoofed
flood still gets through by retrying over TCP, and the others are dropped
(``slip = 0`` drops them all, ``slip = 1`` truncates them all). TCP is never
limited: its source address is proven by the handshake.

Memory is bounded: the buckets live in an LRU mapping of at most
``max_clients`` prefixes; the least recently seen are forgotten first, which
only ever makes the limiter more lenient to them.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass
from enum import IntEnum


class RateDecision(IntEnum):
    ALLOW = 0
    DROP = 1
    SLIP = 2


@dataclass(frozen=True, slots=True)
class RateLimitStatistics:
    allowed: int
    dropped: int
    slipped: int
    tracked_clients: int
    forgotten_clients: int


class _Bucket:
    __slots__ = ("limited", "tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now
        self.limited = 0


class ResponseRateLimiter:
    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        slip: int = 2,
        max_clients: int = 10000,
        ipv4_prefix: int = 24,
        ipv6_prefix: int = 56,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if max_clients < 1:
            raise ValueError(f"max_clients must be at least 1, got {max_clients}")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate)
        self.slip = max(0, slip)
        self.max_clients = max_clients
        self._ipv4_prefix = ipv4_prefix
        self._ipv6_prefix = ipv6_prefix
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._prefixes: dict[str, str] = {}
        self._allowed = 0
        self._dropped = 0
        self._slipped = 0
        self._forgotten = 0

    def prefix_of(self, client: str) -> str:
        prefix = self._prefixes.get(client)
        if prefix is not None:
            return prefix
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            prefix = client
        else:
            length = self._ipv4_prefix if address.version == 4 else self._ipv6_prefix
            prefix = str(ipaddress.ip_network((address, length), strict=False))
        if len(self._prefixes) >= self.max_clients:
            self._prefixes.clear()
        self._prefixes[client] = prefix
        return prefix

    def check(self, client: str, now: float) -> RateDecision:
        """Account one UDP response to ``client`` at ``now``: send, drop or slip it."""
        prefix = self.prefix_of(client)
        bucket = self._buckets.get(prefix)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[prefix] = bucket
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
                self._forgotten += 1
        else:
            self._buckets.move_to_end(prefix)
            elapsed = now - bucket.updated
            if elapsed > 0:
                bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
                bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            self._allowed += 1
            return RateDecision.ALLOW
        bucket.limited += 1
        if self.slip and bucket.limited % self.slip == 0:
            self._slipped += 1
            return RateDecision.SLIP
        self._dropped += 1
        return RateDecision.DROP

    def statistics(self) -> RateLimitStatistics:
        return RateLimitStatistics(
            allowed=self._allowed,
            dropped=self._dropped,
            slipped=self._slipped,
            tracked_clients=len(self._buckets),
            forgotten_clients=self._forgotten,
        )
