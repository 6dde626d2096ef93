"""A byte-bounded storage index: reservations before fills, eviction, accounting.

How it works: one :class:`StorageIndex` per tier (memory, disk) keeps the size
of every stored object and two sums, ``used`` (committed objects) and
``reserved`` (fills in progress). The invariant ``used + reserved <=
capacity`` holds after every call, so concurrent fills can never overshoot the
budget:

* :meth:`StorageIndex.reserve` is called *before* a fill writes anything. It
  refuses at once, evicting nothing, when even an empty cache couldn't make
  room next to the other reservations; otherwise it evicts victims chosen by
  the :mod:`eviction policy <seedcast.edge.eviction>` until the bytes fit.
* :meth:`StorageIndex.grow` extends a reservation when a body turns out
  longer than announced (or has no ``Content-Length``).
* :meth:`StorageIndex.commit` turns a reservation into a stored object (the
  unused part is returned to the pool); :meth:`StorageIndex.release` drops a
  failed fill's reservation.

Every call that may evict returns the evicted keys: the shell deletes their
bodies. Nothing here knows about bodies, files, trio or the clock.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from seedcast.edge.eviction import EvictionPolicy, make_policy
from seedcast.errors import LocalProtocolError


@dataclass(slots=True, eq=False)
class Reservation:
    """Bytes promised to one fill. Hold on to it; commit or release it exactly once."""

    id: int
    size: int
    active: bool = True


@dataclass(frozen=True, slots=True)
class Admission:
    reservation: Reservation | None
    evicted: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StorageStatistics:
    capacity: int
    used: int
    reserved: int
    objects: int
    evictions: int
    evicted_bytes: int
    refused: int
    policy: str


@dataclass(slots=True)
class StorageIndex:
    capacity: int
    policy_name: str = "lru"
    max_object_fraction: float = 0.5
    """Objects larger than this fraction of the capacity are never admitted."""
    used: int = 0
    reserved: int = 0
    evictions: int = 0
    evicted_bytes: int = 0
    refused: int = 0
    _sizes: dict[str, int] = field(default_factory=dict)
    _policy: EvictionPolicy = field(init=False)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        if self.capacity < 0:
            raise ValueError("capacity must not be negative")
        self._policy = make_policy(self.policy_name, self.capacity)

    @property
    def max_object(self) -> int:
        return int(self.capacity * self.max_object_fraction)

    def __contains__(self, key: object) -> bool:
        return key in self._sizes

    def __len__(self) -> int:
        return len(self._sizes)

    def size_of(self, key: str) -> int | None:
        return self._sizes.get(key)

    def keys(self) -> list[str]:
        return list(self._sizes)

    @property
    def free(self) -> int:
        return self.capacity - self.used - self.reserved

    def _make_room(self, size: int) -> tuple[str, ...] | None:
        """Evict until ``size`` more bytes fit; None (nothing evicted) when impossible."""
        if size > self.capacity - self.reserved:
            return None
        evicted: list[str] = []
        while self.free < size:
            victim = self._policy.evict()
            if victim is None:  # pragma: no cover - every committed key is in the policy
                raise LocalProtocolError("storage index lost track of its objects")
            victim_size = self._sizes.pop(victim)
            self.used -= victim_size
            self.evictions += 1
            self.evicted_bytes += victim_size
            evicted.append(victim)
        return tuple(evicted)

    def reserve(self, size: int) -> Admission:
        """Reserve ``size`` bytes for a fill, evicting as needed; no reservation if too big."""
        if size < 0:
            raise ValueError("size must not be negative")
        if size > self.max_object:
            self.refused += 1
            return Admission(None)
        evicted = self._make_room(size)
        if evicted is None:
            self.refused += 1
            return Admission(None)
        self.reserved += size
        return Admission(Reservation(next(self._ids), size), evicted)

    def grow(self, reservation: Reservation, extra: int) -> Admission:
        """Extend ``reservation`` by ``extra`` bytes; on refusal it is released."""
        self._check(reservation)
        if extra < 0:
            raise ValueError("extra must not be negative")
        if reservation.size + extra > self.max_object:
            self.release(reservation)
            self.refused += 1
            return Admission(None)
        evicted = self._make_room(extra)
        if evicted is None:
            self.release(reservation)
            self.refused += 1
            return Admission(None)
        self.reserved += extra
        reservation.size += extra
        return Admission(reservation, evicted)

    def commit(self, reservation: Reservation, key: str, size: int) -> bool:
        """Store ``key`` with ``size`` bytes in place of ``reservation``.

        A previous object under the same key is replaced. Returns True when it
        replaced one (the caller drops the old body).
        """
        self._check(reservation)
        if size > reservation.size:
            raise LocalProtocolError(
                f"commit of {size} bytes exceeds its reservation of {reservation.size}"
            )
        reservation.active = False
        self.reserved -= reservation.size
        replaced = self._drop(key)
        self._sizes[key] = size
        self.used += size
        self._policy.insert(key, size)
        return replaced

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation whose fill failed or was abandoned (idempotent)."""
        if not reservation.active:
            return
        reservation.active = False
        self.reserved -= reservation.size

    def restore(self, key: str, size: int) -> tuple[str, ...] | None:
        """Add an object found at start-up (disk tier); None if it doesn't fit."""
        admission = self.reserve(size)
        if admission.reservation is None:
            return None
        self.commit(admission.reservation, key, size)
        return admission.evicted

    def touch(self, key: str) -> bool:
        """Record a hit; False when the key isn't stored."""
        if key not in self._sizes:
            return False
        self._policy.access(key)
        return True

    def discard(self, key: str) -> bool:
        """Remove ``key`` (purge, invalidation); False when it wasn't stored."""
        return self._drop(key)

    def _drop(self, key: str) -> bool:
        size = self._sizes.pop(key, None)
        if size is None:
            return False
        self.used -= size
        self._policy.remove(key)
        return True

    def _check(self, reservation: Reservation) -> None:
        if not reservation.active:
            raise LocalProtocolError("reservation already committed or released")

    def statistics(self) -> StorageStatistics:
        return StorageStatistics(
            capacity=self.capacity,
            used=self.used,
            reserved=self.reserved,
            objects=len(self._sizes),
            evictions=self.evictions,
            evicted_bytes=self.evicted_bytes,
            refused=self.refused,
            policy=self._policy.name,
        )
