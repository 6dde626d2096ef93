"""Selection policies as pure functions, the Locator's ECS scopes, and Steering."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.config import RegionConfig, SteeredName
from seedcast.nameserver.health import HealthTracker
from seedcast.nameserver.policies import (
    Edge,
    Locator,
    Steering,
    least_loaded,
    region_order,
    rendezvous,
    round_robin,
)

EDGES = [Edge(f"edge-{index}", f"127.0.20.{index}", "eu", 4) for index in range(1, 9)]
REGIONS = [
    RegionConfig("eu", "127.0.41.0/24", {"us": 40.0, "asia": 120.0}),
    RegionConfig("us", "127.0.42.0/24", {"eu": 40.0, "asia": 90.0}),
    RegionConfig("asia", "127.0.43.0/24", {"us": 90.0}),
    RegionConfig("mars", "127.0.44.0/24"),
]


def test_round_robin_rotates_and_wraps() -> None:
    pool = EDGES[:3]
    assert [edge.name for edge in round_robin(pool, 2, 0)] == ["edge-1", "edge-2"]
    assert [edge.name for edge in round_robin(pool, 2, 2)] == ["edge-3", "edge-1"]
    assert [edge.name for edge in round_robin(pool, 5, 1)] == ["edge-2", "edge-3", "edge-1"]
    assert round_robin([], 2, 7) == ()


def test_rendezvous_is_deterministic_and_spreads() -> None:
    names = [f"movie{index}.video.kingcdn.test" for index in range(2000)]
    first = {name: rendezvous(EDGES, name, 1)[0].name for name in names}
    again = {name: rendezvous(list(reversed(EDGES)), name, 1)[0].name for name in names}
    assert first == again  # pool order does not matter
    counts = {edge.name: list(first.values()).count(edge.name) for edge in EDGES}
    assert min(counts.values()) > 2000 / 8 * 0.7


@given(st.integers(0, 7), st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=60))
def test_removing_an_edge_moves_only_its_share(leaving: int, names: list[str]) -> None:
    before = {name: rendezvous(EDGES, name, 1)[0] for name in names}
    remaining = [edge for index, edge in enumerate(EDGES) if index != leaving]
    after = {name: rendezvous(remaining, name, 1)[0] for name in names}
    for name in names:
        if before[name] is not EDGES[leaving]:
            assert after[name] is before[name]
        else:
            assert after[name] is not EDGES[leaving]


def test_rendezvous_with_several_answers_keeps_the_top_one() -> None:
    for name in ("a", "b", "c"):
        assert rendezvous(EDGES, name, 3)[0] == rendezvous(EDGES, name, 1)[0]
        assert len(set(rendezvous(EDGES, name, 3))) == 3


def test_least_loaded_weights_by_inverse_load() -> None:
    rng = random.Random(4)
    pool = EDGES[:2]
    loads: dict[str, float | None] = {"edge-1": 0.0, "edge-2": 9.0}  # weights 1 and 0.1
    picks = [least_loaded(pool, loads, 1, rng)[0].name for _ in range(5000)]
    share = picks.count("edge-1") / len(picks)
    assert 0.88 < share < 0.94  # expected 1 / 1.1 = 0.909
    both = least_loaded(pool, loads, 2, rng)
    assert {edge.name for edge in both} == {"edge-1", "edge-2"}


def test_least_loaded_without_figures_is_uniform() -> None:
    rng = random.Random(5)
    pool = EDGES[:4]
    picks = [least_loaded(pool, {}, 1, rng)[0].name for _ in range(4000)]
    for edge in pool:
        assert 0.2 < picks.count(edge.name) / len(picks) < 0.3


def test_region_order_follows_the_latency_table() -> None:
    assert region_order(REGIONS, "eu") == ("eu", "us", "asia", "mars")
    assert region_order(REGIONS, "asia") == ("asia", "us", "eu", "mars")  # eu->asia read backwards
    assert region_order(REGIONS, "mars") == ("mars", "eu", "us", "asia")  # unknown: config order


@pytest.mark.parametrize(
    ("address", "region"),
    [
        ("127.0.41.200", "eu"),
        ("127.0.43.1", "asia"),
        ("127.0.0.1", None),
        ("::1", None),
        ("x", None),
    ],
)
def test_locator_region_of_source_address(address: str, region: str | None) -> None:
    assert Locator(REGIONS).region_of(address) == region


@pytest.mark.parametrize(
    ("family", "source", "address", "expected"),
    [
        (1, 24, bytes([127, 0, 41]), ("eu", 24)),
        (1, 32, bytes([127, 0, 42, 9]), ("us", 24)),
        (1, 8, bytes([127]), (None, 19)),  # 127.0.0.0/19 is the biggest block holding no region
        (1, 16, bytes([192, 168]), (None, 1)),
        (1, 0, b"", (None, 0)),
        (2, 48, bytes(6), (None, 0)),  # no IPv6 regions: one answer for all of IPv6
    ],
)
def test_locator_scope_is_the_block_the_decision_holds_for(
    family: int, source: int, address: bytes, expected: tuple[str | None, int]
) -> None:
    assert Locator(REGIONS).subnet(family, source, address) == expected


def test_locator_memo_is_bounded() -> None:
    locator = Locator(REGIONS, memo_limit=10)
    for index in range(100):
        locator.region_of(f"127.0.41.{index}")
    assert len(locator._by_address) <= 10


def _steering(all_down: str = "origin") -> Steering:
    edges = [
        Edge("edge-1", "127.0.20.1", "eu", 4),
        Edge("edge-2", "127.0.20.2", "us", 4),
        Edge("edge-3", "127.0.20.3", "eu", 4),
        Edge("edge-6", "::1", "us", 6),
    ]
    health = HealthTracker([edge.name for edge in edges], window=1, threshold=1)
    return Steering(
        edges=edges, regions=REGIONS, health=health, all_down=all_down, origin_address="127.0.10.1"
    )


def test_steering_geo_region_fallback_and_all_down() -> None:
    steering = _steering()
    rng = random.Random(1)
    geo = SteeredName("video.kingcdn.test", policy="geo")
    assert steering.select(geo, "video.kingcdn.test", 4, rng, region="us").addresses == (
        "127.0.20.2",
    )
    steering.health.record("edge-2", False, 0.0)
    assert steering.select(geo, "video.kingcdn.test", 4, rng, region="us").edges[0] in (
        "edge-1",
        "edge-3",
    )
    for edge in ("edge-1", "edge-3"):
        steering.health.record(edge, False, 0.0)
    down = steering.select(geo, "video.kingcdn.test", 4, rng, region="us")
    assert (down.addresses, down.edges, down.all_down) == (("127.0.10.1",), ("origin",), True)
    six = steering.select(geo, "video.kingcdn.test", 6, rng, region="us")
    assert six.addresses == ("::1",)  # the IPv6 edge is still unknown, hence eligible


def test_steering_without_edges_of_a_family_is_nodata() -> None:
    steering = Steering(
        edges=[], regions=REGIONS, health=HealthTracker([]), origin_address="127.0.10.1"
    )
    selection = steering.select(SteeredName("x.test"), "x.test", 4, random.Random(1))
    assert selection.addresses == ()
    assert not selection.all_down


def test_steering_consistent_hash_survives_an_edge_leaving() -> None:
    steering = _steering()
    hashed = SteeredName("*.video.kingcdn.test", policy="consistent-hash")
    names = [f"movie{index}.video.kingcdn.test" for index in range(200)]
    rng = random.Random(1)
    before = {name: steering.select(hashed, name, 4, rng).edges[0] for name in names}
    steering.health.record("edge-3", True, 0.0)
    steering.health.record("edge-1", True, 0.0)
    steering.health.record("edge-2", False, 0.0)
    after = {name: steering.select(hashed, name, 4, rng).edges[0] for name in names}
    moved = [name for name in names if before[name] != after[name]]
    assert moved
    assert all(before[name] == "edge-2" for name in moved)
    assert "edge-2" not in after.values()
