"""Choker: tit-for-tat rounds, vacancies, optimistic rotation, anti-snubbing."""

from __future__ import annotations

import random
from collections import Counter

from seedcast.peer.choker import Choker, ChokerPeer, is_snubbed


def peers(
    rates: dict[str, float], *, interested: bool = True, connected_at: float = -1000.0
) -> list[ChokerPeer]:
    return [
        ChokerPeer(key, interested, download_rate=rate, upload_rate=0.0, connected_at=connected_at)
        for key, rate in rates.items()
    ]


def test_best_four_downloaders_plus_one_optimistic() -> None:
    choker = Choker(rng=random.Random(1))
    swarm = peers({f"p{i}": float(i) for i in range(10)})
    decision = choker.decide(0.0, swarm, seeding=False)
    assert decision.unchoked - decision.optimistic == {"p9", "p8", "p7", "p6"}
    assert len(decision.optimistic) == 1
    assert decision.optimistic <= {f"p{i}" for i in range(6)}


def test_uninterested_peers_are_not_unchoked() -> None:
    choker = Choker(rng=random.Random(1))
    swarm = peers({"a": 5.0, "b": 1.0}) + peers({"c": 100.0}, interested=False)
    decision = choker.decide(0.0, swarm, seeding=False)
    assert decision.unchoked == {"a", "b"}


def test_regular_set_holds_until_the_next_round_but_vacancies_fill() -> None:
    choker = Choker(rng=random.Random(1), optimistic_slots=0)
    choker.decide(0.0, peers({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 0.0}), seeding=False)
    # e becomes the best, but the round lasts 10 s
    swarm = peers({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 99.0})
    assert choker.decide(5.0, swarm, seeding=False).unchoked == {"a", "b", "c", "d"}
    # a leaves: its slot goes to e at once
    assert choker.decide(6.0, swarm[1:], seeding=False).unchoked == {"b", "c", "d", "e"}
    assert choker.decide(10.0, swarm, seeding=False).unchoked == {"e", "d", "c", "b"}


def test_seeding_fastest_upload_policy_ranks_by_upload_rate() -> None:
    choker = Choker(rng=random.Random(1), optimistic_slots=0, seed_policy="fastest-upload")
    swarm = [
        ChokerPeer(f"p{i}", True, download_rate=0.0, upload_rate=float(10 - i), connected_at=0.0)
        for i in range(8)
    ]
    assert choker.decide(0.0, swarm, seeding=True).unchoked == {"p0", "p1", "p2", "p3"}


def test_optimistic_rotates_every_30_seconds_and_favours_new_peers() -> None:
    counts: Counter[str] = Counter()
    for seed in range(300):
        choker = Choker(rng=random.Random(seed), regular_slots=0)
        swarm = peers({"old1": 0.0, "old2": 0.0}) + peers({"new": 0.0}, connected_at=0.0)
        (chosen,) = choker.decide(1.0, swarm, seeding=False).optimistic
        counts[chosen] += 1
    assert counts["new"] > counts["old1"] + counts["old2"] * 0.8

    choker = Choker(rng=random.Random(3), regular_slots=0)
    swarm = peers({"a": 0.0, "b": 0.0, "c": 0.0})
    first = choker.decide(0.0, swarm, seeding=False).optimistic
    assert choker.decide(29.0, swarm, seeding=False).optimistic == first
    assert choker.decide(30.0, swarm, seeding=False).optimistic != first


def test_snubbing_peer_loses_its_regular_slot_and_adds_an_optimistic_one() -> None:
    choker = Choker(rng=random.Random(1))
    swarm = peers({f"p{i}": float(i) for i in range(8)})
    swarm[7] = ChokerPeer("p7", True, 7.0, 0.0, -1000.0, snubbed=True)
    decision = choker.decide(0.0, swarm, seeding=False)
    assert decision.unchoked - decision.optimistic == {"p6", "p5", "p4", "p3"}
    assert len(decision.optimistic) == 2


def test_is_snubbed() -> None:
    assert not is_snubbed(100.0, None, None)
    assert not is_snubbed(100.0, 50.0, None)
    assert is_snubbed(100.0, 30.0, None)
    assert not is_snubbed(100.0, 0.0, 80.0)


def test_idle_unchoked_peer_gives_its_slot_away() -> None:
    choker = Choker(rng=random.Random(1), regular_slots=1, optimistic_slots=0)
    swarm = peers({"busy": 5.0, "waiting": 1.0})
    assert choker.decide(0.0, swarm, seeding=False).unchoked == {"busy"}
    swarm[0] = ChokerPeer("busy", True, 5.0, 0.0, -1000.0, idle=True)
    assert choker.decide(1.0, swarm, seeding=False).unchoked == {"waiting"}


def test_round_robin_seeding_serves_the_least_served() -> None:
    choker = Choker(rng=random.Random(1), optimistic_slots=0, seed_policy="round-robin")
    swarm = [
        ChokerPeer(f"p{i}", True, 0.0, upload_rate=100.0 * i, connected_at=0.0, uploaded=1000 * i)
        for i in range(8)
    ]
    assert choker.decide(0.0, swarm, seeding=True).unchoked == {"p0", "p1", "p2", "p3"}


def test_spare_slots_go_to_peers_within_credit_never_to_free_riders() -> None:
    choker = Choker(rng=random.Random(1), optimistic_slots=0, credit=1000)
    swarm = [
        ChokerPeer("giver", True, download_rate=50.0, upload_rate=0.0, connected_at=0.0),
        ChokerPeer("newcomer", True, download_rate=0.0, upload_rate=0.0, connected_at=0.0),
        ChokerPeer("even", True, 0.0, 0.0, 0.0, uploaded=5000, downloaded=4500),
        ChokerPeer("free-rider", True, 0.0, 0.0, 0.0, uploaded=5000, downloaded=0),
    ]
    assert choker.decide(0.0, swarm, seeding=False).unchoked == {"giver", "newcomer", "even"}
    # the classic choker (no credit limit) fills every slot
    classic = Choker(rng=random.Random(1), optimistic_slots=0, credit=None)
    assert "free-rider" in classic.decide(0.0, swarm, seeding=False).unchoked


def test_free_riders_still_get_optimistic_unchokes() -> None:
    seen = set()
    for seed in range(20):
        choker = Choker(rng=random.Random(seed), regular_slots=1, credit=0)
        swarm = [
            ChokerPeer("giver", True, download_rate=50.0, upload_rate=0.0, connected_at=0.0),
            ChokerPeer("free-rider", True, 0.0, 0.0, 0.0, uploaded=5000),
        ]
        seen |= choker.decide(0.0, swarm, seeding=False).optimistic
    assert seen == {"free-rider"}


def test_round_robin_is_the_default_seed_policy() -> None:
    choker = Choker(rng=random.Random(1), optimistic_slots=0, regular_slots=2)
    swarm = [
        ChokerPeer(f"p{i}", True, 0.0, upload_rate=float(i), connected_at=0.0, uploaded=i * 1000)
        for i in range(5)
    ]
    # the fastest downloaders don't win: the least served do
    assert choker.decide(0.0, swarm, seeding=True).unchoked == {"p0", "p1"}
