"""The discrete-event loop: a virtual clock, timers, and transfers that flow between events.

How it works. :class:`EventLoop` keeps a heap of timers ``(time, order,
callback)``; :class:`Network` holds the transfers in flight (bytes left,
rate). Between two events every rate is constant, so the loop jumps straight
to the earlier of the next timer and the next transfer to finish, moves every
transfer's bytes on by ``rate x dt`` (numpy, all at once), and runs what is
due: finished transfers first (their callbacks may start new ones and set
timers), then the timers. Rates are recomputed (max-min fair, see
:mod:`seedcast.sim.sharing`) only when the set of transfers changed.

Transfers due within ``resolution`` seconds of each other finish in the same
step: a swarm of equal peers finishes thousands of pieces at nearly the same
instant, and one rate recomputation for all of them instead of one each is
what makes 10^4 peers feasible. The error this adds is at most
``resolution`` per transfer.

Nothing here reads a clock or does I/O: a run is a pure function of its
inputs and seeds.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

import numpy as np
from seedcast.sim.sharing import max_min_rates

__all__ = ["EventLoop", "Network", "Timer"]

Callback = Callable[[], None]


class Timer:
    """A scheduled callback; :meth:`cancel` makes the loop skip it."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Network:
    """Nodes with upload/download capacities and the transfers between them.

    A transfer carries ``size`` bytes from ``src`` to ``dst``; ``on_done`` is
    called when the last byte arrives. Node capacities may change (a node
    joins, leaves, or is capped later); ``inf`` means unlimited.
    """

    def __init__(self, *, resolution: float = 1e-3) -> None:
        self.resolution = resolution
        self._upload: list[float] = []
        self._download: list[float] = []
        capacity = 64
        self._src = np.zeros(capacity, dtype=np.int64)
        self._dst = np.zeros(capacity, dtype=np.int64)
        self._left = np.zeros(capacity)
        self._cap = np.full(capacity, np.inf)
        self._rate = np.zeros(capacity)
        self._live = np.zeros(capacity, dtype=bool)
        self._done: list[Callable[[int], None] | None] = [None] * capacity
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._dirty = False
        self.bytes_sent: list[float] = []
        """Bytes each node has uploaded so far (counted as transfers progress)."""

    # -- nodes -------------------------------------------------------------------------

    def add_node(self, upload: float = math.inf, download: float = math.inf) -> int:
        self._upload.append(upload if upload > 0 else math.inf)
        self._download.append(download if download > 0 else math.inf)
        self.bytes_sent.append(0.0)
        return len(self._upload) - 1

    @property
    def nodes(self) -> int:
        return len(self._upload)

    # -- transfers ---------------------------------------------------------------------

    def start(
        self,
        src: int,
        dst: int,
        size: float,
        on_done: Callable[[int], None],
        *,
        cap: float = math.inf,
    ) -> int:
        """Start a transfer; returns its id. ``on_done(id)`` runs when it has arrived."""
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self._src[slot] = src
        self._dst[slot] = dst
        self._left[slot] = max(float(size), 0.0)
        self._cap[slot] = cap if cap > 0 else math.inf
        self._rate[slot] = 0.0
        self._live[slot] = True
        self._done[slot] = on_done
        self._dirty = True
        return slot

    def cancel(self, transfer: int) -> float:
        """Stop a transfer without calling back; returns the bytes it had left."""
        if not self._live[transfer]:
            return 0.0
        left = float(self._left[transfer])
        self._release(transfer)
        return left

    def remaining(self, transfer: int) -> float:
        """Bytes ``transfer`` has still to carry."""
        return float(self._left[transfer]) if self._live[transfer] else 0.0

    def resize(self, transfer: int, left: float) -> None:
        """Change the bytes ``transfer`` has left to carry (part of it was called off)."""
        if self._live[transfer]:
            self._left[transfer] = max(float(left), 0.0)

    def rate(self, transfer: int) -> float:
        self._refresh()
        return float(self._rate[transfer]) if self._live[transfer] else 0.0

    @property
    def active(self) -> int:
        return int(self._live.sum())

    def _grow(self) -> None:
        old = len(self._live)
        new = old * 2
        self._src = np.resize(self._src, new)
        self._dst = np.resize(self._dst, new)
        self._left = np.resize(self._left, new)
        self._cap = np.concatenate([self._cap[:old], np.full(new - old, np.inf)])
        self._rate = np.concatenate([self._rate[:old], np.zeros(new - old)])
        self._live = np.concatenate([self._live[:old], np.zeros(new - old, dtype=bool)])
        self._done.extend([None] * (new - old))
        self._free.extend(range(new - 1, old - 1, -1))

    def _release(self, slot: int) -> None:
        self._live[slot] = False
        self._rate[slot] = 0.0
        self._done[slot] = None
        self._free.append(slot)
        self._dirty = True

    def _refresh(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        live = np.flatnonzero(self._live)
        if not len(live):
            return
        self._rate[live] = max_min_rates(
            self._src[live],
            self._dst[live],
            np.asarray(self._upload),
            np.asarray(self._download),
            self._cap[live],
        )

    def next_finish(self) -> float:
        """Seconds until the next transfer finishes at the current rates (inf: none will)."""
        self._refresh()
        live = self._live
        if not live.any():
            return math.inf
        rates = self._rate[live]
        with np.errstate(divide="ignore"):
            times = np.where(rates > 0, self._left[live] / np.maximum(rates, 1e-300), np.inf)
        return float(times.min())

    def advance(self, seconds: float) -> list[int]:
        """Move every transfer on by ``seconds``; returns the ids now due (not yet called)."""
        self._refresh()
        live = np.flatnonzero(self._live)
        if not len(live):
            return []
        rates = self._rate[live]
        moved = np.minimum(rates * seconds, self._left[live])
        self._left[live] -= moved
        sent = np.bincount(self._src[live], weights=moved, minlength=self.nodes)
        for node in np.flatnonzero(sent):
            self.bytes_sent[node] += float(sent[node])
        due = self._left[live] <= rates * self.resolution + 1e-6
        return [int(slot) for slot in live[due]]

    def finish(self, transfer: int) -> None:
        """Release a due transfer and call its ``on_done``."""
        callback = self._done[transfer]
        if not self._live[transfer] or callback is None:
            return
        self.bytes_sent[int(self._src[transfer])] += float(self._left[transfer])
        self._release(transfer)
        callback(transfer)


class EventLoop:
    """A virtual clock with timers, driving a :class:`Network`'s transfers."""

    def __init__(self, network: Network | None = None) -> None:
        self.now = 0.0
        self.network = network or Network()
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self.steps = 0
        self._stopped = False

    def call_at(self, when: float, callback: Callback) -> Timer:
        timer = Timer(max(when, self.now), callback)
        heapq.heappush(self._heap, (timer.when, next(self._order), timer))
        return timer

    def call_later(self, delay: float, callback: Callback) -> Timer:
        return self.call_at(self.now + delay, callback)

    def stop(self) -> None:
        """End :meth:`run` after the current step."""
        self._stopped = True

    def run(self, until: float = math.inf) -> float:
        """Run until :meth:`stop`, nothing is left to do, or virtual time ``until``."""
        heap = self._heap
        network = self.network
        self._stopped = False
        while not self._stopped:
            while heap and heap[0][2].cancelled:
                heapq.heappop(heap)
            next_timer = heap[0][0] if heap else math.inf
            next_transfer = self.now + network.next_finish()
            when = min(next_timer, next_transfer, until)
            if not math.isfinite(when):
                break
            due = network.advance(when - self.now)
            self.now = when
            self.steps += 1
            for transfer in due:
                network.finish(transfer)
            while heap and heap[0][0] <= self.now:
                _, _, timer = heapq.heappop(heap)
                if not timer.cancelled:
                    timer.callback()
            if self.now >= until:
                break
        return self.now
