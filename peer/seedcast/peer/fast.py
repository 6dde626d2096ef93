"""BEP 6's allowed-fast set: the pieces a peer may fetch from us while we choke it.

The set is BEP 6's canonical function of the peer's IPv4 address (its /24,
so one host can't collect many sets by using many addresses of one subnet)
and the info hash, so both sides and any third party compute the same set.
"""

from __future__ import annotations

import ipaddress
from hashlib import sha1

__all__ = ["ALLOWED_FAST_PIECES", "allowed_fast_set"]

ALLOWED_FAST_PIECES = 10
"""Size of the set we grant (BEP 6's suggested k)."""


def allowed_fast_set(
    address: str, info_hash: bytes, num_pieces: int, count: int = ALLOWED_FAST_PIECES
) -> list[int]:
    """The first ``count`` allowed-fast pieces for a peer at ``address`` (IPv4; [] for IPv6)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return []
    if ip.version != 4 or num_pieces <= 0:
        return []
    count = min(count, num_pieces)
    digest = (int(ip) & 0xFFFFFF00).to_bytes(4, "big") + info_hash
    pieces: list[int] = []
    while len(pieces) < count:
        digest = sha1(digest).digest()
        for offset in range(0, 20, 4):
            if len(pieces) >= count:
                break
            index = int.from_bytes(digest[offset : offset + 4], "big") % num_pieces
            if index not in pieces:
                pieces.append(index)
    return pieces
