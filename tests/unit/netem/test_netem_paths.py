"""The emulated-path core: profiles from the config, and the delay line's schedule."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.config import config_from_mapping
from seedcast.errors import ConfigError
from seedcast.netem.paths import MIN_RTO, DelayLine, PathProfile, Topology

REGIONS = {
    "regions": [
        {
            "name": "eu",
            "viewer_prefix": "127.0.41.0/24",
            "latency_ms": {"us": 40},
            "loss": {"us": 0.01},
            "last_mile_ms": 10,
            "last_mile_jitter_ms": 2,
        },
        {"name": "us", "viewer_prefix": "127.0.42.0/24", "last_mile_ms": 5},
    ]
}


def topology() -> Topology:
    return Topology.from_config(config_from_mapping(REGIONS))


def test_path_adds_last_miles_and_the_core_either_way() -> None:
    paths = topology()
    assert paths.path("eu", "eu") == PathProfile(0.010, 0.002, 0.0)
    to_us = paths.path("eu", "us")
    assert to_us.delay == pytest.approx(0.050)
    assert to_us.loss == pytest.approx(0.01)
    back = paths.path("us", "eu", source_last_mile=False, destination_last_mile=True)
    assert back.delay == pytest.approx(0.050)  # the table holds eu->us only: used both ways
    viewer_to_viewer = paths.path("us", "eu", destination_last_mile=True)
    assert viewer_to_viewer.delay == pytest.approx(0.055)
    assert paths.path(None, "us") == PathProfile()


def test_region_of_reads_the_viewer_prefixes() -> None:
    paths = topology()
    assert paths.region_of("127.0.41.7") == "eu"
    assert paths.region_of("127.0.20.1") is None
    assert paths.region_of("not an address") is None


def test_set_path_overrides_both_directions_and_checks_names() -> None:
    paths = topology()
    paths.set_path("eu", "eu", PathProfile(0.1))
    assert paths.path("eu", "eu").delay == pytest.approx(0.110)
    with pytest.raises(ValueError, match="unknown region 'mars'"):
        paths.set_path("eu", "mars", PathProfile())


def test_config_rejects_bad_loss_and_unknown_regions() -> None:
    bad = {"regions": [{"name": "eu", "viewer_prefix": "127.0.41.0/24", "last_mile_loss": 2}]}
    with pytest.raises(ConfigError, match="last_mile_loss: a fraction"):
        config_from_mapping(bad)
    unknown = {"regions": [{"name": "eu", "viewer_prefix": "127.0.41.0/24", "loss": {"x": 0.1}}]}
    with pytest.raises(ConfigError, match=r"loss\.x: unknown region"):
        config_from_mapping(unknown)
    with pytest.raises(ValueError, match="fraction"):
        PathProfile(loss=1.5)


def test_delay_line_without_jitter_or_loss_is_exact() -> None:
    line = DelayLine(PathProfile(0.05), random.Random(1), ordered=False)
    assert line.admit(10.0) == pytest.approx(10.05)


def test_unordered_line_drops_about_the_loss_fraction() -> None:
    line = DelayLine(PathProfile(0.01, loss=0.01), random.Random(7), ordered=False)
    dropped = sum(line.admit(float(step)) is None for step in range(100_000))
    assert 800 < dropped < 1200
    assert line.lost == dropped


def test_ordered_line_turns_loss_into_a_retransmission_delay() -> None:
    line = DelayLine(PathProfile(0.01, loss=1.0), random.Random(1), ordered=True)
    assert line.admit(0.0, rtt=0.02) == pytest.approx(0.01 + MIN_RTO)
    assert line.admit(0.0, rtt=0.5) == pytest.approx(0.51)


@given(
    delay=st.floats(0, 1),
    jitter=st.floats(0, 1),
    loss=st.floats(0, 1),
    arrivals=st.lists(st.floats(0, 100), min_size=1, max_size=50),
    seed=st.integers(0, 2**32),
)
def test_ordered_line_never_reorders_and_never_delivers_early(
    delay: float, jitter: float, loss: float, arrivals: list[float], seed: int
) -> None:
    line = DelayLine(PathProfile(delay, jitter, loss), random.Random(seed), ordered=True)
    previous = float("-inf")
    for now in sorted(arrivals):
        out = line.admit(now)
        assert out is not None
        assert out >= now
        assert out >= previous
        previous = out


@given(delay=st.floats(0, 1), jitter=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_jitter_stays_within_its_bounds(delay: float, jitter: float, seed: int) -> None:
    line = DelayLine(PathProfile(delay, jitter), random.Random(seed), ordered=False)
    out = line.admit(0.0)
    assert out is not None
    assert max(0.0, delay - jitter) - 1e-9 <= out <= delay + jitter + 1e-9
