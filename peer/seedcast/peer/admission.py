"""Sans-IO admission: which incoming connection to take, and whom to drop for it.

How it works. Before a new connection costs anything, :func:`admit` looks
at a snapshot of the connections we have (:class:`ConnectionView`):

* a banned address is refused;
* an address with ``per_host`` connections already is refused, so one
  source can't fill the table by itself;
* below ``max_connections`` the connection is taken;
* when full, the least useful connection older than ``grace`` is evicted
  to make room, if one is useless enough (:func:`usefulness`): first those
  that never finished the handshake, then those whose writes are stalled
  (a peer that doesn't read what it asked for), then those that exchanged
  no payload in either direction lately and want nothing from us nor have
  anything we want. Peers that trade are never evicted; when every
  connection is useful, the newcomer is refused.

So 50 connections that handshake and then sit silent can't lock out a
legitimate peer for the idle timeout: each newcomer displaces one of them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Admission", "ConnectionView", "Refusal", "admit", "usefulness"]


class Refusal(StrEnum):
    """Why an incoming connection was refused (the metric's ``reason`` label)."""

    BANNED = "banned"
    PER_HOST = "per_host"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class ConnectionView:
    key: Hashable
    host: str
    connected_at: float
    established: bool
    """The handshake is done both ways."""
    stalled: bool = False
    """A write has been blocked for a while: the peer doesn't read."""
    exchanging: bool = False
    """Payload moved either way recently."""
    wanted: bool = False
    """It is interested in us, or we in it."""


@dataclass(frozen=True, slots=True)
class Admission:
    accept: bool
    evict: Hashable | None = None
    refusal: Refusal | None = None


def usefulness(view: ConnectionView) -> int:
    """0 (useless, evict first) to 3 (trading: never evicted)."""
    if not view.established:
        return 0
    if view.stalled:
        return 1
    if view.exchanging:
        return 3
    return 2 if view.wanted else 1


def admit(
    host: str,
    connections: Sequence[ConnectionView],
    now: float,
    *,
    max_connections: int,
    per_host: int,
    grace: float,
    banned: bool = False,
) -> Admission:
    """Decide on a connection from ``host``. ``per_host`` 0 means no per-host cap."""
    if banned:
        return Admission(False, refusal=Refusal.BANNED)
    if per_host and sum(1 for view in connections if view.host == host) >= per_host:
        return Admission(False, refusal=Refusal.PER_HOST)
    if len(connections) < max_connections:
        return Admission(True)
    candidates = [
        view for view in connections if now - view.connected_at >= grace and usefulness(view) < 2
    ]
    if not candidates:
        return Admission(False, refusal=Refusal.FULL)
    # The least useful; among equals the one connected longest (it had its chance).
    victim = min(candidates, key=lambda view: (usefulness(view), view.connected_at))
    return Admission(True, evict=victim.key)
