"""Sans-IO ban list: who sent bad data, judged by evidence, never by a claimed id.

How it works. The shell tells :class:`BanList` which address each accepted
block came from (:meth:`BanList.block_received`), and how each piece ended:

* A piece that fails SHA-1 (:meth:`BanList.piece_failed`) keeps a digest of
  every block and the address that sent it. If a single address sent the
  whole piece, that address earns a strike; ``threshold`` strikes ban it.
* When that piece later passes (:meth:`BanList.piece_passed`, from another
  source or the CDN), every address whose block differs from the good one
  is proven to have lied and is banned at once.

Evidence is the address the bytes came from on our own socket, which a
peer cannot choose for someone else. Peer ids are claims (the tracker hands
them to anyone with ``compact=0``), so they are never a ban key: a liar
using a seeder's id gets itself banned, not the seeder. A ban covers the
IP address, so reconnecting from another port does not lift it.

Memory is bounded: at most ``max_hosts`` banned addresses and strike
counts (the oldest go first) and ``max_suspects`` block digests per piece.
"""

from __future__ import annotations

from collections import OrderedDict
from hashlib import sha1

from seedcast.peer.messages import BLOCK_SIZE

__all__ = ["BanList", "Endpoint"]

Endpoint = tuple[str, int]
"""(IP address, port) a connection's bytes came from."""


def _block_digest(data: bytes | bytearray | memoryview, block_number: int) -> bytes:
    start = block_number * BLOCK_SIZE
    return sha1(data[start : start + BLOCK_SIZE]).digest()


class BanList:
    """Bans earned by bad data. See the module docstring."""

    def __init__(
        self, *, threshold: int = 3, max_hosts: int = 4096, max_suspects: int = 1024
    ) -> None:
        self.threshold = max(1, threshold)
        self.max_hosts = max_hosts
        self.max_suspects = max_suspects
        self._banned: OrderedDict[str, str] = OrderedDict()
        """Banned IP -> why."""
        self._strikes: OrderedDict[str, int] = OrderedDict()
        self._sources: dict[int, dict[int, Endpoint]] = {}
        """Piece in progress -> block number -> who sent it."""
        self._suspects: dict[int, list[tuple[Endpoint, int, bytes]]] = {}
        """Failed piece -> (who, block number, digest of what they sent)."""
        self.bans = 0

    def is_banned(self, host: str) -> bool:
        return host in self._banned

    def reason(self, host: str) -> str | None:
        return self._banned.get(host)

    @property
    def banned_hosts(self) -> frozenset[str]:
        return frozenset(self._banned)

    def strikes(self, host: str) -> int:
        return self._strikes.get(host, 0)

    def block_received(self, index: int, begin: int, source: Endpoint) -> None:
        """An accepted block of piece ``index`` came from ``source``."""
        self._sources.setdefault(index, {})[begin // BLOCK_SIZE] = source

    def forget_piece(self, index: int) -> None:
        """Piece ``index`` is done with (passed, or we stop fetching it): drop its sources."""
        self._sources.pop(index, None)

    def piece_failed(self, index: int, data: bytes | bytearray | None) -> list[str]:
        """Piece ``index`` (``data``, if we still have it) failed SHA-1. Returns hosts banned now."""
        sources = self._sources.pop(index, {})
        if data is not None:
            suspects = self._suspects.setdefault(index, [])
            for block_number, source in sources.items():
                if len(suspects) >= self.max_suspects:
                    break
                suspects.append((source, block_number, _block_digest(data, block_number)))
        senders = {source[0] for source in sources.values()}
        if len(senders) != 1:
            return []
        # A piece from a single address that fails is that address's fault.
        (host,) = senders
        strikes = self._strikes.pop(host, 0) + 1
        self._strikes[host] = strikes
        self._trim(self._strikes)
        if strikes >= self.threshold:
            return self._ban(host, "hash failures")
        return []

    def piece_passed(self, index: int, good: bytes | bytearray) -> list[str]:
        """Piece ``index`` verified as ``good``: anyone who sent a different block lied."""
        self._sources.pop(index, None)
        banned: list[str] = []
        for source, block_number, digest in self._suspects.pop(index, ()):
            if _block_digest(good, block_number) != digest:
                banned += self._ban(source[0], "sent corrupt data")
        return banned

    def _ban(self, host: str, why: str) -> list[str]:
        if host in self._banned:
            return []
        self._banned[host] = why
        self._trim(self._banned)
        self.bans += 1
        return [host]

    def _trim(self, table: OrderedDict[str, str] | OrderedDict[str, int]) -> None:
        while len(table) > self.max_hosts:
            table.popitem(last=False)
