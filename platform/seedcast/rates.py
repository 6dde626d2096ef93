"""Amount per second over a sliding window (sans-IO: the caller passes ``now``).

One meter for every role (peer connections, the edge's bytes and requests).
Amounts are summed in buckets of ``resolution`` seconds; the bucket being
filled is two attributes, so :meth:`RateMeter.add` on the hot path is one
division, one comparison and one addition. :meth:`RateMeter.rate` is the
amount in the buckets of the last ``window`` seconds over the time those
buckets actually cover, and never over more time than has passed since the
meter started (``now`` at construction), so a new connection's rate is
meaningful after a fraction of a second instead of ramping up over the
whole window.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["RateMeter"]


class RateMeter:
    """Bytes (or events) per second over the last ``window`` seconds."""

    __slots__ = (
        "_current",
        "_current_total",
        "_history",
        "_resolution",
        "_started",
        "_window",
        "total",
    )

    def __init__(
        self, now: float | None = None, *, window: float = 10.0, resolution: float = 0.5
    ) -> None:
        """``now``: when metering starts (None: rates are always over the whole window)."""
        if window <= 0 or resolution <= 0:
            raise ValueError("window and resolution must be positive")
        self._window = window
        self._resolution = resolution
        self._started = -math.inf if now is None else now
        self._history: deque[tuple[int, float]] = deque(maxlen=math.ceil(window / resolution) + 1)
        self._current = -(2**62)
        self._current_total = 0.0
        self.total = 0.0
        """Everything ever added."""

    def add(self, amount: float, now: float) -> None:
        self.total += amount
        bucket = int(now // self._resolution)
        if bucket == self._current:
            self._current_total += amount
            return
        if self._current_total:
            self._history.append((self._current, self._current_total))
        self._current = bucket
        self._current_total = amount

    def rate(self, now: float) -> float:
        """Amount per second over the recent window."""
        resolution = self._resolution
        first = int((now - self._window) // resolution)
        last = int(now // resolution)
        total = sum(value for bucket, value in self._history if first <= bucket <= last)
        if first <= self._current <= last:
            total += self._current_total
        if not total:
            return 0.0
        covered = now - max(first * resolution, self._started)
        return total / max(covered, resolution)
