"""The edge health state machine: window/threshold, hysteresis, eligibility at startup."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.nameserver.health import EdgeState, HealthTracker


def test_first_good_probe_brings_an_edge_up() -> None:
    tracker = HealthTracker(["a", "b"])
    transition = tracker.record("a", True, 1.0)
    assert transition is not None
    assert (transition.edge, transition.old, transition.new, transition.at) == (
        "a",
        EdgeState.UNKNOWN,
        EdgeState.UP,
        1.0,
    )
    assert tracker.eligible() == ["a"]  # b is not judged yet, and a is up


def test_nothing_probed_means_the_configured_set() -> None:
    tracker = HealthTracker(["a", "b", "c"])
    assert tracker.eligible() == ["a", "b", "c"]
    tracker.record("a", False, 1.0)  # one failure: still unknown (threshold 2)
    assert tracker.state("a") is EdgeState.UNKNOWN
    assert tracker.eligible() == ["a", "b", "c"]


def test_an_up_edge_leaves_after_threshold_failures_within_two_intervals() -> None:
    tracker = HealthTracker(["a", "b"], window=3, threshold=2)
    for edge in ("a", "b"):
        tracker.record(edge, True, 0.0)
    assert tracker.record("a", False, 1.0) is None
    assert tracker.eligible() == ["a", "b"]
    transition = tracker.record("a", False, 2.0)
    assert transition is not None
    assert transition.new is EdgeState.DOWN
    assert tracker.eligible() == ["b"]


def test_a_down_edge_returns_after_threshold_successes() -> None:
    tracker = HealthTracker(["a", "b"], window=3, threshold=2)
    tracker.record("b", True, 0.0)
    tracker.record("a", False, 0.0)
    tracker.record("a", False, 1.0)
    assert tracker.state("a") is EdgeState.DOWN
    assert tracker.record("a", True, 2.0) is None
    assert tracker.state("a") is EdgeState.DOWN
    transition = tracker.record("a", True, 3.0)
    assert transition is not None
    assert transition.new is EdgeState.UP
    assert tracker.eligible() == ["a", "b"]


def test_one_flap_changes_nothing() -> None:
    tracker = HealthTracker(["a"], window=3, threshold=2)
    tracker.record("a", True, 0.0)
    for now, ok in enumerate([True, False, True, True, False, True], start=1):
        assert tracker.record("a", ok, float(now)) is None
    assert tracker.state("a") is EdgeState.UP


def test_every_edge_down_leaves_nothing_eligible() -> None:
    tracker = HealthTracker(["a", "b"], window=2, threshold=1)
    tracker.record("a", False, 0.0)
    tracker.record("b", False, 0.0)
    assert tracker.eligible() == []


def test_generation_moves_with_eligibility_and_load() -> None:
    tracker = HealthTracker(["a"])
    start = tracker.generation
    tracker.record("a", True, 0.0)
    after_up = tracker.generation
    assert after_up > start
    tracker.record("a", True, 1.0)
    assert tracker.generation == after_up
    tracker.record("a", True, 2.0, load=3.0)
    assert tracker.generation > after_up
    assert tracker.load("a") == 3.0
    snapshot = {edge.edge: edge for edge in tracker.statistics()}
    assert snapshot["a"].probes == 3
    assert snapshot["a"].failures == 0


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="threshold"):
        HealthTracker(["a"], window=2, threshold=3)
    with pytest.raises(KeyError):
        HealthTracker(["a"]).record("zzz", True, 0.0)


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 5), st.data())
def test_state_follows_the_window(results: list[bool], window: int, data: st.DataObject) -> None:
    """After any history, the state agrees with the rules applied to the last probes."""
    threshold = data.draw(st.integers(1, window))
    tracker = HealthTracker(["a"], window=window, threshold=threshold)
    for now, ok in enumerate(results):
        before = tracker.state("a")
        tracker.record("a", ok, float(now))
        after = tracker.state("a")
        recent = results[max(0, now + 1 - window) : now + 1]
        if after is not before:
            if after is EdgeState.UP:
                assert ok
            else:
                assert not ok
                assert recent.count(False) >= threshold
        if after is EdgeState.UP and before is EdgeState.DOWN:
            assert recent.count(True) >= threshold
    if not results:
        assert tracker.state("a") is EdgeState.UNKNOWN
