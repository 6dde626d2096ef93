"""The byte-bounded storage index: the budget holds under any order of fills."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seedcast.edge.eviction import LruPolicy, S3FifoPolicy, make_policy
from seedcast.edge.storage import Reservation, StorageIndex
from seedcast.errors import LocalProtocolError


def fill(index: StorageIndex, key: str, size: int) -> tuple[str, ...]:
    admission = index.reserve(size)
    assert admission.reservation is not None
    index.commit(admission.reservation, key, size)
    return admission.evicted


def test_lru_evicts_the_least_recently_used() -> None:
    index = StorageIndex(300, "lru", max_object_fraction=1.0)
    fill(index, "a", 100)
    fill(index, "b", 100)
    fill(index, "c", 100)
    index.touch("a")
    assert fill(index, "d", 100) == ("b",)
    assert sorted(index.keys()) == ["a", "c", "d"]
    assert index.statistics().evictions == 1


def test_reservation_refused_without_evicting_when_it_cannot_fit() -> None:
    index = StorageIndex(300, "lru", max_object_fraction=1.0)
    fill(index, "a", 100)
    pending = index.reserve(150).reservation
    assert pending is not None
    admission = index.reserve(200)  # only 150 could ever be freed next to the pending fill
    assert admission.reservation is None
    assert admission.evicted == ()
    assert "a" in index
    assert index.statistics().refused == 1


def test_objects_over_the_max_fraction_are_refused() -> None:
    index = StorageIndex(1000, "lru", max_object_fraction=0.5)
    assert index.reserve(501).reservation is None
    assert index.reserve(500).reservation is not None


def test_grow_evicts_and_refusal_releases() -> None:
    index = StorageIndex(300, "lru", max_object_fraction=1.0)
    fill(index, "a", 200)
    reservation = index.reserve(50).reservation
    assert reservation is not None
    admission = index.grow(reservation, 100)
    assert admission.evicted == ("a",)
    assert reservation.size == 150
    refused = index.grow(reservation, 500)
    assert refused.reservation is None
    assert not reservation.active
    assert index.reserved == 0


def test_commit_replaces_an_existing_key_and_frees_unused_reservation() -> None:
    index = StorageIndex(1000, "lru", max_object_fraction=1.0)
    fill(index, "a", 100)
    reservation = index.reserve(300).reservation
    assert reservation is not None
    assert index.commit(reservation, "a", 250) is True
    assert index.used == 250
    assert index.reserved == 0
    assert len(index) == 1


def test_misuse_raises_local_protocol_error() -> None:
    index = StorageIndex(1000, "lru")
    reservation = index.reserve(10).reservation
    assert reservation is not None
    with pytest.raises(LocalProtocolError):
        index.commit(reservation, "k", 11)
    index.release(reservation)
    index.release(reservation)  # idempotent
    with pytest.raises(LocalProtocolError):
        index.commit(reservation, "k", 1)
    with pytest.raises(ValueError):
        make_policy("random", 10)


def test_s3_fifo_keeps_the_popular_object_through_a_scan() -> None:
    index = StorageIndex(1000, "s3-fifo", max_object_fraction=1.0)
    fill(index, "hot", 100)
    index.touch("hot")
    for number in range(50):  # one-hit wonders
        fill(index, f"scan-{number}", 100)
    assert "hot" in index


def test_s3_fifo_ghost_hit_goes_to_main() -> None:
    policy = S3FifoPolicy(1000)
    policy.insert("a", 500)
    assert policy.evict() == "a"
    policy.insert("a", 500)  # remembered as a ghost: straight to main
    policy.insert("b", 200)
    assert policy.evict() == "b"  # small is over its target, b was never hit
    assert "a" in policy


@pytest.mark.parametrize("policy", [LruPolicy(100), S3FifoPolicy(100)])
def test_policies_evict_everything_exactly_once(policy: LruPolicy | S3FifoPolicy) -> None:
    for number in range(20):
        policy.insert(str(number), 10)
        if number % 3 == 0:
            policy.access(str(number))
    policy.remove("5")
    victims = []
    while (victim := policy.evict()) is not None:
        victims.append(victim)
    assert sorted(victims, key=int) == [str(n) for n in range(20) if n != 5]
    assert len(policy) == 0


operations = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "grow", "commit", "release", "touch", "discard"]),
        st.integers(min_value=0, max_value=40),
        st.integers(min_value=0, max_value=400),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(operations, st.sampled_from(["lru", "s3-fifo"]), st.integers(min_value=0, max_value=1000))
def test_budget_never_exceeded_under_interleaved_fills(
    steps: list[tuple[str, int, int]], policy: str, capacity: int
) -> None:
    """Any interleaving of concurrent fills keeps used + reserved <= capacity."""
    index = StorageIndex(capacity, policy, max_object_fraction=1.0)
    pending: list[Reservation] = []
    stored_sizes: dict[str, int] = {}
    for action, which, size in steps:
        if action == "reserve":
            admission = index.reserve(size)
            if admission.reservation is not None:
                pending.append(admission.reservation)
            for key in admission.evicted:
                stored_sizes.pop(key)
        elif action == "grow" and pending:
            reservation = pending[which % len(pending)]
            admission = index.grow(reservation, size)
            if admission.reservation is None:
                pending.remove(reservation)
            for key in admission.evicted:
                stored_sizes.pop(key)
        elif action == "commit" and pending:
            reservation = pending.pop(which % len(pending))
            actual = min(size, reservation.size)
            index.commit(reservation, f"k{which}", actual)
            stored_sizes[f"k{which}"] = actual
        elif action == "release" and pending:
            index.release(pending.pop(which % len(pending)))
        elif action == "touch":
            assert index.touch(f"k{which}") == (f"k{which}" in stored_sizes)
        elif action == "discard":
            assert index.discard(f"k{which}") == (stored_sizes.pop(f"k{which}", None) is not None)
        assert index.used >= 0
        assert index.reserved >= 0
        assert index.used + index.reserved <= capacity
        assert index.used == sum(stored_sizes.values())
        assert index.reserved == sum(reservation.size for reservation in pending)
        assert sorted(index.keys()) == sorted(stored_sizes)


def test_random_workload_keeps_accounting_exact() -> None:
    rng = random.Random(7)
    for policy in ("lru", "s3-fifo"):
        index = StorageIndex(10_000, policy)
        for _ in range(5000):
            key = f"k{rng.randrange(200)}"
            if index.touch(key):
                continue
            fill(index, key, rng.randrange(1, 2000))
            assert index.used <= index.capacity
