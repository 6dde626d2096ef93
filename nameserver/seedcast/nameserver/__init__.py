"""Authoritative DNS server, edge-selection policies and health checks.

Sans-IO cores: :class:`Answerer` (query bytes in, response bytes out),
:class:`Steering` and the pure policies in :mod:`.policies`,
:class:`HealthTracker`, :class:`ResponseRateLimiter`, zones in :mod:`.zones`.
The trio shell is :class:`seedcast.nameserver.server.NameServer`
(``seedcast dns``); the stub resolver clients use is :mod:`seedcast.resolver`.
"""

from seedcast.nameserver.answerer import Answerer, Transport
from seedcast.nameserver.health import EdgeState, HealthTracker, Transition
from seedcast.nameserver.policies import Edge, Locator, Policy, Selection, Steering
from seedcast.nameserver.rate_limit import RateDecision, ResponseRateLimiter
from seedcast.nameserver.zones import Zone, ZoneSet, load_zones

__all__ = [
    "Answerer",
    "Edge",
    "EdgeState",
    "HealthTracker",
    "Locator",
    "Policy",
    "RateDecision",
    "ResponseRateLimiter",
    "Selection",
    "Steering",
    "Transition",
    "Transport",
    "Zone",
    "ZoneSet",
    "load_zones",
]
