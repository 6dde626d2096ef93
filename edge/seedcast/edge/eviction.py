"""Eviction policies for a byte-bounded cache: plain LRU and S3-FIFO.

How it works: a policy only orders keys; :class:`seedcast.edge.storage.StorageIndex`
owns sizes and the byte budget and asks :meth:`EvictionPolicy.evict` for one
victim at a time until a reservation fits. Every key a policy holds is
evictable (objects still being filled are reservations, not keys).

* :class:`LruPolicy`: an ordered dict; a hit moves the key to the young end.
* :class:`S3FifoPolicy` (Yang et al., SOSP 2023, "FIFO queues are all you
  need"), sized in bytes: new objects enter a small FIFO (10% of the bytes);
  when they leave it they move to the main FIFO if they were hit while in it,
  else they are dropped and remembered in a ghost FIFO (keys only). An
  object whose key is a ghost goes straight to main. Main is a FIFO with
  up to three "lazy promotion" bits: a hit bumps a counter, eviction gives
  objects with a non-zero counter another round (counter minus one). The
  effect: one-hit wonders (a viewer who stops watching, a scan) are dropped
  quickly without displacing the popular set, and hits cost O(1) with no
  list moves.

Which one the edge uses is chosen by measurement (``seedcast bench edge``
compares their hit ratios on a Zipf trace).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict

POLICIES = ("lru", "s3-fifo")


class EvictionPolicy(ABC):
    name: str

    @abstractmethod
    def insert(self, key: str, size: int) -> None:
        """Start tracking a new key (never one it already holds)."""

    @abstractmethod
    def access(self, key: str) -> None:
        """The key was hit."""

    @abstractmethod
    def remove(self, key: str) -> None:
        """Forget a key (purge, replacement); no-op when unknown."""

    @abstractmethod
    def evict(self) -> str | None:
        """Choose a victim, forget it, and return it; None when empty."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __contains__(self, key: object) -> bool: ...


class LruPolicy(EvictionPolicy):
    name = "lru"

    def __init__(self, capacity: int = 0) -> None:
        self._order: OrderedDict[str, None] = OrderedDict()

    def insert(self, key: str, size: int) -> None:
        self._order[key] = None

    def access(self, key: str) -> None:
        if key in self._order:
            self._order.move_to_end(key)

    def remove(self, key: str) -> None:
        self._order.pop(key, None)

    def evict(self) -> str | None:
        if not self._order:
            return None
        key, _ = self._order.popitem(last=False)
        return key

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, key: object) -> bool:
        return key in self._order


class S3FifoPolicy(EvictionPolicy):
    name = "s3-fifo"
    MAX_FREQUENCY = 3

    def __init__(self, capacity: int, small_ratio: float = 0.1) -> None:
        self._small_target = max(1, int(capacity * small_ratio))
        self._small: OrderedDict[str, int] = OrderedDict()  # key -> size, oldest first
        self._main: OrderedDict[str, int] = OrderedDict()
        self._ghost: OrderedDict[str, None] = OrderedDict()
        self._frequency: dict[str, int] = {}
        self._small_bytes = 0

    def insert(self, key: str, size: int) -> None:
        self._frequency[key] = 0
        if key in self._ghost:
            del self._ghost[key]
            self._main[key] = size
        else:
            self._small[key] = size
            self._small_bytes += size

    def access(self, key: str) -> None:
        frequency = self._frequency.get(key)
        if frequency is not None and frequency < self.MAX_FREQUENCY:
            self._frequency[key] = frequency + 1

    def remove(self, key: str) -> None:
        if self._frequency.pop(key, None) is None:
            return
        size = self._small.pop(key, None)
        if size is not None:
            self._small_bytes -= size
        else:
            self._main.pop(key, None)

    def evict(self) -> str | None:
        while self._small or self._main:
            if self._small and (self._small_bytes >= self._small_target or not self._main):
                key, size = self._small.popitem(last=False)
                self._small_bytes -= size
                if self._frequency[key] > 0:
                    self._frequency[key] = 0
                    self._main[key] = size
                    continue
                del self._frequency[key]
                self._remember_ghost(key)
                return key
            key, size = self._main.popitem(last=False)
            frequency = self._frequency[key]
            if frequency > 0:
                self._frequency[key] = frequency - 1
                self._main[key] = size
                continue
            del self._frequency[key]
            return key
        return None

    def _remember_ghost(self, key: str) -> None:
        self._ghost[key] = None
        limit = max(16, len(self._main) + len(self._small))
        while len(self._ghost) > limit:
            self._ghost.popitem(last=False)

    def __len__(self) -> int:
        return len(self._frequency)

    def __contains__(self, key: object) -> bool:
        return key in self._frequency


def make_policy(name: str, capacity: int) -> EvictionPolicy:
    """The policy called ``name`` (one of :data:`POLICIES`); ValueError otherwise."""
    if name == "lru":
        return LruPolicy(capacity)
    if name in ("s3-fifo", "s3fifo"):
        return S3FifoPolicy(capacity)
    raise ValueError(f"unknown eviction policy {name!r} (known: {', '.join(POLICIES)})")
