"""Max-min fair sharing of uplinks and downlinks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seedcast.sim.sharing import max_min_rates


def rates(
    flows: list[tuple[int, int]],
    up: list[float],
    down: list[float],
    caps: list[float] | None = None,
) -> list[float]:
    src = np.array([s for s, _ in flows], dtype=np.int64)
    dst = np.array([d for _, d in flows], dtype=np.int64)
    return list(
        max_min_rates(
            src, dst, np.array(up), np.array(down), None if caps is None else np.array(caps)
        )
    )


def test_one_uplink_split_equally() -> None:
    inf = math.inf
    assert rates([(0, 1), (0, 2), (0, 3)], [90, inf, inf, inf], [inf] * 4) == pytest.approx(
        [30, 30, 30]
    )


def test_a_slow_downlink_leaves_its_share_to_the_others() -> None:
    inf = math.inf
    # Uplink 90 over three; client 1 can take only 10: the others get 40 each.
    assert rates([(0, 1), (0, 2), (0, 3)], [90, inf, inf, inf], [inf, 10, inf, inf]) == (
        pytest.approx([10, 40, 40])
    )


def test_per_connection_caps_and_two_bottlenecks() -> None:
    inf = math.inf
    # Node 2 downloads from 0 and 1 with a 60 downlink; 0 also serves 3.
    result = rates(
        [(0, 2), (1, 2), (0, 3)], [40, 100, inf, inf], [inf, inf, 60, inf], caps=[inf, inf, 5]
    )
    assert result == pytest.approx([30, 30, 5])


def test_unlimited_transfer_is_infinite_and_empty_is_empty() -> None:
    inf = math.inf
    assert rates([(0, 1)], [inf, inf], [inf, inf]) == [inf]
    assert rates([], [1.0], [1.0]) == []


@settings(max_examples=150, deadline=None)
@given(
    st.integers(2, 8).flatmap(
        lambda nodes: st.tuples(
            st.lists(
                st.tuples(st.integers(0, nodes - 1), st.integers(0, nodes - 1)),
                min_size=1,
                max_size=20,
            ),
            st.lists(st.floats(1, 1000), min_size=nodes, max_size=nodes),
            st.lists(st.floats(1, 1000), min_size=nodes, max_size=nodes),
        )
    )
)
def test_max_min_properties(case: tuple[list[tuple[int, int]], list[float], list[float]]) -> None:
    flows, up, down = case
    result = np.array(rates(flows, up, down))
    src = np.array([s for s, _ in flows])
    dst = np.array([d for _, d in flows])
    used_up = np.bincount(src, weights=result, minlength=len(up))
    used_down = np.bincount(dst, weights=result, minlength=len(down))
    # Feasible: no link over its capacity.
    assert (used_up <= np.array(up) * (1 + 1e-6)).all()
    assert (used_down <= np.array(down) * (1 + 1e-6)).all()
    # Max-min: every transfer crosses a full link on which it is among the fastest.
    for index, (s, d) in enumerate(flows):
        full_up = used_up[s] >= up[s] * (1 - 1e-6) and result[index] >= result[src == s].max() * (
            1 - 1e-6
        )
        full_down = used_down[d] >= down[d] * (1 - 1e-6) and result[index] >= result[
            dst == d
        ].max() * (1 - 1e-6)
        assert full_up or full_down
