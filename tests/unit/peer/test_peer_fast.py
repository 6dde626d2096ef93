"""BEP 6's allowed-fast set, against the BEP's own example."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from seedcast.peer.fast import allowed_fast_set


def test_bep6_example_vectors() -> None:
    info_hash = b"\xaa" * 20
    assert allowed_fast_set("80.4.4.200", info_hash, 1313, 7) == [
        1059,
        431,
        808,
        1217,
        287,
        376,
        1188,
    ]
    assert allowed_fast_set("80.4.4.200", info_hash, 1313, 9) == [
        1059, 431, 808, 1217, 287, 376, 1188, 353, 508,
    ]  # fmt: skip


def test_the_set_is_per_slash_24() -> None:
    info_hash = bytes(range(20))
    assert allowed_fast_set("10.1.2.3", info_hash, 500) == allowed_fast_set(
        "10.1.2.250", info_hash, 500
    )
    assert allowed_fast_set("10.1.3.3", info_hash, 500) != allowed_fast_set(
        "10.1.2.3", info_hash, 500
    )


def test_no_set_for_ipv6_or_nonsense() -> None:
    assert allowed_fast_set("::1", bytes(20), 100) == []
    assert allowed_fast_set("not an address", bytes(20), 100) == []


@given(st.integers(1, 40), st.integers(0, 2**32 - 1), st.integers(0, 20))
def test_distinct_in_range_and_never_more_than_the_torrent(
    pieces: int, ip: int, count: int
) -> None:
    address = ".".join(str(ip >> shift & 255) for shift in (24, 16, 8, 0))
    chosen = allowed_fast_set(address, bytes(20), pieces, count)
    assert len(chosen) == min(count, pieces)
    assert len(set(chosen)) == len(chosen)
    assert all(0 <= index < pieces for index in chosen)
