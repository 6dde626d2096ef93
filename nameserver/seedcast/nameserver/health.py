"""Edge health: one small state machine per edge, fed probe results and ``now``.

Theory of operation. Each edge remembers its last ``window`` probe results.
Its state moves only by the table in :data:`_TRANSITIONS`, which is consulted
after every probe with two facts: was this probe good, and how many of the
window's results are failures / successes::

    UNKNOWN --good probe-------------------------------------> UP
    UNKNOWN --bad probe, failures in window >= threshold----> DOWN
    UP      --bad probe, failures in window >= threshold----> DOWN
    DOWN    --good probe, successes in window >= threshold--> UP

With the defaults (window 3, threshold 2) an edge that stops answering leaves
the answers after two probes, i.e. within two intervals, and needs two good
probes to return; one flap changes nothing. A bad probe never brings an edge
up and a good one never takes it down, so it cannot oscillate.

:meth:`HealthTracker.eligible` says which edges answers may use: the UP ones;
if none is UP, those never yet judged (UNKNOWN), so a freshly started
nameserver answers with its configured set instead of nothing; if every edge
is DOWN, nothing (the caller applies the all-down policy). ``generation``
changes whenever that answer may change, so callers can cache on it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum


class EdgeState(IntEnum):
    UNKNOWN = 0
    UP = 1
    DOWN = 2


@dataclass(frozen=True, slots=True)
class Transition:
    edge: str
    old: EdgeState
    new: EdgeState
    at: float


@dataclass(frozen=True, slots=True)
class EdgeHealth:
    """Snapshot of one edge, for metrics and ``seedcast status``."""

    edge: str
    state: EdgeState
    load: float | None
    probes: int
    failures: int
    last_probe: float | None
    last_change: float | None


# (state, probe was good, failures >= threshold, successes >= threshold) -> new state.
# Combinations not listed keep the state. A bad probe never brings an edge up
# and a good one never takes it down.
_TRANSITIONS: dict[tuple[EdgeState, bool, bool, bool], EdgeState] = {
    (EdgeState.UNKNOWN, True, False, False): EdgeState.UP,
    (EdgeState.UNKNOWN, True, False, True): EdgeState.UP,
    (EdgeState.UNKNOWN, True, True, False): EdgeState.UP,
    (EdgeState.UNKNOWN, True, True, True): EdgeState.UP,
    (EdgeState.UNKNOWN, False, True, False): EdgeState.DOWN,
    (EdgeState.UNKNOWN, False, True, True): EdgeState.DOWN,
    (EdgeState.UP, False, True, False): EdgeState.DOWN,
    (EdgeState.UP, False, True, True): EdgeState.DOWN,
    (EdgeState.DOWN, True, False, True): EdgeState.UP,
    (EdgeState.DOWN, True, True, True): EdgeState.UP,
}


class _Edge:
    __slots__ = ("failures", "last_change", "last_probe", "load", "probes", "results", "state")

    def __init__(self, window: int) -> None:
        self.state = EdgeState.UNKNOWN
        self.results: deque[bool] = deque(maxlen=window)
        self.load: float | None = None
        self.probes = 0
        self.failures = 0
        self.last_probe: float | None = None
        self.last_change: float | None = None


class HealthTracker:
    """Health of a fixed set of edges. Unknown edge names raise KeyError."""

    def __init__(self, edges: Iterable[str], *, window: int = 3, threshold: int = 2) -> None:
        if window < 1 or not 1 <= threshold <= window:
            raise ValueError(
                f"need 1 <= threshold <= window, got window={window} threshold={threshold}"
            )
        self.window = window
        self.threshold = threshold
        self._edges = {name: _Edge(window) for name in edges}
        self.generation = 0
        """Bumped whenever eligibility or a load figure changes."""

    @property
    def edges(self) -> Sequence[str]:
        return tuple(self._edges)

    def state(self, edge: str) -> EdgeState:
        return self._edges[edge].state

    def load(self, edge: str) -> float | None:
        return self._edges[edge].load

    def record(
        self, edge: str, ok: bool, now: float, *, load: float | None = None
    ) -> Transition | None:
        """Feed one probe result; returns the transition it caused, if any."""
        entry = self._edges[edge]
        entry.results.append(ok)
        entry.probes += 1
        entry.last_probe = now
        if not ok:
            entry.failures += 1
        if load is not None:
            self.set_load(edge, load)
        failures = sum(1 for result in entry.results if not result)
        successes = len(entry.results) - failures
        key = (entry.state, ok, failures >= self.threshold, successes >= self.threshold)
        new = _TRANSITIONS.get(key, entry.state)
        if new is entry.state:
            return None
        transition = Transition(edge, entry.state, new, now)
        entry.state = new
        entry.last_change = now
        self.generation += 1
        return transition

    def set_load(self, edge: str, load: float) -> None:
        """A load figure (from /healthz or the control channel); higher = busier."""
        entry = self._edges[edge]
        load = max(0.0, float(load))
        if entry.load != load:
            entry.load = load
            self.generation += 1

    def eligible(self, edges: Iterable[str] | None = None) -> list[str]:
        """The edges answers may use, in the given order (see the module docstring)."""
        names = list(self._edges if edges is None else edges)
        up = [name for name in names if self._edges[name].state is EdgeState.UP]
        if up:
            return up
        return [name for name in names if self._edges[name].state is EdgeState.UNKNOWN]

    def statistics(self) -> list[EdgeHealth]:
        return [
            EdgeHealth(
                edge=name,
                state=entry.state,
                load=entry.load,
                probes=entry.probes,
                failures=entry.failures,
                last_probe=entry.last_probe,
                last_change=entry.last_change,
            )
            for name, entry in self._edges.items()
        ]
