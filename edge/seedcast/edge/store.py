"""The edge's object store: a memory tier and an optional disk tier behind one lookup.

How it works: every stored response is a :class:`CachedObject` (status,
end-to-end headers, request/response times, its Vary key and a precomputed
:class:`~seedcast.edge.caching.ResponsePolicy`). Its body lives in memory
(``memory``), on disk (``disk_path``), or both. Each tier has its own
:class:`~seedcast.edge.storage.StorageIndex` (byte budget + eviction policy);
an object leaves the catalogue when neither tier holds it any more.

A fill reserves space in both tiers *before* the first byte arrives
(:meth:`CacheStore.begin_fill`, using Content-Length when known), grows the
reservations as bytes come in, and either commits (the object appears in the
catalogue, replacing an older copy under the same key) or aborts (the
reservations and the partial file are dropped). A tier that refuses the
object (too large, or the other fills hold the space) simply doesn't get it.

Lookups find the variant whose Vary key matches the request (RFC 9111 4.1);
a disk hit for an object small enough is copied into memory. At start-up the
disk tier's index is rebuilt from the files (:meth:`CacheStore.load_disk`).
No trio here: callers hold the only reference and call in from one thread.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from seedcast.edge.caching import (
    HeaderPairs,
    ResponsePolicy,
    describe_response,
    vary_key,
)
from seedcast.edge.disk import DiskMeta, DiskTier, DiskWriter
from seedcast.edge.statistics import TierStatistics
from seedcast.edge.storage import Reservation, StorageIndex
from seedcast.units import KiB, MiB

log = logging.getLogger("seedcast.edge")

#: Bytes counted per object besides its body (headers, bookkeeping).
OBJECT_OVERHEAD = 512
#: Reservation granularity for bodies of unknown length.
GROW_STEP = 256 * KiB
#: Largest disk object copied into memory on a hit (the read blocks the event loop briefly).
PROMOTE_MAX = 8 * MiB


def object_key(primary: str, vary: tuple[str, ...]) -> str:
    return primary if not vary else primary + "\x00" + "\x00".join(vary)


def _header_bytes(headers: Iterable[tuple[str, str]]) -> int:
    return sum(len(name) + len(value) + 4 for name, value in headers)


@dataclass(slots=True, eq=False)
class CachedObject:
    key: str
    primary: str
    vary_key: tuple[str, ...]
    status: int
    headers: tuple[tuple[str, str], ...]
    request_time: float
    response_time: float
    length: int
    policy: ResponsePolicy
    memory: bytes | None = None
    disk_path: Path | None = None
    prefetched: bool = False
    version: int = 0
    """Bumped when a 304 refreshes the headers (serving code may cache derived headers)."""
    cached_wire: object | None = field(default=None, repr=False)
    """Slot for the shell's prebuilt response headers (keyed by ``version``)."""

    @property
    def has_body(self) -> bool:
        """Still held by a tier (not evicted or purged since it was looked up)."""
        return self.memory is not None or self.disk_path is not None

    @property
    def path(self) -> str:
        return self.primary.partition("?")[0]

    @property
    def accounted_size(self) -> int:
        return self.length + _header_bytes(self.headers) + OBJECT_OVERHEAD

    def meta(self) -> DiskMeta:
        return DiskMeta(
            key=self.key,
            primary=self.primary,
            vary_key=self.vary_key,
            status=self.status,
            headers=self.headers,
            request_time=self.request_time,
            response_time=self.response_time,
            length=self.length,
        )


class FillSlot:
    """Space held in the tiers for one fill; feed it the body, then commit or abort."""

    def __init__(
        self,
        store: CacheStore,
        key: str,
        memory: Reservation | None,
        disk: Reservation | None,
        writer: DiskWriter | None,
    ) -> None:
        self._store = store
        self.key = key
        self._memory = memory
        self._disk = disk
        self._writer = writer
        self.received = 0
        self.closed = False

    @property
    def storing(self) -> bool:
        """False once both tiers refused (the fill goes on, but won't be stored)."""
        return not self.closed and (self._memory is not None or self._disk is not None)

    def append(self, chunk: bytes) -> None:
        if not self.storing:
            return
        self.received += len(chunk)
        needed = self.received + OBJECT_OVERHEAD + 4 * KiB
        store = self._store
        if self._memory is not None and self._memory.size < needed:
            self._memory = store._grow("memory", store.memory, self._memory, needed)
        if self._disk is not None and store.disk_index is not None:
            if self._disk.size < needed:
                self._disk = store._grow("disk", store.disk_index, self._disk, needed)
            if self._disk is None:
                self._abort_writer()
            elif self._writer is not None:
                try:
                    self._writer.write(chunk)
                except OSError as error:
                    log.warning("disk tier write failed", extra={"fields": {"error": error}})
                    store.disk_index.release(self._disk)
                    self._disk = None
                    self._abort_writer()

    def _abort_writer(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None

    def commit(
        self,
        *,
        primary: str,
        vary: tuple[str, ...],
        status: int,
        headers: HeaderPairs,
        request_time: float,
        response_time: float,
        body: bytes,
        request_headers: HeaderPairs,
        prefetched: bool = False,
    ) -> CachedObject | None:
        """Store the finished object; None when no tier kept it."""
        if not self.storing:
            self.abort()
            return None
        self.closed = True
        store = self._store
        stored_headers = tuple(headers)
        policy = describe_response(
            status,
            stored_headers,
            request_time=request_time,
            response_time=response_time,
            request_headers=request_headers,
        )
        obj = CachedObject(
            key=self.key,
            primary=primary,
            vary_key=vary,
            status=status,
            headers=stored_headers,
            request_time=request_time,
            response_time=response_time,
            length=len(body),
            policy=policy,
            prefetched=prefetched,
        )
        size = obj.accounted_size
        old = store.objects.get(self.key)
        if self._memory is not None:
            if size > self._memory.size:
                self._memory = store._grow("memory", store.memory, self._memory, size)
            if self._memory is not None:
                store.memory.commit(self._memory, self.key, size)
                obj.memory = body
                self._memory = None
        if self._disk is not None and self._writer is not None and store.disk_index is not None:
            if size > self._disk.size:
                self._disk = store._grow("disk", store.disk_index, self._disk, size)
            if self._disk is not None and store.disk is not None:
                try:
                    obj.disk_path = self._writer.finish(obj.meta())
                    store.disk_index.commit(self._disk, self.key, size)
                except OSError as error:
                    log.warning("disk tier write failed", extra={"fields": {"error": error}})
                    store.disk_index.release(self._disk)
                    self._writer.abort()
                    store.disk.remove(self.key)
                self._disk = None
                self._writer = None
        self.abort()  # whatever is left
        if old is not None and store.objects.get(self.key) is old:
            # The new copy replaced the old one in the index of each tier that
            # took it; drop the old copy from the others (it is outdated).
            if obj.memory is None and old.memory is not None:
                store.memory.discard(self.key)
            if obj.disk_path is None and old.disk_path is not None:
                if store.disk_index is not None:
                    store.disk_index.discard(self.key)
                if store.disk is not None:
                    store.disk.remove(self.key)
            old.memory = None
            old.disk_path = None
            store._unlink(old)
        if obj.memory is None and obj.disk_path is None:
            return None
        store._link(obj)
        return obj

    def abort(self) -> None:
        store = self._store
        if self._memory is not None:
            store.memory.release(self._memory)
            self._memory = None
        if self._disk is not None and store.disk_index is not None:
            store.disk_index.release(self._disk)
            self._disk = None
        self._abort_writer()
        self.closed = True


class CacheStore:
    def __init__(
        self,
        memory_capacity: int,
        *,
        disk_directory: Path | None = None,
        disk_capacity: int = 0,
        policy: str = "s3-fifo",
        max_object_fraction: float = 0.5,
    ) -> None:
        self.memory = StorageIndex(memory_capacity, policy, max_object_fraction=max_object_fraction)
        self.disk: DiskTier | None = None
        self.disk_index: StorageIndex | None = None
        if disk_directory is not None and disk_capacity > 0:
            self.disk = DiskTier(disk_directory)
            self.disk_index = StorageIndex(
                disk_capacity, policy, max_object_fraction=max_object_fraction
            )
        self.objects: dict[str, CachedObject] = {}
        self.variants: dict[str, list[CachedObject]] = {}
        self._versions = itertools.count(1)
        self.on_evict: Callable[[str, CachedObject], None] | None = None

    # -- catalogue ---------------------------------------------------------------
    def _link(self, obj: CachedObject) -> None:
        self.objects[obj.key] = obj
        siblings = self.variants.setdefault(obj.primary, [])
        siblings[:] = [other for other in siblings if other.key != obj.key]
        siblings.append(obj)

    def _unlink(self, obj: CachedObject) -> None:
        if self.objects.get(obj.key) is obj:
            del self.objects[obj.key]
        siblings = self.variants.get(obj.primary)
        if siblings is not None:
            siblings[:] = [other for other in siblings if other is not obj]
            if not siblings:
                del self.variants[obj.primary]

    def _forget_if_unstored(self, obj: CachedObject) -> None:
        if obj.memory is None and obj.disk_path is None:
            self._unlink(obj)

    def _grow(
        self, tier: str, index: StorageIndex, reservation: Reservation, needed: int
    ) -> Reservation | None:
        """Grow ``reservation`` to at least ``needed`` bytes, in steps of GROW_STEP."""
        target = max(needed, min(reservation.size + GROW_STEP, index.max_object))
        admission = index.grow(reservation, target - reservation.size)
        self._drop_evicted(tier, admission.evicted)
        return admission.reservation

    def _reserve(
        self, tier: str, index: StorageIndex, content_length: int | None
    ) -> Reservation | None:
        if content_length is not None:
            initial = content_length + OBJECT_OVERHEAD + 4 * KiB
        else:
            initial = min(GROW_STEP, index.max_object)
        admission = index.reserve(initial)
        self._drop_evicted(tier, admission.evicted)
        return admission.reservation

    def _drop_evicted(self, tier: str, keys: Iterable[str]) -> None:
        for key in keys:
            obj = self.objects.get(key)
            if obj is None:
                continue
            if tier == "memory":
                obj.memory = None
            else:
                obj.disk_path = None
                if self.disk is not None:
                    self.disk.remove(key)
            if self.on_evict is not None:
                self.on_evict(tier, obj)
            self._forget_if_unstored(obj)

    # -- lookups -----------------------------------------------------------------
    def lookup(self, primary: str, request_headers: HeaderPairs) -> CachedObject | None:
        """The stored variant matching this request (fresh or not), recorded as a hit."""
        siblings = self.variants.get(primary)
        if not siblings:
            return None
        found: CachedObject | None = None
        if len(siblings) == 1 and not siblings[0].policy.vary:
            found = siblings[0]
        else:
            for obj in reversed(siblings):
                if vary_key(obj.policy.vary, request_headers) == obj.vary_key:
                    found = obj
                    break
        if found is None:
            return None
        if found.memory is not None:
            self.memory.touch(found.key)
        else:
            self._promote(found)
        if found.disk_path is not None and self.disk_index is not None:
            self.disk_index.touch(found.key)
        return found

    def vary_names(self, primary: str) -> tuple[str, ...]:
        """The Vary field names of what is stored under ``primary`` (for coalescing keys)."""
        siblings = self.variants.get(primary)
        return siblings[-1].policy.vary if siblings else ()

    def _promote(self, obj: CachedObject) -> None:
        """Copy a disk object into memory when it fits (bigger ones are sent with sendfile)."""
        if obj.disk_path is None or obj.length > PROMOTE_MAX:
            return
        admission = self.memory.reserve(obj.accounted_size)
        if admission.reservation is None:
            return
        self._drop_evicted("memory", admission.evicted)
        try:
            body = obj.disk_path.read_bytes()
        except OSError:
            self.memory.release(admission.reservation)
            return
        if len(body) != obj.length:
            self.memory.release(admission.reservation)
            return
        self.memory.commit(admission.reservation, obj.key, obj.accounted_size)
        obj.memory = body

    # -- fills -------------------------------------------------------------------
    def begin_fill(self, key: str, content_length: int | None) -> FillSlot:
        """Reserve room for a new body under ``key`` in each tier before it arrives."""
        memory_reservation = self._reserve("memory", self.memory, content_length)
        disk_reservation: Reservation | None = None
        writer: DiskWriter | None = None
        if self.disk_index is not None and self.disk is not None:
            disk_reservation = self._reserve("disk", self.disk_index, content_length)
            if disk_reservation is not None:
                try:
                    writer = self.disk.writer(key)
                except OSError as error:
                    log.warning("disk tier unavailable", extra={"fields": {"error": error}})
                    self.disk_index.release(disk_reservation)
                    disk_reservation = None
        return FillSlot(self, key, memory_reservation, disk_reservation, writer)

    def refresh(
        self,
        obj: CachedObject,
        headers: HeaderPairs,
        *,
        request_time: float,
        response_time: float,
        request_headers: HeaderPairs = (),
    ) -> None:
        """Apply a 304's merged headers and new times to ``obj`` (memory and disk)."""
        obj.headers = tuple(headers)
        obj.request_time = request_time
        obj.response_time = response_time
        obj.policy = describe_response(
            obj.status,
            obj.headers,
            request_time=request_time,
            response_time=response_time,
            request_headers=request_headers,
        )
        obj.version = next(self._versions)
        obj.cached_wire = None
        if obj.disk_path is not None and self.disk is not None:
            try:
                self.disk.write_meta(obj.meta())
            except OSError as error:
                log.warning("disk tier metadata update failed", extra={"fields": {"error": error}})

    # -- removal -----------------------------------------------------------------
    def remove(self, obj: CachedObject) -> None:
        if obj.memory is not None:
            self.memory.discard(obj.key)
            obj.memory = None
        if obj.disk_path is not None:
            if self.disk_index is not None:
                self.disk_index.discard(obj.key)
            if self.disk is not None:
                self.disk.remove(obj.key)
            obj.disk_path = None
        self._unlink(obj)

    def purge(self, prefix: str) -> int:
        """Remove every object whose path starts with ``prefix``; returns how many."""
        victims = [obj for obj in self.objects.values() if obj.path.startswith(prefix)]
        for obj in victims:
            self.remove(obj)
        return len(victims)

    # -- start-up ----------------------------------------------------------------
    def load_disk(self) -> int:
        """Rebuild the disk index from the files; returns the objects kept."""
        if self.disk is None or self.disk_index is None:
            return 0
        for found in self.disk.scan():
            meta = found.meta
            policy = describe_response(
                meta.status,
                meta.headers,
                request_time=meta.request_time,
                response_time=meta.response_time,
            )
            obj = CachedObject(
                key=meta.key,
                primary=meta.primary,
                vary_key=meta.vary_key,
                status=meta.status,
                headers=meta.headers,
                request_time=meta.request_time,
                response_time=meta.response_time,
                length=meta.length,
                policy=policy,
                disk_path=found.body_path,
            )
            evicted = self.disk_index.restore(meta.key, obj.accounted_size)
            if evicted is None:
                self.disk.remove(meta.key)
                continue
            self._drop_evicted("disk", evicted)
            self._link(obj)
        return len(self.disk_index)

    def statistics(self) -> list[TierStatistics]:
        tiers = [TierStatistics("memory", self.memory.statistics())]
        if self.disk_index is not None:
            tiers.append(TierStatistics("disk", self.disk_index.statistics()))
        return tiers
