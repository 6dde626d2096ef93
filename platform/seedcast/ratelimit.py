"""Token buckets that cap bytes per second: per process, per connection, per viewer.

The core, :class:`TokenBucketState`, is a debt-based bucket: a caller
*reserves* its bytes at once (tokens may go negative) and is told how long to
wait before sending them. Reservations are served strictly in the order they
were made, which makes concurrent users of one bucket fair as long as each
sends in chunks (16-64 KiB), and the long-run rate exact: after the first
``burst`` bytes, N bytes never go out faster than N / rate seconds.

The bucket starts empty, so a measurement window that begins with the first
byte sees the cap itself, not the cap plus a burst. ``rate == 0`` means
unlimited.

:class:`TokenBucket` is the trio shell: ``await bucket.consume(n)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import trio

DEFAULT_BURST_SECONDS = 0.05
MIN_BURST_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class TokenBucketStatistics:
    rate: float
    burst: float
    tokens: float
    bytes_consumed: int
    seconds_waited: float


class TokenBucketState:
    """Sans-IO bucket: feed it ``now``; it answers how long to wait."""

    def __init__(self, rate: float, *, burst: float | None = None, now: float = 0.0) -> None:
        self.rate = 0.0
        self.burst = 0.0
        self.tokens = 0.0
        self.updated = now
        self.bytes_consumed = 0
        self.seconds_waited = 0.0
        self._explicit_burst = burst
        self.set_rate(rate, now=now)

    def set_rate(self, rate: float, *, now: float) -> None:
        """Change the cap; bytes already reserved keep their place in line."""
        if rate < 0 or math.isnan(rate):
            raise ValueError(f"rate must be >= 0 (0 = unlimited), got {rate}")
        self._refill(now)
        self.rate = rate
        self.burst = (
            self._explicit_burst
            if self._explicit_burst is not None
            else max(rate * DEFAULT_BURST_SECONDS, MIN_BURST_BYTES)
        )
        self.tokens = min(self.tokens, self.burst)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            if self.rate > 0:
                self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def reserve(self, amount: int, now: float) -> float:
        """Take ``amount`` bytes; return the seconds to wait before using them."""
        if amount < 0:
            raise ValueError(f"amount must be >= 0, got {amount}")
        self.bytes_consumed += amount
        if self.rate == 0:
            return 0.0
        self._refill(now)
        self.tokens -= amount
        if self.tokens >= 0:
            return 0.0
        delay = -self.tokens / self.rate
        self.seconds_waited += delay
        return delay

    def refund(self, amount: int, now: float) -> None:
        """Give back a reservation that was never used (the waiter was cancelled)."""
        self._refill(now)
        self.bytes_consumed -= amount
        if self.rate > 0:
            self.tokens = min(self.burst, self.tokens + amount)

    def statistics(self) -> TokenBucketStatistics:
        return TokenBucketStatistics(
            rate=self.rate,
            burst=self.burst,
            tokens=self.tokens,
            bytes_consumed=self.bytes_consumed,
            seconds_waited=self.seconds_waited,
        )


class TokenBucket:
    """``await bucket.consume(n)`` returns when ``n`` more bytes fit under the cap."""

    def __init__(self, rate: float, *, burst: float | None = None) -> None:
        self._state = TokenBucketState(rate, burst=burst, now=_now())

    @property
    def rate(self) -> float:
        return self._state.rate

    def set_rate(self, rate: float) -> None:
        self._state.set_rate(rate, now=_now())

    async def consume(self, amount: int) -> None:
        await consume_all((self,), amount)

    def statistics(self) -> TokenBucketStatistics:
        return self._state.statistics()


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # built outside trio.run (e.g. in a config step)
        return 0.0


async def consume_all(buckets: Sequence[TokenBucket | None], amount: int) -> None:
    """Reserve ``amount`` in every bucket (process, connection, viewer) and wait for the slowest.

    ``None`` entries are skipped, so callers can pass optional caps as they are.
    """
    now = trio.current_time()
    active = [bucket for bucket in buckets if bucket is not None]
    delay = 0.0
    for bucket in active:
        delay = max(delay, bucket._state.reserve(amount, now))
    if delay <= 0:
        await trio.lowlevel.checkpoint()
        return
    try:
        await trio.sleep(delay)
    except trio.Cancelled:
        later = trio.current_time()
        for bucket in active:
            bucket._state.refund(amount, later)
        raise
