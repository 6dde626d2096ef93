"""The ban list: evidence from addresses, never a claimed id."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st
from seedcast.peer.bans import BanList
from seedcast.peer.messages import BLOCK_SIZE

PIECE = 4 * BLOCK_SIZE


def test_a_single_source_of_failed_pieces_is_banned_after_the_threshold() -> None:
    bans = BanList(threshold=3)
    liar = ("10.0.0.66", 6881)
    for attempt in range(3):
        for block in range(4):
            bans.block_received(attempt, block * BLOCK_SIZE, liar)
        banned = bans.piece_failed(attempt, os.urandom(PIECE))
        assert banned == ([] if attempt < 2 else ["10.0.0.66"])
    assert bans.is_banned("10.0.0.66")
    assert bans.reason("10.0.0.66") == "hash failures"
    assert bans.bans == 1


def test_mixed_failure_blames_nobody_until_the_good_copy_proves_who_lied() -> None:
    bans = BanList(threshold=1)
    good = os.urandom(PIECE)
    bad = bytearray(good)
    bad[BLOCK_SIZE + 5] ^= 0xFF  # block 1 came from the liar
    honest, liar = ("10.0.0.1", 6881), ("10.0.0.66", 50123)
    for block in range(4):
        bans.block_received(7, block * BLOCK_SIZE, liar if block == 1 else honest)
    assert bans.piece_failed(7, bad) == []  # two senders: no strike yet
    assert bans.piece_passed(7, good) == ["10.0.0.66"]
    assert bans.reason("10.0.0.66") == "sent corrupt data"
    assert not bans.is_banned("10.0.0.1")


def test_the_same_claimed_identity_on_another_address_is_not_banned() -> None:
    # The ban list never sees peer ids: the honest seed at another address stays usable.
    bans = BanList(threshold=1)
    bans.block_received(0, 0, ("10.0.0.66", 6881))
    bans.piece_failed(0, os.urandom(BLOCK_SIZE))
    assert bans.is_banned("10.0.0.66")
    assert not bans.is_banned("10.0.0.1")


def test_a_passed_piece_forgets_its_sources() -> None:
    bans = BanList(threshold=1)
    data = os.urandom(PIECE)
    bans.block_received(0, 0, ("10.0.0.2", 1))
    assert bans.piece_passed(0, data) == []
    assert bans.piece_failed(0, data) == []  # nothing left to blame
    assert not bans.banned_hosts


@given(st.lists(st.integers(0, 255), max_size=200))
def test_memory_is_bounded(hosts: list[int]) -> None:
    bans = BanList(threshold=1, max_hosts=16, max_suspects=4)
    for number, host in enumerate(hosts):
        for block in range(8):
            bans.block_received(number, block * BLOCK_SIZE, (f"10.0.{host}.1", 1))
        bans.piece_failed(number, bytes(8 * BLOCK_SIZE))
        assert len(bans.banned_hosts) <= 16
    assert all(len(suspects) <= 4 for suspects in bans._suspects.values())
