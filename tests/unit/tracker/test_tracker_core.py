"""The tracker core: announce rules, expiry, bounds, allowlist, invariants under random use."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seedcast.config import TrackerConfig
from seedcast.errors import ConfigError
from seedcast.tracker._events import AnnounceEvent, AnnounceRequest, Rejected
from seedcast.tracker.swarms import Tracker

HASH_A = b"A" * 20
HASH_B = b"B" * 20


def peer_id(number: int) -> bytes:
    return f"-SC0001-{number:012d}".encode()


def request(
    number: int,
    *,
    info_hash: bytes = HASH_A,
    left: int | None = 100,
    event: AnnounceEvent = AnnounceEvent.NONE,
    numwant: int | None = None,
    ip: str | None = None,
    port: int | None = None,
    key: bytes = b"",
) -> AnnounceRequest:
    return AnnounceRequest(
        info_hash=info_hash,
        peer_id=peer_id(number),
        ip=ip or f"127.0.40.{number % 250 + 1}",
        port=port or 6881 + number // 250,
        left=left,
        event=event,
        numwant=numwant,
        key=key,
    )


def make_tracker(**settings: object) -> Tracker:
    return Tracker(dataclasses.replace(TrackerConfig(), **settings))  # type: ignore[arg-type]


@pytest.fixture
def rng() -> random.Random:
    return random.Random(7)


def test_first_peer_gets_nobody_then_peers_see_each_other(rng: random.Random) -> None:
    tracker = make_tracker()
    first = tracker.announce(request(1, event=AnnounceEvent.STARTED), 0.0, rng)
    assert first.peers == ()
    assert (first.complete, first.incomplete) == (0, 1)
    second = tracker.announce(request(2, event=AnnounceEvent.STARTED), 1.0, rng)
    assert [peer.peer_id for peer in second.peers] == [peer_id(1)]
    assert second.peers[0].packed == bytes([127, 0, 40, 2]) + (6881).to_bytes(2, "big")
    again = tracker.announce(request(1), 2.0, rng)
    assert [peer.peer_id for peer in again.peers] == [peer_id(2)]
    tracker.check_invariants()


def test_interval_is_jittered_within_bounds(rng: random.Random) -> None:
    tracker = make_tracker(interval=100.0, interval_jitter=0.1, min_interval=5.0)
    intervals = {tracker.announce(request(n), 0.0, rng).interval for n in range(200)}
    assert min(intervals) >= 90
    assert max(intervals) <= 110
    assert len(intervals) > 5
    assert tracker.announce(request(1), 0.0, rng).min_interval == 5


def test_numwant_default_and_cap(rng: random.Random) -> None:
    tracker = make_tracker()
    for number in range(300):
        tracker.announce(request(number), 0.0, rng)
    assert len(tracker.announce(request(0), 1.0, rng).peers) == 50
    assert len(tracker.announce(request(0, numwant=1000), 1.0, rng).peers) == 200
    assert len(tracker.announce(request(0, numwant=7), 1.0, rng).peers) == 7
    assert tracker.announce(request(0, numwant=0), 1.0, rng).peers == ()


def test_requester_never_gets_itself_even_when_asking_for_everyone(rng: random.Random) -> None:
    tracker = make_tracker()
    for number in range(5):
        tracker.announce(request(number), 0.0, rng)
    for _ in range(50):
        answer = tracker.announce(request(3, numwant=4), 1.0, rng)
        assert len(answer.peers) == 4
        assert peer_id(3) not in {peer.peer_id for peer in answer.peers}


def test_seeds_get_only_leechers(rng: random.Random) -> None:
    tracker = make_tracker()
    for number in range(10):
        tracker.announce(request(number, left=0 if number < 5 else 10), 0.0, rng)
    seed_answer = tracker.announce(request(0, left=0), 1.0, rng)
    assert {peer.peer_id for peer in seed_answer.peers} == {peer_id(n) for n in range(5, 10)}
    leech_answer = tracker.announce(request(9, left=10), 1.0, rng)
    assert len(leech_answer.peers) == 9
    assert (leech_answer.complete, leech_answer.incomplete) == (5, 5)


def test_random_subset_varies(rng: random.Random) -> None:
    tracker = make_tracker()
    for number in range(100):
        tracker.announce(request(number), 0.0, rng)
    subsets = {
        frozenset(p.peer_id for p in tracker.announce(request(0, numwant=5), 1.0, rng).peers)
        for _ in range(20)
    }
    assert len(subsets) > 10


def test_completed_moves_leecher_to_seeders_and_counts_once(rng: random.Random) -> None:
    tracker = make_tracker()
    tracker.announce(request(1, event=AnnounceEvent.STARTED, left=50), 0.0, rng)
    done = tracker.announce(request(1, event=AnnounceEvent.COMPLETED, left=0), 1.0, rng)
    assert (done.complete, done.incomplete) == (1, 0)
    tracker.announce(request(1, event=AnnounceEvent.COMPLETED, left=0), 2.0, rng)
    (entry,) = tracker.scrape([HASH_A], 2.0)
    assert (entry.complete, entry.downloaded, entry.incomplete) == (1, 1, 0)
    tracker.check_invariants()


def test_stopped_removes_peer_and_returns_no_peers(rng: random.Random) -> None:
    tracker = make_tracker()
    tracker.announce(request(1), 0.0, rng)
    tracker.announce(request(2), 0.0, rng)
    stopped = tracker.announce(request(2, event=AnnounceEvent.STOPPED), 1.0, rng)
    assert stopped.peers == ()
    assert stopped.incomplete == 1
    assert tracker.announce(request(1), 2.0, rng).peers == ()
    # Stopping an unknown peer or torrent is harmless.
    tracker.announce(request(9, info_hash=HASH_B, event=AnnounceEvent.STOPPED), 3.0, rng)
    assert tracker.statistics().announces == {"none": 3, "stopped": 2}
    tracker.check_invariants()


def test_peers_expire_after_interval_plus_grace(rng: random.Random) -> None:
    tracker = make_tracker(interval=30.0, interval_jitter=0.1, peer_grace=30.0)
    assert tracker.peer_ttl == 33 + 30
    tracker.announce(request(1), 0.0, rng)
    tracker.announce(request(2), 40.0, rng)
    assert tracker.expire(63.0) == 0
    assert tracker.expire(63.5) == 1
    answer = tracker.announce(request(3), 64.0, rng)
    assert [peer.peer_id for peer in answer.peers] == [peer_id(2)]
    assert tracker.statistics().expired == 1
    tracker.check_invariants()


def test_refreshing_keeps_a_peer_alive(rng: random.Random) -> None:
    tracker = make_tracker(interval=10.0, interval_jitter=0.0, peer_grace=5.0)
    for moment in range(0, 100, 10):
        tracker.announce(request(1), float(moment), rng)
    assert tracker.statistics().peers == 1
    assert tracker.expire(1000.0) == 1
    assert tracker.statistics().peers == 0


def test_restarted_client_on_same_endpoint_replaces_old_entry(rng: random.Random) -> None:
    tracker = make_tracker()
    tracker.announce(request(1), 0.0, rng)
    restarted = dataclasses.replace(request(1), peer_id=b"-LT2110-restarted!!!")
    tracker.announce(restarted, 1.0, rng)
    assert tracker.statistics().peers == 1
    answer = tracker.announce(request(2), 2.0, rng)
    assert [peer.peer_id for peer in answer.peers] == [b"-LT2110-restarted!!!"]
    tracker.check_invariants()


def test_peer_id_from_another_address_is_refused_without_its_key(rng: random.Random) -> None:
    tracker = make_tracker()
    tracker.announce(request(1, ip="127.0.40.1", key=b"secret"), 0.0, rng)
    hijack = request(1, ip="127.0.40.99", event=AnnounceEvent.STOPPED)
    with pytest.raises(Rejected) as caught:
        tracker.announce(hijack, 1.0, rng)
    assert caught.value.reason == "peer_id_conflict"
    assert tracker.statistics().peers == 1
    # The real owner, moving with its key, is welcome.
    tracker.announce(request(1, ip="127.0.40.99", key=b"secret"), 2.0, rng)
    answer = tracker.announce(request(2), 3.0, rng)
    assert [peer.ip for peer in answer.peers] == ["127.0.40.99"]
    assert tracker.statistics().errors == {"peer_id_conflict": 1}
    tracker.check_invariants()


def test_allowlist_mode(rng: random.Random) -> None:
    tracker = make_tracker(allowlist=(HASH_A.hex(),))
    tracker.announce(request(1), 0.0, rng)
    with pytest.raises(Rejected) as caught:
        tracker.announce(request(1, info_hash=HASH_B), 0.0, rng)
    assert caught.value.reason == "not_allowed"
    assert [entry.info_hash for entry in tracker.scrape([HASH_A, HASH_B], 0.0)] == [HASH_A]
    with pytest.raises(ConfigError):
        make_tracker(allowlist=("abc",))


def test_per_torrent_bound_answers_but_does_not_store(rng: random.Random) -> None:
    tracker = make_tracker(max_peers_per_torrent=3)
    for number in range(3):
        tracker.announce(request(number), 0.0, rng)
        tracker.announce(request(number), 0.0, rng)  # announced twice: verified
    extra = tracker.announce(request(10), 0.0, rng)
    assert len(extra.peers) == 3
    assert extra.warning
    assert tracker.statistics().peers == 3
    assert tracker.statistics().peers_not_stored == 1
    tracker.announce(request(11, info_hash=HASH_B), 0.0, rng)  # other torrents still fine
    assert tracker.statistics().peers == 4


def test_total_bound(rng: random.Random) -> None:
    tracker = make_tracker(max_peers=5)
    for number in range(10):
        tracker.announce(request(number, info_hash=bytes([number]) * 20), 0.0, rng)
    assert tracker.statistics().peers == 5
    tracker.check_invariants()


def test_torrent_bound_evicts_empty_swarms_first(rng: random.Random) -> None:
    tracker = make_tracker(max_torrents=2)
    for _ in range(2):  # verified peers: their swarms are never evicted
        tracker.announce(request(1, info_hash=HASH_A), 0.0, rng)
        tracker.announce(request(2, info_hash=HASH_B), 0.0, rng)
    with pytest.raises(Rejected) as caught:
        tracker.announce(request(3, info_hash=b"C" * 20), 0.0, rng)
    assert caught.value.reason == "tracker_full"
    tracker.announce(request(1, info_hash=HASH_A, event=AnnounceEvent.STOPPED), 1.0, rng)
    tracker.announce(request(3, info_hash=b"C" * 20), 1.0, rng)
    assert tracker.statistics().torrents == 2
    tracker.check_invariants()


def test_scrape_all_and_unknown(rng: random.Random) -> None:
    tracker = make_tracker()
    tracker.announce(request(1, left=0), 0.0, rng)
    tracker.announce(request(2), 0.0, rng)
    (entry,) = tracker.scrape([], 0.0)
    assert (entry.info_hash, entry.complete, entry.incomplete) == (HASH_A, 1, 1)
    (unknown,) = tracker.scrape([HASH_B], 0.0)
    assert (unknown.complete, unknown.downloaded, unknown.incomplete) == (0, 0, 0)
    assert tracker.statistics().scrapes == 2
    (swarm,) = tracker.swarm_statistics()
    assert (swarm.seeders, swarm.leechers) == (1, 1)


def test_left_unknown_keeps_previous_role(rng: random.Random) -> None:
    tracker = make_tracker()
    tracker.announce(request(1, left=0), 0.0, rng)
    tracker.announce(request(1, left=None), 1.0, rng)
    assert tracker.statistics().seeders == 1


# --- random announce sequences: invariants -------------------------------------------------

_actions = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=11),  # peer
        st.integers(min_value=0, max_value=2),  # torrent
        st.sampled_from(list(AnnounceEvent)),
        st.sampled_from([None, 0, 1, 500]),  # left
        st.sampled_from([None, 0, 1, 3, 300]),  # numwant
        st.floats(min_value=0, max_value=40),  # time step
        st.booleans(),  # move to another address
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(actions=_actions, seed=st.integers(min_value=0, max_value=2**32))
def test_random_announce_sequences_keep_invariants(
    actions: list[tuple[int, int, AnnounceEvent, int | None, int | None, float, bool]], seed: int
) -> None:
    rng = random.Random(seed)
    tracker = make_tracker(
        interval=30.0, peer_grace=10.0, max_peers_per_torrent=6, max_peers=14, max_torrents=2
    )
    now = 0.0
    # A model of who should be listed: (torrent, peer) -> (last seen, seed?)
    for number, torrent, event, left, numwant, step, moved in actions:
        now += step
        info_hash = bytes([torrent]) * 20
        announce = request(
            number,
            info_hash=info_hash,
            event=event,
            left=left,
            numwant=numwant,
            ip=f"127.0.40.{number + (100 if moved else 1)}",
            key=b"k%d" % number,
        )
        refused = ""
        try:
            answer = tracker.announce(announce, now, rng)
        except Rejected as rejection:
            refused = rejection.reason
        if refused:
            assert refused in {"tracker_full", "peer_id_conflict"}
            tracker.check_invariants()
            continue
        tracker.check_invariants()
        ids = [peer.peer_id for peer in answer.peers]
        assert announce.peer_id not in ids
        assert len(ids) == len(set(ids))
        limit = 50 if numwant is None else min(numwant, 200)
        assert len(ids) <= limit
        assert answer.complete + answer.incomplete <= 6
        if event is AnnounceEvent.STOPPED:
            assert ids == []
        swarm = tracker._swarms.get(info_hash)
        if left == 0 and swarm is not None:
            listed_seeds = {entry.address.peer_id for entry in swarm.seeders.items}
            assert not listed_seeds & set(ids)
        statistics = tracker.statistics()
        assert statistics.peers <= 14
        assert statistics.torrents <= 2
        # Nobody listed has been silent longer than the ttl.
        for swarm in tracker._swarms.values():
            for peer in swarm.peers.values():
                assert now - peer.last_seen <= tracker.peer_ttl


def test_a_flood_of_fresh_peer_ids_never_displaces_verified_peers(rng: random.Random) -> None:
    tracker = make_tracker(max_peers_per_torrent=10)
    for number in range(5):  # real peers: they re-announce
        tracker.announce(request(number), 0.0, rng)
        tracker.announce(request(number), 1.0, rng)
    for number in range(100, 2100):  # forged peers from many addresses, once each
        tracker.announce(request(number), 2.0, rng)
    tracker.check_invariants()
    late = tracker.announce(request(9999, ip="127.0.45.1"), 3.0, rng)  # a real newcomer
    assert not late.warning  # stored, in place of the oldest forged entry
    answer = tracker.announce(request(0, numwant=200), 4.0, rng)
    listed = {peer.peer_id for peer in answer.peers}
    assert {peer_id(number) for number in range(1, 5)} <= listed
    assert peer_id(9999) in listed
    statistics = tracker.statistics()
    assert statistics.peers == 10
    assert statistics.peers_displaced == 2000 - 5 + 1
    tracker.check_invariants()


def test_one_address_holds_at_most_its_share_of_a_swarm(rng: random.Random) -> None:
    tracker = make_tracker(max_peers_per_source=4)
    tracker.announce(request(1, ip="127.0.40.1", port=7000), 0.0, rng)
    tracker.announce(request(1, ip="127.0.40.1", port=7000), 1.0, rng)
    for number in range(100, 200):  # fresh ids and ports from one other address
        tracker.announce(request(number, ip="127.0.66.6", port=10000 + number), 2.0, rng)
    answer = tracker.announce(request(2, ip="127.0.40.2", numwant=200), 3.0, rng)
    by_ip = [peer.ip for peer in answer.peers]
    assert by_ip.count("127.0.66.6") == 4
    assert "127.0.40.1" in by_ip
    assert {peer.peer_id for peer in answer.peers if peer.ip == "127.0.66.6"} == {
        peer_id(number) for number in range(196, 200)
    }  # its newest four: the flood churns only itself
    tracker.check_invariants()


def test_a_flood_of_fresh_torrents_evicts_unproven_swarms_not_live_ones(
    rng: random.Random,
) -> None:
    tracker = make_tracker(max_torrents=10)
    tracker.announce(request(1, info_hash=HASH_A), 0.0, rng)
    tracker.announce(request(1, info_hash=HASH_A), 1.0, rng)
    for number in range(1000):
        tracker.announce(request(number, info_hash=number.to_bytes(20, "big")), 2.0, rng)
    assert tracker.statistics().torrents == 10
    (entry,) = tracker.scrape([HASH_A], 3.0)
    assert entry.incomplete == 1
    tracker.check_invariants()
