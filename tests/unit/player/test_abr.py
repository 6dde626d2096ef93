from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.player.abr import (
    AbrObservation,
    BbaAbr,
    BolaAbr,
    ThroughputAbr,
    harmonic_mean,
    make_abr,
)

LADDER = [600_000, 1_500_000, 3_000_000, 5_000_000]


def observe(
    buffer: float = 0.0, throughput: tuple[float, ...] = (), current: int | None = None
) -> AbrObservation:
    return AbrObservation(
        buffer_seconds=buffer, segment_seconds=2.0, throughput_bps=throughput, current=current
    )


def test_harmonic_mean_is_pulled_down_by_slow_samples() -> None:
    assert harmonic_mean([1.0, 1.0]) == 1.0
    assert harmonic_mean([10e6, 1e6]) == pytest.approx(1.818e6, rel=1e-3)
    assert harmonic_mean([]) == 0.0


@pytest.mark.parametrize(
    ("throughput", "expected"),
    [
        ((), 0),
        ((500_000.0,), 0),
        ((2_000_000.0,), 1),
        ((3_400_000.0,), 2),
        ((3_300_000.0,), 1),
        ((50e6,), 3),
    ],
)
def test_throughput_rule_keeps_a_safety_margin(
    throughput: tuple[float, ...], expected: int
) -> None:
    assert ThroughputAbr(safety=0.9).choose(LADDER, observe(throughput=throughput)) == expected


def test_bba_reservoir_cushion_and_hysteresis() -> None:
    rule = BbaAbr(reservoir_seconds=4, cushion_seconds=10)
    assert rule.choose(LADDER, observe(buffer=3, current=3)) == 0
    assert rule.choose(LADDER, observe(buffer=14.5, current=0)) == 3
    # Inside the cushion: the map at 9 s is 600k + 0.5 * 4.4M = 2.8M.
    assert rule.choose(LADDER, observe(buffer=9, current=0)) == 1
    assert rule.choose(LADDER, observe(buffer=9, current=1)) == 1  # no step up: 2.8M < 3M
    assert rule.choose(LADDER, observe(buffer=9, current=2)) == 2  # hysteresis: stays
    assert rule.choose(LADDER, observe(buffer=5, current=2)) == 1  # map 1.04M <= 1.5M: down


def test_bola_goes_from_lowest_to_highest_as_the_buffer_fills() -> None:
    rule = BolaAbr(minimum_buffer_seconds=4, buffer_target_seconds=16)
    choices = [rule.choose(LADDER, observe(buffer=level)) for level in (0, 4, 8, 12, 16, 20)]
    assert choices[0] == 0
    assert choices[-1] == 3
    assert choices == sorted(choices)


def test_bola_does_not_step_up_past_what_the_network_carries() -> None:
    rule = BolaAbr()
    assert rule.choose(LADDER, observe(buffer=30, throughput=(1_000_000.0,), current=0)) == 0


@given(
    name=st.sampled_from(["throughput", "bba", "bola"]),
    buffer=st.floats(min_value=0, max_value=120),
    throughput=st.lists(st.floats(min_value=0, max_value=1e9), max_size=6),
    current=st.one_of(st.none(), st.integers(min_value=0, max_value=3)),
)
def test_every_rule_answers_a_valid_index(
    name: str, buffer: float, throughput: list[float], current: int | None
) -> None:
    choice = make_abr(name).choose(LADDER, observe(buffer, tuple(throughput), current))
    assert 0 <= choice < len(LADDER)


def test_unknown_rule() -> None:
    with pytest.raises(ValueError, match="unknown ABR rule"):
        make_abr("magic")
