"""The latency policy's core: measured RTT per (region, edge), hysteresis, and the steering."""

from __future__ import annotations

import random

import pytest
from seedcast.config import SteeredName, config_from_mapping
from seedcast.nameserver.delays import MeasuredDelays
from seedcast.nameserver.health import HealthTracker
from seedcast.nameserver.policies import Steering
from seedcast.netem.paths import Topology

MAPPING = {
    "regions": [
        {
            "name": "eu",
            "viewer_prefix": "127.0.41.0/24",
            "latency_ms": {"us": 40},
            "last_mile_ms": 5,
        },
        {"name": "us", "viewer_prefix": "127.0.42.0/24", "last_mile_ms": 5},
    ],
    "edges": [
        {"name": "edge-1", "region": "eu", "listen": "127.0.20.1:8080"},
        {"name": "edge-2", "region": "us", "listen": "127.0.20.2:8080"},
    ],
    "dns": {"names": [{"name": "video.kingcdn.test", "policy": "latency"}]},
}
LATENCY = SteeredName(name="video.kingcdn.test", policy="latency")


def test_starts_from_the_config_table() -> None:
    delays = MeasuredDelays.from_config(config_from_mapping(MAPPING))
    assert delays.estimate("eu", "edge-1").rtt == pytest.approx(0.010)
    assert delays.estimate("eu", "edge-2").rtt == pytest.approx(0.090)
    assert delays.choose("eu", ["edge-1", "edge-2"]) == ["edge-1"]
    assert delays.choose("us", ["edge-1", "edge-2"]) == ["edge-2"]
    assert delays.choose("eu", ["edge-2"]) == ["edge-2"]  # only what is eligible


def test_moves_when_measurements_say_so_but_not_for_a_small_difference() -> None:
    delays = MeasuredDelays.from_config(config_from_mapping(MAPPING))
    delays.record("eu", "edge-1", 0.080, now=1.0)  # first sample replaces the guess
    delays.record("eu", "edge-2", 0.075, now=1.0)
    assert delays.choose("eu", delays.edges)[0] == "edge-1"  # 6 % better: within the margin
    generation = delays.generation
    delays.record("eu", "edge-1", 0.300, now=2.0)
    assert delays.estimate("eu", "edge-1").rtt == pytest.approx(0.190)
    assert delays.choose("eu", delays.edges)[0] == "edge-2"
    assert delays.generation == generation + 1


def test_lost_probes_make_a_path_expensive() -> None:
    delays = MeasuredDelays.from_config(config_from_mapping(MAPPING))
    for step in range(3):
        delays.record("eu", "edge-1", None, now=float(step))
    entry = delays.estimate("eu", "edge-1")
    assert entry.loss == pytest.approx(0.875)
    assert entry.lost == 3
    assert delays.choose("eu", delays.edges)[0] == "edge-2"
    rows = {(row.region, row.edge): row for row in delays.rows()}
    assert rows[("eu", "edge-2")].chosen
    assert rows[("eu", "edge-1")].prefix == "127.0.41.0/24"


def test_alpha_is_checked() -> None:
    with pytest.raises(ValueError, match="alpha"):
        MeasuredDelays(Topology([]), [], alpha=0)


def test_steering_answers_by_measured_delay_and_follows_changes() -> None:
    config = config_from_mapping(MAPPING)
    steering = Steering.from_config(config, HealthTracker([edge.name for edge in config.edges]))
    rng = random.Random(1)
    assert steering.select(LATENCY, "video.kingcdn.test", 4, rng, region="eu").edges == ("edge-1",)
    assert steering.delays is not None
    steering.delays.record("eu", "edge-1", 0.4, now=1.0)
    steering.delays.record("eu", "edge-2", 0.09, now=1.0)
    assert steering.select(LATENCY, "video.kingcdn.test", 4, rng, region="eu").edges == ("edge-2",)
    # Unknown clients get every edge in turn, as with geo.
    unknown = {steering.select(LATENCY, "video.kingcdn.test", 4, rng).edges for _ in range(4)}
    assert unknown == {("edge-1",), ("edge-2",)}


def test_netem_answers_relay_addresses() -> None:
    mapping = dict(MAPPING, netem={"enabled": True, "relay_prefix": "127.0.120.0/24"})
    config = config_from_mapping(mapping)
    steering = Steering.from_config(config, HealthTracker([edge.name for edge in config.edges]))
    selection = steering.select(LATENCY, "video.kingcdn.test", 4, random.Random(1), region="us")
    assert selection.addresses == ("127.0.120.2",)
