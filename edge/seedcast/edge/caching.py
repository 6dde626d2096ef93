"""HTTP caching decisions for a shared cache (RFC 9111, RFC 5861), as pure functions.

How it works: nothing here does I/O or reads a clock. Headers come in as
``(name, value)`` pairs, times as ``now``/``request_time``/``response_time``
floats (seconds since the epoch, the same clock that produced ``Date``).

* :func:`parse_cache_control` turns ``Cache-Control`` field lines into a
  :class:`CacheControl` (directive names are case-insensitive, values may be
  tokens or quoted strings, unknown directives are kept and ignored).
* :func:`storability` answers "may a shared cache store this response?"
  (RFC 9111 section 3: method, status, ``no-store``, ``private``,
  ``Authorization``, ``Vary: *``, explicit or heuristic freshness).
* :func:`describe_response` computes once, when a response is stored or
  refreshed, everything later lookups need: the freshness lifetime (section
  4.2.1: ``s-maxage``, then ``max-age``, then ``Expires - Date``, then 10% of
  ``Date - Last-Modified``), the corrected initial age (section 4.2.3), the
  validators, the ``Vary`` field names and the RFC 5861 windows.
* :func:`decide` is the per-request lookup decision: serve fresh, serve stale
  while revalidating in the background, or revalidate first. It takes the
  request's own directives (``no-cache``, ``max-age``, ``max-stale``,
  ``min-fresh``) into account.
* :func:`stale_on_error_allowed` says whether a stale copy may stand in for an
  upstream error (``stale-if-error`` from the response, else the edge's
  configured window, unless ``must-revalidate``/``proxy-revalidate``/
  ``s-maxage``/``no-cache`` forbid serving stale).
* :func:`conditional_headers` builds the revalidation request's
  ``If-None-Match``/``If-Modified-Since``; :func:`merge_not_modified` folds a
  304's headers into the stored ones (section 4.3.4).
* :func:`vary_key` / :func:`variant_matches` implement secondary keys (4.1).

Conditional requests and ranges from viewers are answered with the rules of
:mod:`seedcast.http11.semantics` (the origin uses the same).

Rules Seedcast chooses where the RFC leaves room: ``private`` with or without
field names is never stored; responses that set cookies are stored only when
they say ``public`` or ``s-maxage``; partial (206) responses are never stored
(the edge always fetches whole objects); a stored response without freshness
and without validators is pointless and not stored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from seedcast.http11.semantics import parse_http_date, weak_match

HeaderPairs = Sequence[tuple[str, str]]

#: RFC 9111 1.2.2: delta-seconds beyond this are treated as this ("infinity").
DELTA_SECONDS_MAX = 2**31

#: Statuses a cache may store without explicit freshness (RFC 9110 15.1
#: "heuristically cacheable"), and the ones this cache stores at all.
HEURISTIC_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
STORABLE_STATUSES = HEURISTIC_STATUSES | {302, 303, 307}

HEURISTIC_FRACTION = 0.1
HEURISTIC_MAX = 24 * 3600.0

#: Hop-by-hop fields (RFC 9110 7.6.1) never stored nor forwarded, plus
#: per-message framing the server computes itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)

#: Fields a 304 must not overwrite in the stored response (RFC 9111 3.2).
_NOT_UPDATED_BY_304 = frozenset({"content-length", "content-encoding", "content-range"})


def header_values(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    """All values of field ``name`` (case-insensitive), in order."""
    name = name.lower()
    return [value for key, value in headers if key.lower() == name]


def header_value(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """The field's values joined with ", " (RFC 9110 5.3), or None when absent."""
    values = header_values(headers, name)
    return ", ".join(values) if values else None


# ---------------------------------------------------------------------------
# Cache-Control


@dataclass(frozen=True, slots=True)
class CacheControl:
    """Parsed ``Cache-Control`` directives; a directive's value is None when it has none."""

    directives: Mapping[str, str | None] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name in self.directives

    def seconds(self, name: str, *, invalid: int | None = None) -> int | None:
        """The directive's delta-seconds; ``invalid`` when present but malformed."""
        if name not in self.directives:
            return None
        return parse_delta_seconds(self.directives[name], invalid=invalid)

    @property
    def no_store(self) -> bool:
        return "no-store" in self.directives

    @property
    def no_cache(self) -> bool:
        return "no-cache" in self.directives

    @property
    def private(self) -> bool:
        return "private" in self.directives

    @property
    def public(self) -> bool:
        return "public" in self.directives

    @property
    def forbids_stale(self) -> bool:
        """``must-revalidate``, ``proxy-revalidate`` or ``s-maxage`` (shared cache)."""
        return any(
            name in self.directives for name in ("must-revalidate", "proxy-revalidate", "s-maxage")
        )


def parse_delta_seconds(value: str | None, *, invalid: int | None = None) -> int | None:
    """``"120"`` -> 120; huge values clamp to :data:`DELTA_SECONDS_MAX`."""
    if value is None or not value.isascii() or not value.isdigit():
        return invalid
    if len(value) > 10:
        return DELTA_SECONDS_MAX
    return min(int(value), DELTA_SECONDS_MAX)


def _split_list(text: str) -> list[str]:
    """Split a comma-separated field value, honouring quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif quoted and char == "\\":
            current.append(char)
            escaped = True
        elif char == '"':
            current.append(char)
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        out: list[str] = []
        escaped = False
        for char in inner:
            if escaped:
                out.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            else:
                out.append(char)
        return "".join(out)
    return value


def parse_cache_control(values: Iterable[str]) -> CacheControl:
    """Parse every ``Cache-Control`` field line; never raises.

    The first occurrence of a directive wins, except that a later conflicting
    ``max-age``/``s-maxage`` makes the value invalid (RFC 9111 4.2.1 asks to
    treat such responses as stale).
    """
    directives: dict[str, str | None] = {}
    for line in values:
        for item in _split_list(line):
            name, sep, raw = item.partition("=")
            name = name.strip().lower()
            if not name:
                continue
            value = _unquote(raw.strip()) if sep else None
            if name in directives:
                if name in ("max-age", "s-maxage") and directives[name] != value:
                    directives[name] = "invalid"
                continue
            directives[name] = value
    return CacheControl(directives)


def cache_control_of(headers: HeaderPairs) -> CacheControl:
    return parse_cache_control(header_values(headers, "cache-control"))


# ---------------------------------------------------------------------------
# Storability


class Storability(IntEnum):
    STORE = 0
    METHOD = 1
    STATUS = 2
    NO_STORE = 3
    PRIVATE = 4
    AUTHORIZATION = 5
    VARY_STAR = 6
    SET_COOKIE = 7
    NOT_USEFUL = 8
    """Neither fresh for any time nor revalidatable: storing it gains nothing."""


def storability(
    method: str,
    request_headers: HeaderPairs,
    status: int,
    response_headers: HeaderPairs,
) -> Storability:
    """May a shared cache store this response (RFC 9111 section 3)?"""
    if method not in ("GET", "HEAD"):
        return Storability.METHOD
    if status not in STORABLE_STATUSES:
        return Storability.STATUS
    response_cc = cache_control_of(response_headers)
    request_cc = cache_control_of(request_headers)
    if response_cc.no_store or request_cc.no_store:
        return Storability.NO_STORE
    if response_cc.private:
        return Storability.PRIVATE
    explicitly_shared = response_cc.public or "s-maxage" in response_cc
    if header_values(request_headers, "authorization") and not (
        explicitly_shared or "must-revalidate" in response_cc
    ):
        return Storability.AUTHORIZATION
    if any(name == "*" for name in vary_names(response_headers)):
        return Storability.VARY_STAR
    if header_values(response_headers, "set-cookie") and not explicitly_shared:
        return Storability.SET_COOKIE
    has_explicit = (
        "s-maxage" in response_cc
        or "max-age" in response_cc
        or header_values(response_headers, "expires")
        or response_cc.public
    )
    if not has_explicit and status not in HEURISTIC_STATUSES:
        return Storability.STATUS
    has_validator = bool(
        header_values(response_headers, "etag") or header_values(response_headers, "last-modified")
    )
    if not has_validator and freshness_lifetime(status, response_headers) <= 0:
        sie = response_cc.seconds("stale-if-error")
        if not sie:
            return Storability.NOT_USEFUL
    return Storability.STORE


# ---------------------------------------------------------------------------
# Freshness and age


def freshness_lifetime(
    status: int,
    headers: HeaderPairs,
    *,
    heuristic_fraction: float = HEURISTIC_FRACTION,
    heuristic_max: float = HEURISTIC_MAX,
) -> float:
    """RFC 9111 4.2.1 for a shared cache, in seconds (0 = stale at once)."""
    cc = cache_control_of(headers)
    s_maxage = cc.seconds("s-maxage", invalid=0)
    if s_maxage is not None:
        return float(s_maxage)
    max_age = cc.seconds("max-age", invalid=0)
    if max_age is not None:
        return float(max_age)
    date = parse_http_date(header_value(headers, "date"))
    expires_values = header_values(headers, "expires")
    if expires_values:
        expires = parse_http_date(expires_values[0])
        if expires is None or date is None:
            # An invalid Expires (e.g. "0") means "already expired"; without
            # Date the difference can't be computed, so treat it the same way.
            return 0.0
        return max(0.0, expires - date)
    if cc.no_cache:
        return 0.0
    last_modified = parse_http_date(header_value(headers, "last-modified"))
    if last_modified is not None and date is not None and status in HEURISTIC_STATUSES:
        return min(heuristic_max, max(0.0, (date - last_modified) * heuristic_fraction))
    return 0.0


def corrected_initial_age(headers: HeaderPairs, request_time: float, response_time: float) -> float:
    """RFC 9111 4.2.3: the age of the response when it arrived."""
    age_value = parse_delta_seconds((header_value(headers, "age") or "").split(",")[0].strip())
    date = parse_http_date(header_value(headers, "date"))
    apparent_age = max(0.0, response_time - date) if date is not None else 0.0
    response_delay = max(0.0, response_time - request_time)
    corrected_age_value = (age_value or 0) + response_delay
    return max(apparent_age, corrected_age_value)


def vary_names(headers: HeaderPairs) -> tuple[str, ...]:
    """Lower-cased field names listed in ``Vary`` (``*`` kept as is)."""
    names: list[str] = []
    for line in header_values(headers, "vary"):
        for item in line.split(","):
            item = item.strip().lower()
            if item and item not in names:
                names.append(item)
    return tuple(names)


def _normalise(value: str | None) -> str:
    if value is None:
        return ""
    return ",".join(part.strip() for part in value.split(","))


def vary_key(names: Sequence[str], request_headers: HeaderPairs) -> tuple[str, ...]:
    """The request's values of the ``Vary`` fields, normalised (RFC 9111 4.1)."""
    return tuple(_normalise(header_value(request_headers, name)) for name in names)


def variant_matches(
    names: Sequence[str], stored_key: Sequence[str], request_headers: HeaderPairs
) -> bool:
    return tuple(stored_key) == vary_key(names, request_headers)


@dataclass(frozen=True, slots=True)
class ResponsePolicy:
    """What a lookup needs about one stored response; computed when stored or refreshed."""

    status: int
    freshness_lifetime: float
    initial_age: float
    response_time: float
    etag: str | None = None
    last_modified: str | None = None
    vary: tuple[str, ...] = ()
    stale_while_revalidate: float = 0.0
    stale_if_error: float | None = None
    """From the response's directive; None = use the edge's configured window."""
    forbids_stale: bool = False
    no_cache: bool = False
    requires_revalidation_with_auth: bool = False
    """Stored for an Authorization request under ``must-revalidate`` only."""
    serves_authorized: bool = False
    """``public``, ``s-maxage`` or ``must-revalidate``: may answer requests with Authorization."""

    def current_age(self, now: float) -> float:
        return self.initial_age + max(0.0, now - self.response_time)

    def staleness(self, now: float) -> float:
        """Seconds past the freshness lifetime (negative while fresh)."""
        return self.current_age(now) - self.freshness_lifetime

    def is_fresh(self, now: float) -> bool:
        return self.current_age(now) < self.freshness_lifetime


def describe_response(
    status: int,
    headers: HeaderPairs,
    *,
    request_time: float,
    response_time: float,
    request_headers: HeaderPairs = (),
) -> ResponsePolicy:
    cc = cache_control_of(headers)
    swr = cc.seconds("stale-while-revalidate") or 0
    sie = cc.seconds("stale-if-error")
    authorised = bool(header_values(request_headers, "authorization"))
    return ResponsePolicy(
        status=status,
        freshness_lifetime=freshness_lifetime(status, headers),
        initial_age=corrected_initial_age(headers, request_time, response_time),
        response_time=response_time,
        etag=header_value(headers, "etag"),
        last_modified=header_value(headers, "last-modified"),
        vary=vary_names(headers),
        stale_while_revalidate=float(swr),
        stale_if_error=float(sie) if sie is not None else None,
        forbids_stale=cc.forbids_stale or cc.no_cache,
        no_cache=cc.no_cache,
        requires_revalidation_with_auth=authorised
        and not (cc.public or "s-maxage" in cc)
        and "must-revalidate" in cc,
        serves_authorized=cc.public or "s-maxage" in cc or "must-revalidate" in cc,
    )


def age_header(policy: ResponsePolicy, now: float) -> str:
    """The ``Age`` value: whole seconds, clamped to :data:`DELTA_SECONDS_MAX`."""
    age = policy.current_age(now)
    if not math.isfinite(age):
        return str(DELTA_SECONDS_MAX)
    return str(min(DELTA_SECONDS_MAX, max(0, int(age))))


# ---------------------------------------------------------------------------
# Requests


@dataclass(frozen=True, slots=True)
class RequestPolicy:
    """A viewer request's caching-relevant parts."""

    no_cache: bool = False
    no_store: bool = False
    only_if_cached: bool = False
    max_age: int | None = None
    max_stale: int | None = None
    """None = absent; DELTA_SECONDS_MAX for a bare ``max-stale`` (any staleness)."""
    min_fresh: int | None = None
    authorization: bool = False

    @property
    def bypasses_cache(self) -> bool:
        return self.no_store


DEFAULT_REQUEST = RequestPolicy()


def describe_request(headers: HeaderPairs) -> RequestPolicy:
    cache_control_lines = header_values(headers, "cache-control")
    authorization = bool(header_values(headers, "authorization"))
    if not cache_control_lines:
        pragma = header_value(headers, "pragma")
        no_cache = pragma is not None and "no-cache" in pragma.lower()
        if not no_cache and not authorization:
            return DEFAULT_REQUEST
        return RequestPolicy(no_cache=no_cache, authorization=authorization)
    cc = parse_cache_control(cache_control_lines)
    max_stale: int | None = None
    if "max-stale" in cc:
        value = cc.directives["max-stale"]
        max_stale = DELTA_SECONDS_MAX if value is None else parse_delta_seconds(value)
    return RequestPolicy(
        no_cache=cc.no_cache,
        no_store=cc.no_store,
        only_if_cached="only-if-cached" in cc,
        max_age=cc.seconds("max-age", invalid=0),
        max_stale=max_stale,
        min_fresh=cc.seconds("min-fresh"),
        authorization=authorization,
    )


class Action(IntEnum):
    SERVE = 0
    """Fresh enough: answer from the cache (X-Cache: HIT)."""
    SERVE_STALE_AND_REFRESH = 1
    """Within stale-while-revalidate: answer stale now, refresh in the background."""
    SERVE_STALE = 2
    """The client accepts this much staleness (max-stale): answer stale, no refresh."""
    REVALIDATE = 3
    """Ask upstream with a conditional request before answering."""


def decide(policy: ResponsePolicy, request: RequestPolicy, now: float) -> Action:
    """What to do with a stored response for this request (RFC 9111 4, RFC 5861 3)."""
    if request.no_cache or policy.no_cache or policy.requires_revalidation_with_auth:
        return Action.REVALIDATE
    age = policy.current_age(now)
    lifetime = policy.freshness_lifetime
    if request.max_age is not None and age > request.max_age:
        return Action.REVALIDATE
    if request.min_fresh is not None and age + request.min_fresh >= lifetime:
        return Action.REVALIDATE
    if age < lifetime:
        return Action.SERVE
    if policy.forbids_stale:
        return Action.REVALIDATE
    staleness = age - lifetime
    if request.max_stale is not None and staleness <= request.max_stale:
        return Action.SERVE_STALE
    if staleness < policy.stale_while_revalidate:
        return Action.SERVE_STALE_AND_REFRESH
    return Action.REVALIDATE


def stale_on_error_allowed(policy: ResponsePolicy, now: float, *, default_window: float) -> bool:
    """May this stale response replace an upstream failure or 5xx (RFC 5861 4)?

    A ``stale-if-error`` directive on the response applies as written; without
    one, the edge's ``default_window`` applies unless the response forbids
    serving stale (must-revalidate, proxy-revalidate, s-maxage, no-cache).
    """
    staleness = policy.staleness(now)
    if staleness < 0:
        return True
    if policy.stale_if_error is not None:
        return staleness <= policy.stale_if_error
    if policy.forbids_stale:
        return False
    return staleness <= default_window


# ---------------------------------------------------------------------------
# Validation


def conditional_headers(policy: ResponsePolicy) -> list[tuple[str, str]]:
    """``If-None-Match`` / ``If-Modified-Since`` for revalidating ``policy``'s response."""
    headers: list[tuple[str, str]] = []
    if policy.etag:
        headers.append(("If-None-Match", policy.etag))
    if policy.last_modified:
        headers.append(("If-Modified-Since", policy.last_modified))
    return headers


def not_modified_matches(policy: ResponsePolicy, response_headers: HeaderPairs) -> bool:
    """Does a 304 apply to the stored response we revalidated (RFC 9111 4.3.4)?"""
    new_etag = header_value(response_headers, "etag")
    if new_etag is not None and policy.etag is not None:
        return weak_match(new_etag, policy.etag)
    if new_etag is not None and policy.etag is None:
        return False
    new_modified = header_value(response_headers, "last-modified")
    if new_modified is not None and policy.last_modified is not None:
        return new_modified == policy.last_modified
    return True


def merge_not_modified(
    stored: HeaderPairs, not_modified: HeaderPairs
) -> tuple[tuple[str, str], ...]:
    """The stored headers updated with a 304's (RFC 9111 3.2 and 4.3.4)."""
    replaced = {
        name.lower()
        for name, _ in not_modified
        if name.lower() not in _NOT_UPDATED_BY_304 and name.lower() not in HOP_BY_HOP
    }
    merged = [(name, value) for name, value in stored if name.lower() not in replaced]
    merged.extend((name, value) for name, value in not_modified if name.lower() in replaced)
    return tuple(merged)


def end_to_end(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop hop-by-hop fields, including those named in ``Connection``."""
    pairs = list(headers)
    named = {
        item.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for item in value.split(",")
    }
    return [
        (name, value)
        for name, value in pairs
        if name.lower() not in HOP_BY_HOP and name.lower() not in named
    ]
