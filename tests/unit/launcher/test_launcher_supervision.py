"""Supervision policy: restart backoff, giving up, and each process's state machine."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.launcher.supervision import (
    TRANSITIONS,
    ProcessRecord,
    ProcessState,
    RestartPolicy,
)


def test_backoff_doubles_then_gives_up_on_the_fifth_crash_in_a_minute() -> None:
    policy = RestartPolicy(base_delay=0.1, factor=2.0, max_delay=10.0, max_crashes=5, window=60.0)
    crashes: list[float] = []
    delays = []
    for moment in (0.0, 1.0, 2.0, 3.0):
        crashes.append(moment)
        decision = policy.decide(crashes, moment)
        assert decision.restart
        delays.append(decision.delay)
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8])
    crashes.append(4.0)
    decision = policy.decide(crashes, 4.0)
    assert not decision.restart
    assert decision.crashes_in_window == 5


def test_old_crashes_fall_out_of_the_window() -> None:
    policy = RestartPolicy(max_crashes=5, window=60.0)
    crashes = [0.0, 1.0, 2.0, 3.0, 70.0]
    decision = policy.decide(crashes, 70.0)
    assert decision.restart
    assert decision.crashes_in_window == 1
    assert decision.delay == pytest.approx(policy.base_delay)


def test_delay_is_capped() -> None:
    policy = RestartPolicy(base_delay=1.0, factor=10.0, max_delay=3.0, max_crashes=100)
    assert policy.decide([0.0] * 50, 0.0).delay == 3.0


@given(st.lists(st.floats(0, 1000), max_size=30), st.floats(0, 2000))
def test_decisions_are_bounded(crashes: list[float], now: float) -> None:
    policy = RestartPolicy()
    decision = policy.decide(crashes, now)
    assert 0.0 <= decision.delay <= policy.max_delay
    assert decision.restart == (decision.crashes_in_window < policy.max_crashes)


def test_life_of_a_process() -> None:
    record = ProcessRecord("edge", "edge-1", policy=RestartPolicy())
    assert record.state is ProcessState.STOPPED
    record.spawned(100, now=0.0)
    assert record.state is ProcessState.STARTING
    assert not record.settled
    assert record.became_ready(100, ["127.0.20.1:8080"], None, now=0.5)
    assert record.state is ProcessState.READY
    assert record.settled
    assert record.uptime(2.0) == pytest.approx(2.0)
    decision = record.exited(-9, now=3.0)
    assert decision is not None
    assert decision.restart
    assert record.state is ProcessState.RESTARTING
    assert record.pid is None
    record.spawned(101, now=3.1)
    assert record.restarts == 1
    assert record.state is ProcessState.STARTING
    # A late "ready" from the old pid is ignored.
    assert not record.became_ready(100, [], None, now=3.2)
    assert record.became_ready(101, ["127.0.20.1:8080"], None, now=3.3)
    record.request_stop()
    assert record.exited(0, now=4.0) is None
    assert record.state is ProcessState.STOPPED


def test_five_quick_crashes_mark_it_failed() -> None:
    record = ProcessRecord("edge", "edge-1", policy=RestartPolicy())
    for attempt in range(5):
        record.spawned(200 + attempt, now=float(attempt))
        decision = record.exited(1, now=float(attempt) + 0.1)
        assert decision is not None
    assert record.state is ProcessState.FAILED
    assert record.settled
    assert record.restarts == 4


def test_stop_while_waiting_to_restart() -> None:
    record = ProcessRecord("dns", "dns")
    record.spawned(1, now=0.0)
    record.exited(1, now=0.5)
    assert record.state is ProcessState.RESTARTING
    record.request_stop()
    record.exited(0, now=0.6)
    assert record.state is ProcessState.STOPPED


def test_every_transition_lands_on_a_state() -> None:
    for (state, _), following in TRANSITIONS.items():
        assert isinstance(state, ProcessState)
        assert isinstance(following, ProcessState)
