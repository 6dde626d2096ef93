"""The edge's routing decision: tables of request x stored copy x time, and any input."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.edge.caching import ResponsePolicy, describe_request, describe_response
from seedcast.edge.guard import HostRules
from seedcast.edge.router import (
    Hit,
    Miss,
    Pass,
    Refresh,
    Refuse,
    RequestFacts,
    Revalidate,
    Stale,
    plain_hit_age,
    refusal,
    route,
)
from seedcast.http11.semantics import http_date

NOW = 1_700_000_000.0
RULES = HostRules.build(["127.0.0.1", "edge.test"])
VIA = "1.1 edge-1"


@dataclass(frozen=True)
class Copy:
    policy: ResponsePolicy


def copy(cache_control: str, *, age: float = 0.0, auth: bool = False) -> Copy:
    headers = [("Cache-Control", cache_control), ("Date", http_date(NOW)), ("ETag", '"v1"')]
    request = [("Authorization", "Bearer x")] if auth else []
    policy = describe_response(
        200, headers, request_time=NOW, response_time=NOW, request_headers=request
    )
    return Copy(replace(policy, initial_age=age))


def facts(*fields: tuple[str, str], method: str = "GET", **options: object) -> RequestFacts:
    defaults: dict[str, object] = {"hosts": ("edge.test",)}
    defaults.update(options)
    return RequestFacts(method, "/v/seg.m4s", policy=describe_request(list(fields)), **defaults)  # type: ignore[arg-type]


def decide(request: RequestFacts, stored: Copy | None) -> object:
    return route(request, stored, NOW, rules=RULES, via_token=VIA)


FRESH = copy("max-age=60")
STALE = copy("max-age=60", age=100)
SWR = copy("max-age=60, stale-while-revalidate=100", age=100)
MUST = copy("max-age=60, must-revalidate", age=100)
NO_CACHE = copy("no-cache")
AUTH_ONLY = copy("max-age=60")
SHARED_AUTH = copy("public, max-age=60")


@pytest.mark.parametrize(
    ("request_facts", "stored", "expected"),
    [
        (facts(), FRESH, Hit(FRESH)),
        (facts(method="HEAD"), FRESH, Hit(FRESH)),
        (facts(), STALE, Revalidate(STALE)),
        (facts(), SWR, Refresh(SWR)),
        (facts(("Cache-Control", "max-stale=100")), STALE, Stale(STALE)),
        (facts(("Cache-Control", "max-stale")), MUST, Revalidate(MUST)),
        (facts(), NO_CACHE, Revalidate(NO_CACHE)),
        (facts(("Cache-Control", "no-cache")), FRESH, Revalidate(FRESH)),
        (facts(("Pragma", "no-cache")), FRESH, Revalidate(FRESH)),
        (facts(("Cache-Control", "max-age=0")), copy("max-age=60", age=5), None),
        (facts(("Cache-Control", "min-fresh=100")), FRESH, Revalidate(FRESH)),
        (facts(), None, Miss()),
        (facts(("Cache-Control", "no-store")), FRESH, Pass("no-store")),
        (facts(("Cache-Control", "no-store")), None, Pass("no-store")),
        (facts(("Authorization", "Bearer x")), AUTH_ONLY, Pass("authorization")),
        (facts(("Authorization", "Bearer x")), None, Pass("authorization")),
        (facts(("Authorization", "Bearer x")), SHARED_AUTH, Hit(SHARED_AUTH)),
        (
            facts(("Cache-Control", "only-if-cached")),
            None,
            Refuse(504, "not in this cache (only-if-cached)", refused=False),
        ),
        (
            facts(("Cache-Control", "only-if-cached")),
            STALE,
            Refuse(504, "the cached copy needs revalidation (only-if-cached)", refused=False),
        ),
        (facts(("Cache-Control", "only-if-cached")), FRESH, Hit(FRESH)),
    ],
)
def test_cache_decisions(
    request_facts: RequestFacts, stored: Copy | None, expected: object
) -> None:
    answer = decide(request_facts, stored)
    if expected is None:  # max-age=0 from the viewer: revalidate even a fresh copy
        assert isinstance(answer, Revalidate)
    else:
        assert answer == expected


@pytest.mark.parametrize(
    ("request_facts", "status"),
    [
        (facts(method="POST"), 405),
        (facts(hosts=("other.example",)), 421),
        (facts(hosts=("edge.test", "edge.test")), 400),
        (facts(hosts=()), 400),
        (facts(hosts=("edge.test:bad",)), 400),
        (RequestFacts("GET", "http://other.example/x", hosts=("edge.test",)), 400),
        (RequestFacts("GET", "*", hosts=("edge.test",)), 400),
        (facts(via="1.0 parent, 1.1 edge-1"), 508),
    ],
)
def test_refusals(request_facts: RequestFacts, status: int) -> None:
    answer = decide(request_facts, FRESH)
    assert refusal(request_facts, rules=RULES, via_token=VIA) == answer  # asked before lookup
    assert isinstance(answer, Refuse)
    assert answer.status == status
    assert answer.refused
    assert (answer.allow == "GET, HEAD") == (status == 405)


def test_servable_requests_are_not_refused() -> None:
    assert refusal(facts(), rules=RULES, via_token=VIA) is None
    assert refusal(facts(via="1.1 parent"), rules=RULES, via_token=VIA) is None
    assert refusal(facts(("Cache-Control", "only-if-cached")), rules=RULES, via_token=VIA) is None


def test_accepted_hosts_skip_the_guard_but_not_the_loop_check() -> None:
    assert decide(facts(hosts=("other.example",), host_accepted=True), FRESH) == Hit(FRESH)
    assert decide(facts(hosts=(), version="1.0"), None) == Miss()
    looped = decide(facts(via=VIA, host_accepted=True), FRESH)
    assert isinstance(looped, Refuse)
    assert looped.status == 508


def test_plain_hit_age_agrees_with_route() -> None:
    assert plain_hit_age(FRESH.policy, NOW + 10) == 10
    assert plain_hit_age(STALE.policy, NOW) is None
    assert plain_hit_age(NO_CACHE.policy, NOW) is None
    auth_revalidate = copy("max-age=60, must-revalidate", auth=True)
    assert plain_hit_age(auth_revalidate.policy, NOW) is None


directives = st.sampled_from(
    ["max-age=0", "max-age=30", "no-cache", "no-store", "max-stale", "max-stale=50",
     "min-fresh=20", "only-if-cached", "s-maxage=5", "must-revalidate",
     "stale-while-revalidate=30", "public", "private", "garbage=\"x,y\""]
)  # fmt: skip
cache_controls = st.lists(directives, max_size=4).map(", ".join)


@given(
    cache_controls,
    st.one_of(st.none(), cache_controls),
    st.floats(0, 10_000),
    st.booleans(),
    st.sampled_from(["GET", "HEAD", "POST", "PURGE", "CONNECT"]),
    st.lists(st.text(max_size=20), max_size=2),
    st.one_of(st.none(), st.text(max_size=30)),
)
def test_any_request_gets_exactly_one_decision(
    request_cc: str,
    response_cc: str | None,
    later: float,
    authorization: bool,
    method: str,
    hosts: list[str],
    via: str | None,
) -> None:
    fields = [("Cache-Control", request_cc)]
    if authorization:
        fields.append(("Authorization", "Bearer x"))
    stored = None if response_cc is None else copy(response_cc or "max-age=1", auth=authorization)
    request = RequestFacts(
        method, "/x", hosts=tuple(hosts), via=via, policy=describe_request(fields)
    )
    answer = route(request, stored, NOW + later, rules=RULES, via_token=VIA)
    assert isinstance(answer, Refuse | Hit | Stale | Refresh | Revalidate | Miss | Pass)
    if isinstance(answer, Hit | Stale | Refresh | Revalidate):
        assert answer.stored is stored
    if stored is None:
        assert not isinstance(answer, Hit | Stale | Refresh | Revalidate)
    if isinstance(answer, Hit) and not request.policy.authorization and not request_cc:
        assert plain_hit_age(stored.policy, NOW + later) is not None  # type: ignore[union-attr]
