"""RFC 9111 / RFC 5861 decisions of the edge's caching core, without sockets or clocks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.edge.caching import (
    DELTA_SECONDS_MAX,
    Action,
    Storability,
    age_header,
    conditional_headers,
    corrected_initial_age,
    decide,
    describe_request,
    describe_response,
    end_to_end,
    freshness_lifetime,
    merge_not_modified,
    not_modified_matches,
    parse_cache_control,
    stale_on_error_allowed,
    storability,
    variant_matches,
    vary_key,
)
from seedcast.http11.semantics import http_date

NOW = 1_700_000_000.0
DATE = http_date(NOW)


def response(*pairs: tuple[str, str], date: float | None = NOW) -> list[tuple[str, str]]:
    headers = list(pairs)
    if date is not None:
        headers.append(("Date", http_date(date)))
    return headers


# --- Cache-Control parsing -------------------------------------------------


def test_cache_control_directives_are_case_insensitive_with_quoted_values() -> None:
    cc = parse_cache_control(['Max-Age=60, PUBLIC, no-cache="Set-Cookie, X-Foo"', 's-maxage="30"'])
    assert cc.seconds("max-age") == 60
    assert cc.public
    assert cc.directives["no-cache"] == "Set-Cookie, X-Foo"
    assert cc.seconds("s-maxage") == 30


def test_cache_control_conflicting_max_age_is_invalid_and_means_stale() -> None:
    headers = response(("Cache-Control", "max-age=60"), ("Cache-Control", "max-age=10"))
    assert freshness_lifetime(200, headers) == 0


def test_cache_control_invalid_and_huge_delta_seconds() -> None:
    assert freshness_lifetime(200, response(("Cache-Control", "max-age=abc"))) == 0
    assert freshness_lifetime(200, response(("Cache-Control", "max-age=-5"))) == 0
    big = response(("Cache-Control", "max-age=99999999999999999999999"))
    assert freshness_lifetime(200, big) == DELTA_SECONDS_MAX


@given(st.lists(st.text(max_size=60), max_size=5))
def test_cache_control_parser_never_raises(lines: list[str]) -> None:
    cc = parse_cache_control(lines)
    for name in cc.directives:
        assert name == name.lower()
        cc.seconds(name)


# --- storability ------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_headers", "status", "response_headers", "expected"),
    [
        ([], 200, [("Cache-Control", "max-age=60")], Storability.STORE),
        ([], 200, [("Cache-Control", "no-store, max-age=60")], Storability.NO_STORE),
        (
            [("Cache-Control", "no-store")],
            200,
            [("Cache-Control", "max-age=60")],
            Storability.NO_STORE,
        ),
        ([], 200, [("Cache-Control", "private, max-age=60")], Storability.PRIVATE),
        ([], 200, [("Cache-Control", 'private="Set-Cookie"')], Storability.PRIVATE),
        (
            [("Authorization", "Bearer x")],
            200,
            [("Cache-Control", "max-age=60")],
            Storability.AUTHORIZATION,
        ),
        (
            [("Authorization", "Bearer x")],
            200,
            [("Cache-Control", "public, max-age=60")],
            Storability.STORE,
        ),
        (
            [("Authorization", "Bearer x")],
            200,
            [("Cache-Control", "s-maxage=60")],
            Storability.STORE,
        ),
        (
            [("Authorization", "Bearer x")],
            200,
            [("Cache-Control", "must-revalidate, max-age=60")],
            Storability.STORE,
        ),
        ([], 200, [("Cache-Control", "max-age=60"), ("Vary", "*")], Storability.VARY_STAR),
        ([], 200, [("Cache-Control", "max-age=60"), ("Set-Cookie", "a=b")], Storability.SET_COOKIE),
        ([], 206, [("Cache-Control", "max-age=60")], Storability.STATUS),
        ([], 500, [("Cache-Control", "max-age=60")], Storability.STATUS),
        ([], 302, [], Storability.STATUS),
        ([], 302, [("Cache-Control", "max-age=60")], Storability.STORE),
        ([], 200, [], Storability.NOT_USEFUL),
        ([], 200, [("ETag", '"v1"')], Storability.STORE),
        ([], 404, [("Cache-Control", "max-age=5")], Storability.STORE),
    ],
)
def test_storability(
    request_headers: list[tuple[str, str]],
    status: int,
    response_headers: list[tuple[str, str]],
    expected: Storability,
) -> None:
    assert storability("GET", request_headers, status, response(*response_headers)) == expected


def test_only_get_and_head_are_stored() -> None:
    headers = response(("Cache-Control", "max-age=60"))
    assert storability("POST", [], 200, headers) == Storability.METHOD
    assert storability("HEAD", [], 200, headers) == Storability.STORE


# --- freshness lifetime -----------------------------------------------------


def test_s_maxage_wins_over_max_age_and_expires() -> None:
    headers = response(
        ("Cache-Control", "max-age=10, s-maxage=100"),
        ("Expires", http_date(NOW + 1000)),
    )
    assert freshness_lifetime(200, headers) == 100


def test_max_age_wins_over_expires() -> None:
    headers = response(("Cache-Control", "max-age=10"), ("Expires", http_date(NOW + 1000)))
    assert freshness_lifetime(200, headers) == 10


def test_expires_minus_date() -> None:
    assert freshness_lifetime(200, response(("Expires", http_date(NOW + 300)))) == 300
    assert freshness_lifetime(200, response(("Expires", http_date(NOW - 300)))) == 0
    assert freshness_lifetime(200, response(("Expires", "0"))) == 0
    assert freshness_lifetime(200, response(("Expires", http_date(NOW + 9)), date=None)) == 0


def test_heuristic_freshness_is_a_tenth_of_the_last_modified_age_capped() -> None:
    headers = response(("Last-Modified", http_date(NOW - 1000)))
    assert freshness_lifetime(200, headers) == pytest.approx(100)
    old = response(("Last-Modified", http_date(NOW - 10**8)))
    assert freshness_lifetime(200, old) == 24 * 3600
    assert freshness_lifetime(302, headers) == 0
    assert freshness_lifetime(200, [*headers, ("Cache-Control", "no-cache")]) == 0


# --- age --------------------------------------------------------------------


def test_age_calculation_follows_rfc9111_4_2_3() -> None:
    # Upstream says Age 5; the response took 2 s to arrive; its Date is 3 s old.
    headers = response(("Age", "5"), date=NOW - 3)
    initial = corrected_initial_age(headers, request_time=NOW - 2, response_time=NOW)
    assert initial == 7  # max(apparent 3, 5 + 2)
    policy = describe_response(
        200,
        [*headers, ("Cache-Control", "max-age=60")],
        request_time=NOW - 2,
        response_time=NOW,
    )
    assert policy.current_age(NOW + 10) == 17
    assert age_header(policy, NOW + 10.9) == "17"


def test_age_ignores_clock_skew_into_the_future_and_bad_age() -> None:
    headers = response(("Age", "bogus"), date=NOW + 100)
    assert corrected_initial_age(headers, request_time=NOW, response_time=NOW) == 0


# --- decisions --------------------------------------------------------------


def stored(*pairs: tuple[str, str], request_headers: list[tuple[str, str]] | None = None):  # type: ignore[no-untyped-def]
    return describe_response(
        200,
        response(*pairs),
        request_time=NOW,
        response_time=NOW,
        request_headers=request_headers or [],
    )


def test_fresh_then_stale_then_revalidate() -> None:
    policy = stored(("Cache-Control", "max-age=10"))
    plain = describe_request([])
    assert decide(policy, plain, NOW + 9) == Action.SERVE
    assert decide(policy, plain, NOW + 10) == Action.REVALIDATE


def test_stale_while_revalidate_window() -> None:
    policy = stored(("Cache-Control", "max-age=10, stale-while-revalidate=5"))
    plain = describe_request([])
    assert decide(policy, plain, NOW + 12) == Action.SERVE_STALE_AND_REFRESH
    assert decide(policy, plain, NOW + 16) == Action.REVALIDATE


def test_must_revalidate_forbids_stale_serving() -> None:
    policy = stored(("Cache-Control", "max-age=10, stale-while-revalidate=5, must-revalidate"))
    assert decide(policy, describe_request([]), NOW + 12) == Action.REVALIDATE
    assert not stale_on_error_allowed(policy, NOW + 12, default_window=60)
    assert stale_on_error_allowed(policy, NOW + 5, default_window=60)  # still fresh


def test_request_directives() -> None:
    policy = stored(("Cache-Control", "max-age=100"))
    assert (
        decide(policy, describe_request([("Cache-Control", "no-cache")]), NOW) == Action.REVALIDATE
    )
    assert decide(policy, describe_request([("Pragma", "no-cache")]), NOW) == Action.REVALIDATE
    assert (
        decide(policy, describe_request([("Cache-Control", "max-age=5")]), NOW + 6)
        == Action.REVALIDATE
    )
    assert (
        decide(policy, describe_request([("Cache-Control", "max-age=5")]), NOW + 4) == Action.SERVE
    )
    assert (
        decide(policy, describe_request([("Cache-Control", "min-fresh=50")]), NOW + 60)
        == Action.REVALIDATE
    )
    assert (
        decide(policy, describe_request([("Cache-Control", "max-stale=20")]), NOW + 110)
        == Action.SERVE_STALE
    )
    assert (
        decide(policy, describe_request([("Cache-Control", "max-stale")]), NOW + 10**6)
        == Action.SERVE_STALE
    )
    assert describe_request([("Cache-Control", "only-if-cached")]).only_if_cached


def test_response_no_cache_always_revalidates() -> None:
    policy = stored(("Cache-Control", "no-cache, max-age=100"), ("ETag", '"a"'))
    assert decide(policy, describe_request([]), NOW) == Action.REVALIDATE


def test_authorization_with_must_revalidate_revalidates_every_time() -> None:
    policy = stored(
        ("Cache-Control", "must-revalidate, max-age=100"),
        request_headers=[("Authorization", "Bearer x")],
    )
    assert decide(policy, describe_request([]), NOW) == Action.REVALIDATE


def test_stale_if_error_windows() -> None:
    explicit = stored(("Cache-Control", "max-age=10, stale-if-error=30"))
    assert stale_on_error_allowed(explicit, NOW + 39, default_window=0)
    assert not stale_on_error_allowed(explicit, NOW + 41, default_window=1000)
    configured = stored(("Cache-Control", "max-age=10"))
    assert stale_on_error_allowed(configured, NOW + 69, default_window=60)
    assert not stale_on_error_allowed(configured, NOW + 71, default_window=60)
    # An explicit stale-if-error applies even with s-maxage (RFC 5861 4).
    shared = stored(("Cache-Control", "s-maxage=10, stale-if-error=30"))
    assert stale_on_error_allowed(shared, NOW + 30, default_window=0)


# --- validation -------------------------------------------------------------


def test_conditional_headers_use_both_validators() -> None:
    policy = stored(("ETag", '"v1"'), ("Last-Modified", http_date(NOW - 100)))
    assert conditional_headers(policy) == [
        ("If-None-Match", '"v1"'),
        ("If-Modified-Since", http_date(NOW - 100)),
    ]


def test_304_merges_headers_but_not_framing() -> None:
    old = [
        ("Content-Type", "video/mp4"),
        ("Content-Length", "100"),
        ("Cache-Control", "max-age=10"),
        ("ETag", '"v1"'),
        ("X-Old", "kept"),
    ]
    new = [
        ("Cache-Control", "max-age=20"),
        ("ETag", '"v1"'),
        ("Content-Length", "0"),
        ("Connection", "keep-alive"),
        ("X-New", "added"),
    ]
    merged = dict(merge_not_modified(old, new))
    assert merged["Cache-Control"] == "max-age=20"
    assert merged["Content-Length"] == "100"
    assert merged["X-Old"] == "kept"
    assert merged["X-New"] == "added"
    assert "Connection" not in merged


def test_304_for_another_representation_does_not_apply() -> None:
    policy = stored(("ETag", '"v1"'), ("Cache-Control", "max-age=1"))
    assert not not_modified_matches(policy, [("ETag", '"v2"')])
    assert not_modified_matches(policy, [("ETag", 'W/"v1"')])
    assert not_modified_matches(policy, [])


# --- Vary and hop-by-hop ----------------------------------------------------


def test_vary_key_normalises_whitespace_and_case_of_names() -> None:
    names = ("accept-encoding", "accept-language")
    key = vary_key(names, [("Accept-Encoding", "gzip,  br"), ("ACCEPT-LANGUAGE", "en")])
    assert key == ("gzip,br", "en")
    assert variant_matches(names, key, [("accept-encoding", "gzip, br"), ("accept-language", "en")])
    assert not variant_matches(names, key, [("accept-encoding", "identity")])
    policy = stored(("Vary", "Accept-Encoding, accept-language"), ("Cache-Control", "max-age=1"))
    assert policy.vary == names


def test_end_to_end_drops_hop_by_hop_and_connection_named_fields() -> None:
    headers = [
        ("Connection", "close, X-Secret"),
        ("X-Secret", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Type", "text/plain"),
    ]
    assert end_to_end(headers) == [("Content-Type", "text/plain")]


header_names = st.sampled_from(
    ["Cache-Control", "Expires", "Date", "Age", "ETag", "Last-Modified", "Vary", "Set-Cookie",
     "Pragma", "Authorization", "X-Other"]
)  # fmt: skip
header_lists = st.lists(st.tuples(header_names, st.text(max_size=40)), max_size=8)


@given(header_lists, header_lists, st.integers(min_value=100, max_value=599), st.floats(0, 1e6))
def test_any_upstream_headers_give_a_decision_never_an_exception(
    request_headers: list[tuple[str, str]],
    response_headers: list[tuple[str, str]],
    status: int,
    later: float,
) -> None:
    storability("GET", request_headers, status, response_headers)
    policy = describe_response(
        status,
        response_headers,
        request_time=NOW,
        response_time=NOW,
        request_headers=request_headers,
    )
    assert policy.freshness_lifetime >= 0
    assert policy.initial_age >= 0
    decide(policy, describe_request(request_headers), NOW + later)
    stale_on_error_allowed(policy, NOW + later, default_window=60)
    int(age_header(policy, NOW + later))
    merge_not_modified(response_headers, request_headers)
