"""The edge's routing decision for one viewer request, without IO.

:func:`route` takes what the shell read from the request
(:class:`RequestFacts`), the stored copy the cache found for it (or None) and
``now``, and answers with one frozen decision:

* :class:`Refuse` — answered locally with a one-line error: a request that
  would make the edge an open proxy (:func:`~seedcast.edge.guard.check_request`),
  a request loop (this edge is already in ``Via``), or ``only-if-cached``
  that the cache can't satisfy (504);
* :class:`Hit` — the stored copy is fresh enough (``X-Cache: HIT``);
* :class:`Stale` — the viewer accepts this staleness (``max-stale``);
* :class:`Refresh` — serve the stale copy now and refresh it in the
  background (``stale-while-revalidate``);
* :class:`Revalidate` — ask upstream with a conditional request first;
* :class:`Miss` — not stored: fetch once for every viewer asking (a fill);
* :class:`Pass` — fetch for this viewer alone (``no-store``, or
  ``Authorization`` the stored copy may not answer).

The freshness rules themselves live in :mod:`seedcast.edge.caching`; the
shell's hot path for plain requests asks :func:`plain_hit_age`, the same
rule as :class:`Hit` without the request's directives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from seedcast.edge.caching import (
    DEFAULT_REQUEST,
    Action,
    RequestPolicy,
    ResponsePolicy,
    decide,
)
from seedcast.edge.guard import HostRules, check_request

__all__ = [
    "Hit",
    "Miss",
    "Pass",
    "Refresh",
    "Refuse",
    "RequestFacts",
    "Revalidate",
    "Route",
    "Stale",
    "plain_hit_age",
    "refusal",
    "route",
]


class Stored(Protocol):
    """What the router needs of a stored copy."""

    @property
    def policy(self) -> ResponsePolicy: ...


S = TypeVar("S", bound=Stored)


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """The parts of a viewer request the routing decision depends on."""

    method: str
    target: str
    version: str = "1.1"
    hosts: tuple[str, ...] = ()
    via: str | None = None
    policy: RequestPolicy = DEFAULT_REQUEST
    """The request's caching directives (:func:`~seedcast.edge.caching.describe_request`)."""
    host_accepted: bool = False
    """The shell already accepted this exact method, target form and Host (a memo)."""


@dataclass(frozen=True, slots=True)
class Refuse:
    status: int
    reason: str
    allow: str | None = None
    """The ``Allow`` value for a 405."""
    refused: bool = True
    """A request the edge won't serve (counted as refused); False for only-if-cached."""


@dataclass(frozen=True, slots=True)
class Hit(Generic[S]):
    stored: S


@dataclass(frozen=True, slots=True)
class Stale(Generic[S]):
    stored: S


@dataclass(frozen=True, slots=True)
class Refresh(Generic[S]):
    stored: S


@dataclass(frozen=True, slots=True)
class Revalidate(Generic[S]):
    stored: S


@dataclass(frozen=True, slots=True)
class Miss:
    pass


@dataclass(frozen=True, slots=True)
class Pass:
    reason: str
    """``no-store`` or ``authorization`` (for logs and tests)."""


Route = Refuse | Hit[S] | Stale[S] | Refresh[S] | Revalidate[S] | Miss | Pass


def route(
    request: RequestFacts, stored: S | None, now: float, *, rules: HostRules, via_token: str
) -> Route[S]:
    """Decide one request. ``via_token`` is this edge's ``Via`` entry (``1.1 <name>``)."""
    refused = refusal(request, rules=rules, via_token=via_token)
    if refused is not None:
        return refused
    policy = request.policy
    if policy.no_store:
        return Pass("no-store")
    if stored is not None:
        if policy.authorization and not stored.policy.serves_authorized:
            return Pass("authorization")
        action = decide(stored.policy, policy, now)
        if action == Action.SERVE:
            return Hit(stored)
        if action == Action.SERVE_STALE:
            return Stale(stored)
        if action == Action.SERVE_STALE_AND_REFRESH:
            return Refresh(stored)
        if policy.only_if_cached:
            return Refuse(504, "the cached copy needs revalidation (only-if-cached)", refused=False)
        return Revalidate(stored)
    if policy.only_if_cached:
        return Refuse(504, "not in this cache (only-if-cached)", refused=False)
    if policy.authorization:
        return Pass("authorization")
    return Miss()


def refusal(request: RequestFacts, *, rules: HostRules, via_token: str) -> Refuse | None:
    """The first step of :func:`route`: may the edge serve this request at all?

    The shell asks it before looking the request up, so that a refused request
    never touches the cache (a lookup counts as a use for eviction).
    """
    if not request.host_accepted:
        refused = check_request(
            request.method, request.target, request.version, list(request.hosts), rules
        )
        if refused is not None:
            allow = "GET, HEAD" if refused.status == 405 else None
            return Refuse(refused.status, refused.reason, allow)
    if request.via is not None and via_token in request.via:
        return Refuse(508, "request loop: this edge is already in Via")
    return None


def plain_hit_age(policy: ResponsePolicy, now: float) -> float | None:
    """The age of a copy a request without caching directives may get as a Hit, else None.

    The same answer :func:`route` gives for :data:`DEFAULT_REQUEST`, cheaper:
    it is the hot path of a busy edge.
    """
    if policy.no_cache or policy.requires_revalidation_with_auth:
        return None
    age = policy.initial_age + (now - policy.response_time if now > policy.response_time else 0.0)
    return age if age < policy.freshness_lifetime else None
