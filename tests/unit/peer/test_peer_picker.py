"""PiecePicker: random first, rarest first, partial pieces first, strict end game, deadlines."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from seedcast.peer.messages import BLOCK_SIZE, BlockRef
from seedcast.peer.picker import PiecePicker

PIECE = 4 * BLOCK_SIZE


def make(pieces: int = 10, *, seed: int = 1, **options: object) -> PiecePicker:
    sizes = [PIECE] * pieces
    return PiecePicker(sizes, rng=random.Random(seed), **options)  # type: ignore[arg-type]


def test_random_first_then_rarest_first() -> None:
    picker = make(10, random_first_pieces=0)
    for peer in "abc":
        picker.add_peer(peer)
        picker.peer_has_all(peer)
    picker.add_peer("d")
    picker.peer_has("d", 7)
    # piece 7 has availability 4; the others 3. Piece 2 is only at a, b -> rarest.
    picker.remove_peer("c")
    picker.add_peer("c")
    picker.peer_has_pieces("c", [index for index in range(10) if index != 2])
    blocks = picker.pick_blocks("a", 4, now=0.0)
    assert {block.index for block in blocks} == {2}


def test_random_first_pieces_are_random() -> None:
    chosen = Counter()
    for seed in range(40):
        picker = make(10, seed=seed, random_first_pieces=4)
        picker.add_peer("seed")
        picker.peer_has_all("seed")
        picker.add_peer("other")
        picker.peer_has("other", 0)  # piece 0 is the most common; rarest first would avoid it
        chosen[picker.pick_blocks("seed", 1, now=0.0)[0].index] += 1
    assert len(chosen) > 3


def test_rarest_ties_broken_differently_per_picker() -> None:
    firsts = set()
    for seed in range(20):
        picker = make(50, seed=seed, random_first_pieces=0)
        picker.add_peer("a")
        picker.peer_has_all("a")
        firsts.add(picker.pick_blocks("a", 1, now=0.0)[0].index)
    assert len(firsts) > 5


def test_partial_pieces_are_finished_first() -> None:
    picker = make(10, random_first_pieces=0)
    for peer in "ab":
        picker.add_peer(peer)
        picker.peer_has_all(peer)
    first = picker.pick_blocks("a", 2, now=0.0)
    second = picker.pick_blocks("b", 2, now=0.0)
    assert {block.index for block in first} == {block.index for block in second}
    assert set(first).isdisjoint(second)


def test_block_sizes_and_last_piece() -> None:
    picker = PiecePicker([PIECE, BLOCK_SIZE + 5], rng=random.Random(0), random_first_pieces=0)
    picker.add_peer("a")
    picker.peer_has("a", 1)
    assert picker.pick_blocks("a", 10, now=0.0) == [
        BlockRef(1, 0, BLOCK_SIZE),
        BlockRef(1, BLOCK_SIZE, 5),
    ]


def test_piece_lifecycle_and_interest() -> None:
    picker = make(2, random_first_pieces=0)
    picker.add_peer("a")
    picker.peer_has("a", 0)
    assert picker.is_interesting("a")
    blocks = picker.pick_blocks("a", 10, now=0.0)
    assert len(blocks) == 4
    outcomes = [picker.block_received("a", block) for block in blocks]
    assert all(outcome.accepted for outcome in outcomes)
    assert [outcome.piece_complete for outcome in outcomes] == [False, False, False, True]
    assert picker.piece_passed(0) == []
    assert picker.has(0)
    assert not picker.is_interesting("a")
    assert picker.pick_blocks("a", 10, now=0.0) == []


def test_hash_failure_resets_the_piece_and_names_contributors() -> None:
    picker = make(1, random_first_pieces=0)
    for peer in "ab":
        picker.add_peer(peer)
        picker.peer_has_all(peer)
    blocks = picker.pick_blocks("a", 2, now=0.0) + picker.pick_blocks("b", 2, now=0.0)
    for block in blocks[:2]:
        picker.block_received("a", block)
    for block in blocks[2:]:
        assert picker.block_received("b", block).accepted
    assert picker.piece_failed(0) == {"a", "b"}
    assert len(picker.pick_blocks("a", 10, now=1.0)) == 4


def test_strict_end_game() -> None:
    picker = make(1, random_first_pieces=0)
    for peer in "ab":
        picker.add_peer(peer)
        picker.peer_has_all(peer)
    first = picker.pick_blocks("a", 3, now=0.0)
    assert not picker.in_end_game  # one block is still free
    rest = picker.pick_blocks("b", 3, now=0.0)
    assert len(rest) == 3  # the free block, then end game duplicates of a's blocks
    assert picker.in_end_game
    assert rest[0] not in first
    assert set(rest[1:]) <= set(first)
    outcome = picker.block_received("b", rest[1])
    assert outcome.accepted
    assert outcome.cancel == (("a", rest[1]),)
    assert not picker.block_received("a", rest[1]).accepted


def test_peer_leaving_returns_its_requests() -> None:
    picker = make(1, random_first_pieces=0)
    for peer in "ab":
        picker.add_peer(peer)
        picker.peer_has_all(peer)
    blocks = picker.pick_blocks("a", 4, now=0.0)
    picker.remove_peer("a")
    assert picker.pick_blocks("b", 4, now=0.0) == blocks
    assert picker.availability(0) == 1


def test_rejected_request_goes_back() -> None:
    picker = make(1, random_first_pieces=0)
    picker.add_peer("a")
    picker.peer_has_all("a")
    (block,) = picker.pick_blocks("a", 1, now=0.0)
    picker.cancel_request("a", block)
    assert picker.pick_blocks("a", 1, now=0.0) == [block]


def test_deadlines_go_first_and_critical_ones_are_duplicated() -> None:
    picker = make(10, random_first_pieces=0, critical_seconds=1.0)
    for peer in "ab":
        picker.add_peer(peer)
        picker.peer_has_all(peer)
    picker.set_deadline(8, 10.0)
    picker.set_deadline(5, 20.0)
    blocks = picker.pick_blocks("a", 8, now=0.0)
    assert [block.index for block in blocks] == [8] * 4 + [5] * 4
    # not critical yet: b gets other pieces
    assert {block.index for block in picker.pick_blocks("b", 2, now=0.0)} & {8, 5} == set()
    # near the deadline, b also asks for piece 8's blocks
    assert [block.index for block in picker.pick_blocks("b", 4, now=9.5)] == [8] * 4
    assert picker.overdue(now=9.5, margin=1.0) == [(8, 10.0)]


def test_restricted_to_window() -> None:
    picker = make(10, random_first_pieces=0)
    picker.add_peer("a")
    picker.peer_has_all("a")
    picker.add_peer("b")
    picker.peer_has_pieces("b", [3])
    picker.restrict_to_priority = True
    picker.set_window([2, 3])
    blocks = picker.pick_blocks("a", 20, now=0.0)
    # rarest first inside the window: 2 (only a) before 3 (a and b)
    assert [block.index for block in blocks] == [2] * 4 + [3] * 4


def test_stalled_requests() -> None:
    picker = make(1, random_first_pieces=0)
    picker.add_peer("a")
    picker.peer_has_all("a")
    blocks = picker.pick_blocks("a", 2, now=0.0)
    assert picker.stalled(now=5.0, timeout=10.0) == []
    assert sorted(picker.stalled(now=11.0, timeout=10.0), key=lambda item: item[1].begin) == [
        ("a", block) for block in blocks
    ]


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=0, max_value=2**32),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), max_size=200),
)
def test_random_swarm_always_completes(
    pieces: int, seed: int, actions: list[tuple[int, int]]
) -> None:
    """Whatever order peers come, go, reject and deliver, the download completes."""
    rng = random.Random(seed)
    picker = PiecePicker([PIECE] * (pieces - 1) + [PIECE - 7], rng=rng, end_game_duplicates=3)
    outstanding: dict[str, list[BlockRef]] = {}
    for peer_number, action in actions:
        peer = f"p{peer_number}"
        if peer not in outstanding:
            picker.add_peer(peer)
            picker.peer_has_pieces(peer, [i for i in range(pieces) if rng.random() < 0.7])
            outstanding[peer] = []
        if action == 0:
            picker.remove_peer(peer)
            del outstanding[peer]
        elif action == 1 and outstanding[peer]:
            picker.cancel_request(peer, outstanding[peer].pop(0))
        elif action in (2, 3) and outstanding[peer]:
            block = outstanding[peer].pop(0)
            outcome = picker.block_received(peer, block)
            if outcome.piece_complete:
                picker.piece_passed(block.index)
        else:
            outstanding[peer].extend(picker.pick_blocks(peer, 3, now=0.0))
    # then one seed finishes the job
    picker.add_peer("seed")
    picker.peer_has_all("seed")
    for _ in range(pieces * 8):
        for block in picker.pick_blocks("seed", 4, now=1.0):
            outcome = picker.block_received("seed", block)
            if outcome.piece_complete:
                picker.piece_passed(block.index)
        if picker.complete:
            break
        # other peers' stale requests can block strict end game only up to the duplicate cap
        for peer, blocks in outstanding.items():
            for block in blocks:
                picker.cancel_request(peer, block)
            blocks.clear()
    assert picker.complete


def test_rarest_first_among_many_candidates() -> None:
    picker = make(300, random_first_pieces=0)
    for peer in ("a", "b", "c"):
        picker.add_peer(peer)
        picker.peer_has_all(peer)
    picker.remove_peer("c")
    picker.add_peer("c")
    picker.peer_has_pieces("c", [index for index in range(300) if index != 123])
    # 299 candidates, one of them (123) held by two peers only
    assert picker.pick_blocks("a", 1, now=0.0)[0].index == 123


def test_a_peer_with_nothing_new_is_asked_again_after_a_have() -> None:
    picker = make(4, random_first_pieces=0)
    picker.add_peer("a")
    picker.add_peer("b")
    picker.peer_has("a", 0)
    picker.peer_has("b", 0)
    assert len(picker.pick_blocks("a", 4, now=0.0)) == 4
    assert picker.pick_blocks("b", 4, now=0.0) == []  # all of piece 0 is on its way
    picker.peer_has("b", 1)
    assert {block.index for block in picker.pick_blocks("b", 4, now=0.0)} == {1}


def test_failed_piece_is_fetched_again_from_one_peer() -> None:
    picker = make(1, random_first_pieces=0)
    for peer in "ab":
        picker.add_peer(peer)
        picker.peer_has_all(peer)
    blocks = picker.pick_blocks("a", 2, now=0.0) + picker.pick_blocks("b", 2, now=0.0)
    for peer, block in zip("aabb", blocks, strict=True):
        picker.block_received(peer, block)
    assert picker.piece_failed(0) == {"a", "b"}
    first = picker.pick_blocks("b", 1, now=1.0)
    assert picker.pick_blocks("a", 4, now=1.0) == []  # on parole: b owns the retry
    assert len(picker.pick_blocks("b", 4, now=1.0)) == 3
    # if the owner leaves, the piece is open to everyone again
    picker.remove_peer("b")
    assert len(picker.pick_blocks("a", 4, now=2.0)) == 4
    assert first


def test_only_limits_picks_to_allowed_fast_pieces() -> None:
    picker = make(10)
    picker.add_peer("seed")
    picker.peer_has_all("seed")
    blocks = picker.pick_blocks("seed", 100, now=0.0, only={3, 8, 42})
    assert {block.index for block in blocks} == {3, 8}
    assert len(blocks) == 8
    assert picker.pick_blocks("seed", 100, now=0.0, only={3, 8}) == []  # all requested


def test_suggested_pieces_start_before_other_new_pieces() -> None:
    picker = make(10, random_first_pieces=0)
    picker.add_peer("seed")
    picker.peer_has_all("seed")
    picker.add_peer("other")
    picker.peer_has_pieces("other", [index for index in range(10) if index != 6])
    # rarest first would take 6 (only the seed has it); the suggestion wins
    blocks = picker.pick_blocks("seed", 4, now=0.0, suggested=[9, 9])
    assert {block.index for block in blocks} == {9}
