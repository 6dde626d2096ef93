"""Authoritative DNS server, edge-selection policies and health checks.

Sans-IO cores: :class:`Answerer` (query bytes in, response bytes out),
:class:`Steering` and the pure policies in :mod:`.policies`,
:class:`HealthTracker`, :class:`ResponseRateLimiter`, zones in :mod:`.zones`.
The trio shell is :class:`seedcast.edge.nameserver.server.NameServer`
(``seedcast dns``); the stub resolver clients use is :mod:`seedcast.resolver`.
"""

from seedcast.edge.nameserver.answerer import Answerer, Transport
from seedcast.edge.nameserver.health import EdgeState, HealthTracker, Transition
from seedcast.edge.nameserver.policies import Edge, Locator, Policy, Selection, Steering
from seedcast.edge.nameserver.rate_limit import RateDecision, ResponseRateLimiter
from seedcast.edge.nameserver.zones import Zone, ZoneSet, load_zones

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
