"""Admission of incoming connections: per-host caps and eviction of the least useful."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from seedcast.peer.admission import ConnectionView, Refusal, admit, usefulness

LIMITS = {"max_connections": 4, "per_host": 2, "grace": 10.0}


def view(
    key: str, host: str = "10.0.0.9", connected_at: float = 0.0, **state: bool
) -> ConnectionView:
    return ConnectionView(
        key=key,
        host=host,
        connected_at=connected_at,
        established=state.pop("established", True),
        **state,
    )


def test_room_left_accepts() -> None:
    assert admit("10.0.0.1", [view("a")], 100.0, **LIMITS).accept


def test_banned_and_per_host_refusals() -> None:
    assert admit("10.0.0.1", [], 0.0, banned=True, **LIMITS).refusal is Refusal.BANNED
    two = [view("a", "10.0.0.1"), view("b", "10.0.0.1")]
    decision = admit("10.0.0.1", two, 100.0, **LIMITS)
    assert (decision.accept, decision.refusal) == (False, Refusal.PER_HOST)
    assert admit("10.0.0.2", two, 100.0, **LIMITS).accept


def test_full_of_traders_refuses_the_newcomer() -> None:
    traders = [view(str(n), f"10.0.0.{n}", exchanging=True) for n in range(4)]
    decision = admit("10.0.0.99", traders, 100.0, **LIMITS)
    assert (decision.accept, decision.evict, decision.refusal) == (False, None, Refusal.FULL)


def test_full_evicts_the_least_useful_old_enough() -> None:
    table = [
        view("trader", "10.0.0.1", exchanging=True),
        view("silent", "10.0.0.2", connected_at=5.0),
        view("half-open", "10.0.0.3", established=False, connected_at=50.0),
        view("young-half-open", "10.0.0.4", established=False, connected_at=95.0),
    ]
    decision = admit("10.0.0.99", table, 100.0, **LIMITS)
    assert decision.accept
    assert decision.evict == "half-open"
    # without it, the silent one goes; the young one is protected by the grace
    decision = admit(
        "10.0.0.99", [table[0], table[1], table[3], view("x", exchanging=True)], 100.0, **LIMITS
    )
    assert decision.evict == "silent"


def test_a_stalled_writer_goes_before_a_waiting_peer() -> None:
    table = [
        view("waiting", "10.0.0.1", wanted=True),
        view("never-reads", "10.0.0.2", stalled=True, exchanging=True, wanted=True),
        view("t1", "10.0.0.3", exchanging=True),
        view("t2", "10.0.0.4", exchanging=True),
    ]
    assert admit("10.0.0.99", table, 100.0, **LIMITS).evict == "never-reads"


views = st.builds(
    ConnectionView,
    key=st.integers(0, 10**6),
    host=st.sampled_from([f"10.0.0.{n}" for n in range(6)]),
    connected_at=st.floats(0, 200),
    established=st.booleans(),
    stalled=st.booleans(),
    exchanging=st.booleans(),
    wanted=st.booleans(),
)


@given(
    st.lists(views, max_size=12, unique_by=lambda v: v.key),
    st.sampled_from([f"10.0.0.{n}" for n in range(8)]),
)
def test_decisions_are_consistent(table: list[ConnectionView], host: str) -> None:
    decision = admit(host, table, 200.0, **LIMITS)
    assert decision.accept == (decision.refusal is None)
    if decision.evict is not None:
        (victim,) = [v for v in table if v.key == decision.evict]
        assert usefulness(victim) < 3
        assert 200.0 - victim.connected_at >= 10.0
        assert len(table) >= 4
    if decision.accept and len(table) >= 4:
        assert decision.evict is not None  # never more than max_connections
    assert not (decision.accept and sum(v.host == host for v in table) >= 2)
