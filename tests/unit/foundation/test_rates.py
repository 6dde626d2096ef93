"""The one rate meter every role uses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.rates import RateMeter


def test_full_window_average_in_whole_second_buckets() -> None:
    meter = RateMeter(window=5, resolution=1.0)
    for second in range(100, 110):
        meter.add(1000, second + 0.5)
    assert meter.rate(110.0) == pytest.approx(5000 / 5)
    assert meter.rate(200.0) == 0


def test_a_new_meter_is_meaningful_at_once() -> None:
    meter = RateMeter(0.0, window=10.0)
    assert meter.rate(0.0) == 0.0
    meter.add(1000, 0.0)
    meter.add(1000, 0.4)
    assert meter.rate(1.0) == pytest.approx(2000)  # over 1 s, not over the 10 s window
    for step in range(2, 20):
        meter.add(1000, step * 0.5)
    assert meter.rate(10.0) == pytest.approx(2000, rel=0.1)
    assert meter.rate(30.0) == 0.0
    assert meter.total == 20_000


@given(st.lists(st.tuples(st.floats(0, 100), st.integers(0, 10**6)), max_size=50))
def test_rate_never_exceeds_what_was_added(samples: list[tuple[float, int]]) -> None:
    meter = RateMeter(0.0, window=4.0)
    now = 0.0
    for step, amount in samples:
        now += step
        meter.add(amount, now)
        assert 0 <= meter.rate(now) * 0.5 <= meter.total  # resolution is the least time covered
    assert meter.total == sum(amount for _, amount in samples)
