"""Token bucket accuracy and fairness, on trio's virtual clock.

The bucket's arithmetic decides how fast bytes may go; the virtual clock
(autojump) lets us run 2 s of traffic in milliseconds, deterministically.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from seedcast.ratelimit import TokenBucket, TokenBucketState, consume_all
from seedcast.units import KB, MB, KiB

CHUNK = 16 * KiB


async def send_for(bucket: TokenBucket, seconds: float, chunk: int = CHUNK) -> int:
    sent = 0
    with trio.move_on_after(seconds):
        while True:
            await bucket.consume(chunk)
            sent += chunk
    return sent


@pytest.mark.parametrize("rate", [100 * KB, 1 * MB, 10 * MB, 50 * MB])
async def test_rate_within_five_percent_over_two_seconds(
    rate: float, autojump_clock: trio.testing.MockClock
) -> None:
    bucket = TokenBucket(rate)
    sent = await send_for(bucket, 2.0)
    assert sent == pytest.approx(rate * 2.0, rel=0.05)


async def test_concurrent_users_share_fairly(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket(1 * MB)
    results: list[int] = []

    async def user() -> None:
        results.append(await send_for(bucket, 2.0))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(user)
    assert sum(results) == pytest.approx(2 * MB, rel=0.05)
    assert min(results) >= max(results) * 0.95


async def test_zero_rate_is_unlimited(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket(0)
    start = trio.current_time()
    for _ in range(100):
        await bucket.consume(MB)
    assert trio.current_time() == start


async def test_the_slowest_of_several_buckets_sets_the_pace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    process = TokenBucket(10 * MB)
    connection = TokenBucket(1 * MB)
    sent = 0
    with trio.move_on_after(2.0):
        while True:
            await consume_all((process, connection, None), CHUNK)
            sent += CHUNK
    assert sent == pytest.approx(2 * MB, rel=0.05)


async def test_set_rate_changes_the_pace(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket(100 * KB)
    await send_for(bucket, 1.0)
    bucket.set_rate(1 * MB)
    sent = await send_for(bucket, 1.0)
    assert sent == pytest.approx(1 * MB, rel=0.05)


async def test_cancelled_waiter_gives_its_reservation_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bucket = TokenBucket(100 * KB)
    with trio.move_on_after(0.1):
        await bucket.consume(1 * MB)  # would need 10 s
    assert bucket.statistics().bytes_consumed == 0
    sent = await send_for(bucket, 1.0)
    assert sent == pytest.approx(100 * KB, rel=0.2)


def test_state_starts_empty_and_caps_idle_refill() -> None:
    state = TokenBucketState(1000, burst=500, now=0.0)
    assert state.reserve(100, now=0.0) == pytest.approx(0.1)
    # A long idle period refills only up to the burst.
    assert state.reserve(500, now=100.0) == 0.0
    assert state.reserve(1000, now=100.0) == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_bad_rates_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucketState(bad)
