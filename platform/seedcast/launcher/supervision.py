"""Supervision policy: each process's state machine and when to restart it.

Theory of operation. The launcher keeps one :class:`ProcessRecord` per child
and feeds it what happened (spawned, ready, exited, stop requested) with the
current time. Everything that decides a state lives in this file:

- :data:`TRANSITIONS` is the state machine (starting -> ready -> ... ).
- :class:`RestartPolicy` decides, from the crash times inside a sliding
  window, whether a crashed child is restarted and after what delay:
  ``base * factor**(n-1)`` capped at ``max_delay`` for the n-th crash in the
  window; the ``max_crashes``-th crash within ``window`` seconds marks it
  failed instead, and the rest of the cluster carries on.

An exit while a stop was requested is a stop, not a crash. No clock, no I/O.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final


class ProcessState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"


class Happening(enum.StrEnum):
    SPAWNED = "spawned"
    READY = "ready"
    CRASHED = "crashed"
    GAVE_UP = "gave-up"
    STOPPED = "stopped"


S, H = ProcessState, Happening

# (state, happening) -> next state. Anything else is ignored (a late "ready"
# from a process already marked crashed, a second exit report, ...).
TRANSITIONS: Final[dict[tuple[ProcessState, Happening], ProcessState]] = {
    (S.STOPPED, H.SPAWNED): S.STARTING,
    (S.RESTARTING, H.SPAWNED): S.STARTING,
    (S.STARTING, H.READY): S.READY,
    (S.STARTING, H.CRASHED): S.RESTARTING,
    (S.READY, H.CRASHED): S.RESTARTING,
    (S.STARTING, H.GAVE_UP): S.FAILED,
    (S.READY, H.GAVE_UP): S.FAILED,
    (S.STARTING, H.STOPPED): S.STOPPED,
    (S.READY, H.STOPPED): S.STOPPED,
    (S.RESTARTING, H.STOPPED): S.STOPPED,
    (S.FAILED, H.STOPPED): S.FAILED,
}


@dataclass(frozen=True, slots=True)
class RestartDecision:
    restart: bool
    delay: float = 0.0
    crashes_in_window: int = 0


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    base_delay: float = 0.1
    factor: float = 2.0
    max_delay: float = 10.0
    max_crashes: int = 5
    window: float = 60.0

    def decide(self, crash_times: Sequence[float], now: float) -> RestartDecision:
        """What to do after the latest crash; ``crash_times`` includes it."""
        recent = [moment for moment in crash_times if now - moment <= self.window]
        count = len(recent)
        if count >= self.max_crashes:
            return RestartDecision(False, 0.0, count)
        delay = min(self.max_delay, self.base_delay * self.factor ** max(0, count - 1))
        return RestartDecision(True, delay, count)


@dataclass(slots=True)
class ProcessRecord:
    """What the launcher knows about one supervised process."""

    role: str
    name: str
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    state: ProcessState = ProcessState.STOPPED
    pid: int | None = None
    restarts: int = 0
    started_at: float | None = None
    ready_at: float | None = None
    addresses: tuple[str, ...] = ()
    metrics: str | None = None
    last_error: str = ""
    last_exit: int | None = None
    stop_requested: bool = False
    crash_times: deque[float] = field(default_factory=lambda: deque(maxlen=64))

    def _apply(self, happening: Happening) -> bool:
        following = TRANSITIONS.get((self.state, happening))
        if following is None:
            return False
        self.state = following
        return True

    def spawned(self, pid: int, now: float) -> None:
        if self.state is ProcessState.RESTARTING:
            self.restarts += 1
        self._apply(Happening.SPAWNED)
        self.pid = pid
        self.started_at = now
        self.ready_at = None

    def became_ready(
        self, pid: int, addresses: Sequence[str], metrics: str | None, now: float
    ) -> bool:
        """Record readiness; False (ignored) when it is not from the current process."""
        if pid != self.pid or not self._apply(Happening.READY):
            return False
        self.addresses = tuple(addresses)
        self.metrics = metrics
        self.ready_at = now
        return True

    def request_stop(self) -> None:
        self.stop_requested = True

    def exited(self, code: int, now: float) -> RestartDecision | None:
        """The process exited; returns the restart decision (None when stopping)."""
        self.last_exit = code
        self.pid = None
        if self.stop_requested:
            self._apply(Happening.STOPPED)
            return None
        self.crash_times.append(now)
        decision = self.policy.decide(self.crash_times, now)
        self._apply(Happening.CRASHED if decision.restart else Happening.GAVE_UP)
        return decision

    def uptime(self, now: float) -> float:
        if self.started_at is None or self.pid is None:
            return 0.0
        return max(0.0, now - self.started_at)

    @property
    def settled(self) -> bool:
        """Ready or given up: what ``up`` waits for."""
        return self.state in (ProcessState.READY, ProcessState.FAILED)
