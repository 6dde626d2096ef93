"""Transfer rate over a sliding window (sans-IO: the caller passes ``now``).

Bytes are counted in buckets of ``resolution`` seconds; :meth:`RateMeter.rate`
is the bytes in the last ``window`` seconds over the time actually covered
(at least ``resolution``), so a new connection's rate is meaningful after a
fraction of a second instead of ramping up over the whole window.
"""

from __future__ import annotations

from collections import deque

__all__ = ["RateMeter"]


class RateMeter:
    __slots__ = ("_buckets", "_resolution", "_started", "_window", "total")

    def __init__(self, now: float, *, window: float = 10.0, resolution: float = 0.5) -> None:
        self._window = window
        self._resolution = resolution
        self._buckets: deque[list[float]] = deque()  # [bucket start, bytes]
        self._started = now
        self.total = 0

    def add(self, amount: int, now: float) -> None:
        self.total += amount
        buckets = self._buckets
        if buckets and now - buckets[-1][0] < self._resolution:
            buckets[-1][1] += amount
        else:
            buckets.append([now, float(amount)])
        self._expire(now)

    def _expire(self, now: float) -> None:
        buckets = self._buckets
        horizon = now - self._window
        while buckets and buckets[0][0] < horizon:
            buckets.popleft()

    def rate(self, now: float) -> float:
        """Bytes per second over the recent window."""
        self._expire(now)
        if not self._buckets:
            return 0.0
        covered = min(self._window, now - self._started)
        covered = max(covered, self._resolution)
        return sum(bucket[1] for bucket in self._buckets) / covered
