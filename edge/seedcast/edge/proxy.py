"""The edge's trio shell: a caching reverse proxy in front of one upstream.

How a request flows (:meth:`Edge.handle`):

1. :func:`~seedcast.edge.guard.check_request` refuses anything that would
   make the edge an open proxy (foreign ``Host``, absolute-form targets for
   other hosts, methods other than GET/HEAD). ``/healthz`` and the admin purge
   are answered locally.
2. The :class:`~seedcast.edge.store.CacheStore` is asked for a stored variant;
   :func:`~seedcast.edge.caching.decide` says serve it (HIT), serve it stale
   while a background refresh runs (STALE), or revalidate first.
3. Misses and revalidations go through a :class:`Fill`: one upstream fetch per
   cache key at a time (request coalescing). The first request starts it in
   the edge's own nursery (so a viewer hanging up doesn't cancel it for the
   others); every request for the same key waits for the response head, then
   streams the body out of the fill's chunk list as bytes arrive
   (read-while-write), from any offset (ranges). The fill stores the body in
   the tiers as it goes and commits it when complete.
4. If upstream fails (connect error, timeout, 5xx) and the stored copy is
   within its stale-if-error window, the viewer gets the stale copy (STALE);
   otherwise a one-line 502 or 504. Timeouts bound every upstream step, so
   no viewer ever waits forever.

Responses carry ``X-Cache`` (HIT, MISS, REVALIDATED, STALE), ``X-Served-By``
and, when served from the cache, ``Age``. Waiters only share a response that
may be shared: a non-storable response (private, no-store, Set-Cookie...) or a
different ``Vary`` variant sends each waiter upstream on its own.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any
from urllib.parse import urlsplit

import trio
from seedcast.edge.caching import (
    DEFAULT_REQUEST,
    DELTA_SECONDS_MAX,
    Action,
    HeaderPairs,
    Storability,
    age_header,
    conditional_headers,
    decide,
    describe_request,
    end_to_end,
    format_http_date,
    header_value,
    if_range_matches,
    merge_not_modified,
    not_modified_for,
    not_modified_matches,
    stale_on_error_allowed,
    storability,
    variant_matches,
    vary_key,
    vary_names,
)
from seedcast.edge.guard import HostRules, check_request
from seedcast.edge.ranges import parse_range, resolve
from seedcast.edge.segments import next_segment_target
from seedcast.edge.statistics import (
    CacheResult,
    EdgeCounters,
    metric_families,
)
from seedcast.edge.store import CachedObject, CacheStore, FillSlot, object_key
from seedcast.errors import (
    ConfigError,
    ConnectError,
    ReadTimeout,
    RemoteProtocolError,
    TransportError,
)
from seedcast.http11 import FileBody, Headers, HttpClient, Request, Response
from seedcast.ratelimit import TokenBucket
from seedcast.rates import RateMeter
from seedcast.units import KiB, MiB

log = logging.getLogger("seedcast.edge")

PURGE_PATH = "/_seedcast/purge"
HEALTH_PATH = "/healthz"
STREAM_CHUNK = 64 * KiB
PREFETCH_RETRY_SECONDS = 10.0
LOAD_BYTES_UNIT = float(MiB)
PREFETCH_FAILURES_KEPT = 1024

#: Request fields never sent upstream: hop-by-hop, framing, and the ones the
#: edge answers itself (conditionals and ranges apply to the viewer's copy).
_NOT_FORWARDED = frozenset(
    {
        "host",
        "content-length",
        "expect",
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
        "range",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
    }
)
#: Request fields that make a request more than a plain GET for the cache.
_CACHING_FIELDS = frozenset(
    {
        "cache-control",
        "pragma",
        "authorization",
        "range",
        "if-none-match",
        "if-modified-since",
        "if-range",
    }
)
#: Response fields the edge computes per response instead of storing them.
#: (A stored ``Age`` is kept for the age calculation but never served as is.)
_NOT_STORED = frozenset({"content-length", "x-cache", "x-served-by", "content-range"})


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    name: str
    upstream: str
    """Base URL of the origin or parent edge, e.g. ``http://127.0.10.1:8080``."""
    upstream_timeout: float = 5.0
    stale_if_error: float = 60.0
    prefetch_next: bool = False
    admin_token: str = ""
    upload: float = 0.0
    hosts: HostRules = field(default_factory=lambda: HostRules(frozenset()))
    max_connections_per_upstream: int = 64

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(
                f"edge upstream {self.upstream!r}: expected http://HOST:PORT (no TLS upstream)"
            )
        if parts.path not in ("", "/") or parts.query:
            raise ConfigError(f"edge upstream {self.upstream!r}: give only scheme, host and port")

    @property
    def upstream_base(self) -> str:
        return self.upstream.rstrip("/")


class FillState(IntEnum):
    PENDING = 0
    RESPONSE = 1
    """A response head arrived; its body is (being) streamed into ``chunks``."""
    NOT_MODIFIED = 2
    """Upstream confirmed the stored copy (304); it has been refreshed."""
    FAILED = 3
    """No usable response: ``error_status`` (502/504) and ``error_message`` say why."""


class BodyInterrupted(ConnectionAbortedError):
    """Upstream broke off mid-body; the viewer's connection is aborted (never wrong bytes).

    A ConnectionAbortedError so the HTTP server counts it as an aborted response.
    """


class Fill:
    """One upstream fetch and the viewers waiting on it."""

    def __init__(
        self,
        key: str,
        primary: str,
        request_headers: list[tuple[str, str]],
        *,
        revalidating: CachedObject | None = None,
        shared: bool = True,
        prefetch: bool = False,
    ) -> None:
        self.key = key
        self.primary = primary
        self.request_headers = request_headers
        self.revalidating = revalidating
        self.shared = shared
        self.prefetch = prefetch
        self.state = FillState.PENDING
        self.head_ready = trio.Event()
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.content_length: int | None = None
        self.shareable = False
        self.error_status = 502
        self.error_message = ""
        self.chunks: list[bytes] = []
        self.lengths: list[int] = []
        self.single_reader = False
        self.received = 0
        self.done = False
        self.interrupted = False
        self.no_store = False
        self.stored: CachedObject | None = None
        self.waiters = 0
        self.policy_for_age: Any = None
        self._changed = trio.Event()

    # -- producer side -------------------------------------------------------------
    def publish_head(self, state: FillState) -> None:
        self.state = state
        self.head_ready.set()

    def fail(self, status: int, message: str) -> None:
        if self.done:
            return
        self.error_status = status
        self.error_message = message
        self.done = True
        if self.state == FillState.PENDING:
            self.state = FillState.FAILED
            self.head_ready.set()
        else:
            self.interrupted = True
        self._wake()

    def append(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.lengths.append(len(chunk))
        self.received += len(chunk)
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- consumer side -------------------------------------------------------------
    async def stream(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The body bytes ``[start, end)`` as they arrive; raises BodyInterrupted on failure.

        A fill with a single reader (``single_reader``: nothing stores or shares
        it) drops each chunk once read, so a pass-through body is never held whole.
        """
        position = start
        index = 0
        chunk_start = 0
        chunks = self.chunks
        lengths = self.lengths
        while end is None or position < end:
            if index < len(lengths):
                chunk_end = chunk_start + lengths[index]
                if position >= chunk_end:
                    index += 1
                    chunk_start = chunk_end
                    continue
                chunk = chunks[index]
                stop = chunk_end if end is None else min(chunk_end, end)
                if position == chunk_start and stop == chunk_end:
                    yield chunk
                else:
                    yield chunk[position - chunk_start : stop - chunk_start]
                position = stop
                if self.single_reader and stop == chunk_end:
                    chunks[index] = b""
                continue
            if self.interrupted:
                raise BodyInterrupted(f"upstream broke off after {self.received} bytes")
            if self.done:
                if end is not None and position < end:
                    raise BodyInterrupted("upstream body shorter than announced")
                return
            await self._changed.wait()

    async def wait_done(self) -> None:
        """Wait until the fetch has ended (completed or failed)."""
        while not self.done:
            await self._changed.wait()

    def body(self) -> bytes:
        return b"".join(self.chunks)


class Edge:
    """The edge's state and request handler; :func:`seedcast.edge.server.serve` runs it."""

    def __init__(
        self,
        settings: EdgeSettings,
        store: CacheStore,
        client: HttpClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.clock = clock
        self.counters = EdgeCounters()
        self.fills: dict[str, Fill] = {}
        self.bytes_out = RateMeter(window=5.0, resolution=1.0)
        self.requests_rate = RateMeter(window=5.0, resolution=1.0)
        self.bucket = TokenBucket(settings.upload) if settings.upload > 0 else None
        self.open_connections: Callable[[], int] = lambda: 0
        self.draining = False
        self._nursery: trio.Nursery | None = None
        self._served_by = settings.name
        self._via = f"1.1 {settings.name}"
        self._base = settings.upstream_base
        self._accepted_hosts: set[str] = set()
        self._prefetch_failures: dict[str, float] = {}
        self._last_failure_log = -math.inf

    # -- lifecycle ------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the nursery where fills run; returns when cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def _spawn(self, fill: Fill) -> None:
        if self._nursery is None:
            raise RuntimeError("Edge.run() is not running")
        self._nursery.start_soon(self._run_fill, fill)

    # -- the handler -------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        path = request.path
        if path == HEALTH_PATH:
            return self._health()
        if path == PURGE_PATH:
            return await self._admin_purge(request)
        pairs = request.headers.items()
        # One pass over the request's fields picks out everything the cache needs.
        hosts: list[str] = []
        via: str | None = None
        caching_fields = False
        for name, value in pairs:
            lowered = name.lower()
            if lowered == "host":
                hosts.append(value)
            elif lowered in _CACHING_FIELDS:
                caching_fields = True
            elif lowered == "via":
                via = value
        method = request.method
        target = request.target
        if not (
            len(hosts) == 1
            and hosts[0] in self._accepted_hosts
            and (method == "GET" or method == "HEAD")
            and target[:1] == "/"
        ):
            refusal = check_request(method, target, request.version, hosts, self.settings.hosts)
            if refusal is not None:
                self.counters.refused_requests += 1
                extra = [("Allow", "GET, HEAD")] if refusal.status == 405 else []
                return self._local(refusal.status, refusal.reason, extra)
            if len(hosts) == 1 and len(self._accepted_hosts) < 256:
                self._accepted_hosts.add(hosts[0])
        if via is not None and self._via in via:
            self.counters.refused_requests += 1
            return self._local(508, "request loop: this edge is already in Via")
        now = self.clock()
        self.requests_rate.add(1, now)
        primary = target if target[:1] == "/" else _origin_form(request)
        obj = self.store.lookup(primary, pairs)
        if not caching_fields and obj is not None:
            fast = self._fast_hit(obj, now, method)
            if fast is not None:
                return fast
        policy = describe_request(pairs) if caching_fields else DEFAULT_REQUEST
        if policy.no_store:
            return await self._pass(request, primary, pairs)
        if obj is not None and policy.authorization and not obj.policy.serves_authorized:
            return await self._pass(request, primary, pairs)
        if obj is not None:
            action = decide(obj.policy, policy, now)
            if action == Action.SERVE:
                return self._serve_cached(request, obj, CacheResult.HIT, now, caching_fields)
            if action == Action.SERVE_STALE:
                return self._serve_cached(request, obj, CacheResult.STALE, now, caching_fields)
            if action == Action.SERVE_STALE_AND_REFRESH:
                self._refresh_in_background(obj, pairs)
                return self._serve_cached(request, obj, CacheResult.STALE, now, caching_fields)
            if policy.only_if_cached:
                return self._local(504, "the cached copy needs revalidation (only-if-cached)")
            return await self._revalidate(request, obj, pairs)
        if policy.only_if_cached:
            return self._local(504, "not in this cache (only-if-cached)")
        if policy.authorization:
            return await self._pass(request, primary, pairs)
        return await self._miss(request, primary, pairs)

    # -- cache hits -----------------------------------------------------------------
    def _fast_hit(self, obj: CachedObject, now: float, method: str) -> Response | None:
        """A fresh in-memory copy for a plain GET/HEAD: what ``decide`` would call SERVE.

        This is the hot path of a busy edge, so it skips the general machinery;
        anything unusual (stale, revalidation rules, throttling, prefetch) falls
        through to it.
        """
        policy = obj.policy
        if (
            obj.memory is None
            or self.bucket is not None
            or self.settings.prefetch_next
            or obj.prefetched
            or policy.no_cache
            or policy.requires_revalidation_with_auth
        ):
            return None
        age = policy.initial_age + (
            now - policy.response_time if now > policy.response_time else 0.0
        )
        if age >= policy.freshness_lifetime:
            return None
        counters = self.counters
        counters.requests[CacheResult.HIT] += 1
        length = obj.length if method == "GET" else 0
        counters.bytes_served += length
        counters.bytes_served_from_cache += length
        self.bytes_out.add(length, now)
        age_text = str(min(DELTA_SECONDS_MAX, int(age)))
        return self._cached_response(
            obj, CacheResult.HIT, age_text, self._cached_headers(obj, CacheResult.HIT, age_text)
        )

    def _serve_cached(
        self,
        request: Request,
        obj: CachedObject,
        result: CacheResult,
        now: float,
        caching_fields: bool = True,
    ) -> Response:
        counters = self.counters
        counters.requests[result] += 1
        if obj.prefetched:
            obj.prefetched = False
            counters.prefetch_hits += 1
        age = age_header(obj.policy, now)
        headers = self._cached_headers(obj, result, age)
        if self.settings.prefetch_next and obj.status == 200:
            self._prefetch_after(obj.primary, request.headers.items())
        if caching_fields:
            # Conditionals and ranges (only looked at when the request has such fields).
            request_headers = request.headers
            if (
                "if-none-match" in request_headers or "if-modified-since" in request_headers
            ) and not_modified_for(request_headers.items(), obj.headers, obj.status):
                return Response(304, headers)
            range_value = request_headers.get("range")
            if range_value is not None and obj.status == 200:
                ranged = self._cached_range(request, obj, result, age, range_value)
                if ranged is not None:
                    return ranged
        body: bytes | FileBody
        if obj.memory is not None and self.bucket is None:
            # The common hit: one Response object per (copy, result, age) serves them all.
            self._count_out(obj.length if request.method == "GET" else 0, now, from_cache=True)
            return self._cached_response(obj, result, age, headers)
        if obj.memory is not None:
            body = obj.memory
        elif obj.disk_path is not None:
            body = FileBody(obj.disk_path, 0, obj.length, throttle=self._throttle())
        else:  # pragma: no cover - callers check has_body after every await
            return self._local(503, "the cached copy went away; try again")
        self._count_out(obj.length if request.method == "GET" else 0, now, from_cache=True)
        if self.bucket is not None and isinstance(body, bytes):
            return Response(obj.status, headers, self._throttled(body))
        return Response(obj.status, headers, body)

    def _cached_headers(self, obj: CachedObject, result: CacheResult, age: str) -> Headers:
        """Stored headers + Age, X-Cache, X-Served-By; reused while the age is the same."""
        cache: dict[tuple[Any, ...], Any]
        if isinstance(obj.cached_wire, dict):
            cache = obj.cached_wire
        else:
            cache = {}
            obj.cached_wire = cache
        key = (obj.version, result, age)
        headers = cache.get(key)
        if headers is None:
            if len(cache) > 16:
                cache.clear()
            items = [pair for pair in obj.headers if pair[0].lower() != "age"]
            items.append(("Content-Length", str(obj.length)))
            items.append(("Age", age))
            items.append(("X-Cache", result.value))
            items.append(("X-Served-By", self._served_by))
            headers = Headers(items)
            cache[key] = headers
        return headers

    def _cached_response(
        self, obj: CachedObject, result: CacheResult, age: str, headers: Headers
    ) -> Response:
        cache = obj.cached_wire
        assert isinstance(cache, dict)
        key = (obj.version, result, age, "response")
        response: Response | None = cache.get(key)
        if response is None:
            response = Response(obj.status, headers, obj.memory or b"")
            cache[key] = response
        return response

    def _cached_range(
        self, request: Request, obj: CachedObject, result: CacheResult, age: str, value: str
    ) -> Response | None:
        byte_range = parse_range(value)
        if byte_range is None or not if_range_matches(request.headers.items(), obj.headers):
            return None
        span = resolve(byte_range, obj.length)
        base = [pair for pair in self._cached_headers(obj, result, age).items()
                if pair[0].lower() != "content-length"]  # fmt: skip
        if span is None:
            base.append(("Content-Range", f"bytes */{obj.length}"))
            return Response(416, base, b"")
        base.append(("Content-Range", span.content_range()))
        base.append(("Content-Length", str(span.length)))
        body: bytes | memoryview | FileBody
        if obj.memory is not None:
            body = memoryview(obj.memory)[span.start : span.end]
        elif obj.disk_path is not None:
            body = FileBody(obj.disk_path, span.start, span.length, throttle=self._throttle())
        else:
            return None
        now = self.clock()
        self._count_out(span.length if request.method == "GET" else 0, now, from_cache=True)
        if self.bucket is not None and not isinstance(body, FileBody):
            return Response(206, base, self._throttled(bytes(body)))
        return Response(206, base, body)

    # -- misses, revalidation, pass ---------------------------------------------------
    async def _miss(
        self,
        request: Request,
        primary: str,
        pairs: HeaderPairs,
        key: str | None = None,
        *,
        hops: int = 0,
    ) -> Response:
        if key is None:
            # Coalesce per variant when the stored copies say which fields vary.
            names = self.store.vary_names(primary)
            key = object_key(primary, vary_key(names, pairs)) if names else primary
        fill = self.fills.get(key)
        initiator = fill is None
        if fill is None:
            fill = Fill(key, primary, self._forward_headers(pairs, request))
            self.fills[key] = fill
            self._spawn(fill)
        else:
            self.counters.coalesced_waiters += 1
            if fill.prefetch and fill.waiters == 0:
                self.counters.prefetch_hits += 1  # the prefetch is under way: a head start
        if self.settings.prefetch_next:
            self._prefetch_after(primary, pairs)
        return await self._answer_from_fill(
            request, fill, pairs, initiator=initiator, stale=None, hops=hops
        )

    async def _revalidate(
        self, request: Request, obj: CachedObject, pairs: HeaderPairs
    ) -> Response:
        fill = self.fills.get(obj.key)
        initiator = fill is None
        if fill is None:
            fill = Fill(
                obj.key,
                obj.primary,
                self._forward_headers(pairs, request),
                revalidating=obj,
            )
            self.fills[obj.key] = fill
            self._spawn(fill)
        else:
            self.counters.coalesced_waiters += 1
        return await self._answer_from_fill(request, fill, pairs, initiator=initiator, stale=obj)

    async def _pass(self, request: Request, primary: str, pairs: HeaderPairs) -> Response:
        """Fetch for this viewer alone (Authorization, no-store, unshareable answers)."""
        fill = Fill(
            primary, primary, self._forward_headers(pairs, request, private=True), shared=False
        )
        self._spawn(fill)
        return await self._answer_from_fill(request, fill, pairs, initiator=True, stale=None)

    def _refresh_in_background(self, obj: CachedObject, pairs: HeaderPairs) -> None:
        if obj.key in self.fills or self._nursery is None:
            return
        fill = Fill(obj.key, obj.primary, self._forward_headers(pairs, None), revalidating=obj)
        self.fills[obj.key] = fill
        self.counters.background_refreshes += 1
        self._spawn(fill)

    def _prefetch_after(self, primary: str, pairs: HeaderPairs) -> None:
        """Start fetching segment N+1 when segment N is asked for (``prefetch_next``)."""
        target = next_segment_target(primary)
        if target is None or target in self.fills or target in self.store.variants:
            return
        if self._nursery is None:
            return
        now = self.clock()
        failed_until = self._prefetch_failures.get(target)
        if failed_until is not None:
            if failed_until > now:
                return  # e.g. the segment after the last one: don't ask again and again
            del self._prefetch_failures[target]
        fill = Fill(target, target, self._forward_headers(pairs, None), prefetch=True)
        self.fills[target] = fill
        self.counters.prefetches += 1
        self._spawn(fill)

    async def _answer_from_fill(
        self,
        request: Request,
        fill: Fill,
        pairs: HeaderPairs,
        *,
        initiator: bool,
        stale: CachedObject | None,
        hops: int = 0,
    ) -> Response:
        fill.waiters += 1
        # The fill bounds every upstream step; this is only a safety net.
        with trio.move_on_after(self.settings.upstream_timeout * 2 + 1):
            await fill.head_ready.wait()
        if not fill.head_ready.is_set():
            return self._upstream_error(request, stale, 504, "upstream timed out")
        if fill.state == FillState.FAILED:
            return self._upstream_error(request, stale, fill.error_status, fill.error_message)
        if fill.state == FillState.NOT_MODIFIED:
            target = fill.revalidating
            if target is not None and stale is not None and target is not stale:
                target = (
                    stale if variant_matches(stale.policy.vary, stale.vary_key, pairs) else target
                )
            if target is None:  # pragma: no cover - NOT_MODIFIED always has its object
                return self._local(502, "upstream answered 304 to an unconditional request")
            if not target.has_body or not variant_matches(
                target.policy.vary, target.vary_key, pairs
            ):
                # Evicted meanwhile, or another variant: fetch for this viewer.
                return await self._pass(request, fill.primary, pairs)
            return self._serve_cached(request, target, CacheResult.REVALIDATED, self.clock())
        # A full response.
        if (
            fill.status >= 500
            and stale is not None
            and stale.has_body
            and stale_on_error_allowed(
                stale.policy, self.clock(), default_window=self.settings.stale_if_error
            )
        ):
            return self._serve_cached(request, stale, CacheResult.STALE, self.clock())
        if not initiator:
            if not fill.shareable:
                return await self._pass(request, fill.primary, pairs)
            vary = vary_names(fill.headers)
            if vary and vary_key(vary, pairs) != vary_key(vary, fill.request_headers):
                # Another variant: its own fill, shared with requests like this one
                # (once: an upstream that keeps changing its Vary gets a private fetch).
                if hops > 0:
                    return await self._pass(request, fill.primary, pairs)
                variant = object_key(fill.primary, vary_key(vary, pairs))
                return await self._miss(request, fill.primary, pairs, key=variant, hops=1)
        result = CacheResult.MISS if fill.shared and fill.shareable else CacheResult.PASS
        if fill.status >= 500:
            result = CacheResult.MISS if fill.shared else CacheResult.PASS
        return self._stream_fill(request, fill, result)

    def _stream_fill(self, request: Request, fill: Fill, result: CacheResult) -> Response:
        self.counters.requests[result] += 1
        headers = list(fill.headers)
        headers.append(("X-Cache", result.value))
        headers.append(("X-Served-By", self._served_by))
        status = fill.status
        total = fill.content_length
        if fill.status == 200:
            request_pairs = request.headers.items()
            if (
                "if-none-match" in request.headers or "if-modified-since" in request.headers
            ) and not_modified_for(request_pairs, fill.headers, 200):
                return Response(304, headers)
            range_value = request.headers.get("range")
            if range_value is not None and total is not None:
                byte_range = parse_range(range_value)
                if byte_range is not None and if_range_matches(request_pairs, fill.headers):
                    span = resolve(byte_range, total)
                    if span is None:
                        headers.append(("Content-Range", f"bytes */{total}"))
                        return Response(416, headers, b"")
                    headers.append(("Content-Range", span.content_range()))
                    headers.append(("Content-Length", str(span.length)))
                    length = span.length if request.method == "GET" else 0
                    self._count_out(length, self.clock(), from_cache=False)
                    return Response(
                        206, headers, self._throttled_stream(fill, span.start, span.end)
                    )
        if total is not None:
            headers.append(("Content-Length", str(total)))
        if request.method == "HEAD":
            return Response(status, headers, b"" if total is None else _EmptyStream())
        if total is not None:
            self._count_out(total, self.clock(), from_cache=False)
            return Response(status, headers, self._throttled_stream(fill, 0, total))
        return Response(status, headers, self._counted_stream(fill))

    def _upstream_error(
        self, request: Request, stale: CachedObject | None, status: int, message: str
    ) -> Response:
        if (
            stale is not None
            and stale.has_body
            and stale_on_error_allowed(
                stale.policy, self.clock(), default_window=self.settings.stale_if_error
            )
        ):
            return self._serve_cached(request, stale, CacheResult.STALE, self.clock())
        self.counters.requests[CacheResult.ERROR] += 1
        return self._local(status, message, [("X-Cache", CacheResult.ERROR.value)])

    # -- the upstream fetch -------------------------------------------------------------
    async def _run_fill(self, fill: Fill) -> None:
        try:
            await self._fetch(fill)
            if fill.prefetch and fill.stored is None:
                self._remember_prefetch_failure(fill.primary)
        except Exception as error:  # a bug must not leave waiters hanging
            log.exception("fill failed", extra={"fields": {"target": fill.primary}})
            fill.fail(502, f"edge error: {type(error).__name__}")
        finally:
            if self.fills.get(fill.key) is fill:
                del self.fills[fill.key]
            fill.fail(502, "upstream fetch abandoned")  # no-op unless it ended abnormally

    def _upstream_failed(self, fill: Fill, kind: str, status: int, message: str) -> None:
        """Count, log (at most once a second: a dead origin fails every fill), and fail."""
        self.counters.count_upstream_error(kind)
        now = trio.current_time()
        if now - self._last_failure_log >= 1.0:
            self._last_failure_log = now
            log.warning(
                "upstream error",
                extra={"fields": {"kind": kind, "target": fill.primary, "error": message}},
            )
        fill.fail(status, message)

    def _remember_prefetch_failure(self, target: str) -> None:
        failures = self._prefetch_failures
        if len(failures) >= PREFETCH_FAILURES_KEPT:
            failures.pop(next(iter(failures)))
        failures[target] = self.clock() + PREFETCH_RETRY_SECONDS

    async def _fetch(self, fill: Fill) -> None:
        counters = self.counters
        timeout = self.settings.upstream_timeout
        url = self._base + fill.primary
        headers = list(fill.request_headers)
        if fill.revalidating is not None:
            headers.extend(conditional_headers(fill.revalidating.policy))
            counters.revalidations += 1
        counters.upstream_requests += 1
        request_time = self.clock()
        started = trio.current_time()
        slot: FillSlot | None = None
        try:
            async with AsyncExitStack() as stack:
                with trio.fail_after(timeout):
                    response = await stack.enter_async_context(
                        self.client.stream("GET", url, headers=headers)
                    )
                counters.upstream_latency.observe(trio.current_time() - started)
                response_time = self.clock()
                upstream_headers = response.headers.items()
                status = response.status
                if fill.revalidating is not None and status == 304:
                    self._apply_not_modified(fill, upstream_headers, request_time, response_time)
                    await response.read(max_size=64 * KiB)  # keeps the connection reusable
                    return
                stored_headers = _storable_headers(upstream_headers, response_time)
                fill.status = status
                fill.headers = stored_headers
                fill.content_length = _content_length(upstream_headers)
                verdict = storability("GET", fill.request_headers, status, upstream_headers)
                storable = verdict == Storability.STORE and fill.shared
                fill.shareable = fill.shared and (storable or status >= 500)
                if storable and not fill.no_store:
                    key = object_key(
                        fill.primary, vary_key(vary_names(stored_headers), fill.request_headers)
                    )
                    slot = self.store.begin_fill(key, fill.content_length)
                elif fill.prefetch:
                    # Nobody asked for it and it can't be kept: don't download it.
                    fill.publish_head(FillState.RESPONSE)
                    fill.finish()
                    return
                fill.single_reader = not fill.shareable
                fill.publish_head(FillState.RESPONSE)
                async for chunk in response.iter_bytes():
                    if not chunk:
                        continue
                    fill.append(chunk)
                    counters.bytes_fetched_upstream += len(chunk)
                    if slot is not None:
                        slot.append(chunk)
                    if fill.content_length is not None and fill.received > fill.content_length:
                        raise RemoteProtocolError("upstream body longer than its Content-Length")
            if fill.content_length is not None and fill.received != fill.content_length:
                raise RemoteProtocolError("upstream body shorter than its Content-Length")
            if slot is not None:
                if fill.no_store:
                    slot.abort()
                else:
                    fill.stored = slot.commit(
                        primary=fill.primary,
                        vary=vary_key(vary_names(fill.headers), fill.request_headers),
                        status=fill.status,
                        headers=fill.headers,
                        request_time=request_time,
                        response_time=response_time,
                        body=fill.body(),
                        request_headers=fill.request_headers,
                        prefetched=fill.prefetch,
                    )
                slot = None
            elif fill.revalidating is not None and fill.status < 500:
                # Upstream changed its answer to something we can't store:
                # the old copy must not be served any more.
                self.store.remove(fill.revalidating)
            fill.finish()
        except (trio.TooSlowError, ReadTimeout):
            self._upstream_failed(fill, "timeout", 504, "upstream timed out")
        except ConnectError:
            self._upstream_failed(fill, "connect", 502, "upstream unreachable")
        except RemoteProtocolError as error:
            self._upstream_failed(fill, "protocol", 502, f"bad response from upstream: {error}")
        except (TransportError, OSError) as error:
            self._upstream_failed(
                fill, "transport", 502, f"upstream failed: {type(error).__name__}"
            )
        finally:
            if slot is not None:
                slot.abort()

    def _apply_not_modified(
        self,
        fill: Fill,
        upstream_headers: HeaderPairs,
        request_time: float,
        response_time: float,
    ) -> None:
        obj = fill.revalidating
        assert obj is not None
        if not not_modified_matches(obj.policy, upstream_headers):
            self.store.remove(obj)
            fill.fail(502, "upstream 304 does not match the stored response")
            return
        update = _storable_headers(upstream_headers, response_time)
        if header_value(update, "age") is None:
            # A 304 without Age: the stored Age must not count again.
            obj.headers = tuple(pair for pair in obj.headers if pair[0].lower() != "age")
        self.store.refresh(
            obj,
            merge_not_modified(obj.headers, update),
            request_time=request_time,
            response_time=response_time,
            request_headers=fill.request_headers,
        )
        fill.publish_head(FillState.NOT_MODIFIED)
        fill.finish()

    # -- helpers ---------------------------------------------------------------------
    def _forward_headers(
        self, pairs: HeaderPairs, request: Request | None, *, private: bool = False
    ) -> list[tuple[str, str]]:
        forwarded = [
            (name, value)
            for name, value in end_to_end(pairs)
            if name.lower() not in _NOT_FORWARDED
            and (private or name.lower() not in ("authorization", "cookie"))
        ]
        via = [value for name, value in forwarded if name.lower() == "via"]
        forwarded = [(name, value) for name, value in forwarded if name.lower() != "via"]
        forwarded.append(("Via", ", ".join([*via, self._via])))
        if request is not None:
            forwarded.append(("X-Forwarded-For", request.client[0]))
        return forwarded

    def _throttle(self) -> Callable[[int], Any] | None:
        return self.bucket.consume if self.bucket is not None else None

    async def _throttled(self, body: bytes) -> AsyncIterator[bytes]:
        bucket = self.bucket
        view = memoryview(body)
        for start in range(0, len(body), STREAM_CHUNK):
            chunk = view[start : start + STREAM_CHUNK]
            if bucket is not None:
                await bucket.consume(len(chunk))
            yield bytes(chunk)

    async def _throttled_stream(self, fill: Fill, start: int, end: int) -> AsyncIterator[bytes]:
        bucket = self.bucket
        async for chunk in fill.stream(start, end):
            if bucket is not None:
                await bucket.consume(len(chunk))
            yield chunk

    async def _counted_stream(self, fill: Fill) -> AsyncIterator[bytes]:
        bucket = self.bucket
        async for chunk in fill.stream(0, None):
            if bucket is not None:
                await bucket.consume(len(chunk))
            self._count_out(len(chunk), self.clock(), from_cache=False)
            yield chunk

    def _count_out(self, nbytes: int, now: float, *, from_cache: bool) -> None:
        counters = self.counters
        counters.bytes_served += nbytes
        if from_cache:
            counters.bytes_served_from_cache += nbytes
        self.bytes_out.add(nbytes, now)

    def _local(self, status: int, message: str, extra: Iterable[tuple[str, str]] = ()) -> Response:
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Cache-Control", "no-store"),
            ("X-Served-By", self._served_by),
            *extra,
        ]
        return Response(status, headers, (message.replace("\n", " ") + "\n").encode())

    # -- health, load, purge -----------------------------------------------------------
    def load(self) -> dict[str, Any]:
        """What /healthz reports; the DNS's least-loaded policy reads ``load``.

        ``load`` = open connections + bytes/s out in MiB/s: one number that
        grows with both many idle viewers and a few heavy ones.
        """
        now = self.clock()
        connections = self.open_connections()
        bytes_out = self.bytes_out.rate(now)
        return {
            "name": self.settings.name,
            "status": "draining" if self.draining else "ok",
            "load": round(connections + bytes_out / LOAD_BYTES_UNIT, 3),
            "open_connections": connections,
            "bytes_out_per_s": round(bytes_out, 1),
            "requests_per_s": round(self.requests_rate.rate(now), 2),
            "hit_ratio": round(self.counters.hit_ratio, 4),
            "fills_in_flight": len(self.fills),
            "cache_bytes": {tier.tier: tier.storage.used for tier in self.store.statistics()},
        }

    def _health(self) -> Response:
        status = 503 if self.draining else 200
        load = self.load()
        headers = [("Cache-Control", "no-store"), ("X-Seedcast-Load", str(load["load"]))]
        return Response.json(status, load, headers)

    def purge(self, *, video_id: str | None = None, prefix: str | None = None) -> int:
        """Remove cached objects of a video (``/<id>/``) or under a path prefix."""
        if video_id is not None:
            if not video_id or "/" in video_id:
                raise ValueError(f"not a video id: {video_id!r}")
            prefix = f"/{video_id}/"
        if not prefix or not prefix.startswith("/"):
            raise ValueError(f"purge prefix must start with '/': {prefix!r}")
        for fill in self.fills.values():
            if fill.primary.startswith(prefix):
                fill.no_store = True
        count = self.store.purge(prefix)
        self.counters.purged_objects += count
        log.info("purge", extra={"fields": {"prefix": prefix, "objects": count}})
        return count

    async def _admin_purge(self, request: Request) -> Response:
        if request.method not in ("POST", "PURGE"):
            return self._local(405, "purge with POST", [("Allow", "POST")])
        try:
            client_is_loopback = ipaddress.ip_address(request.client[0]).is_loopback
        except ValueError:
            client_is_loopback = False
        if not client_is_loopback:
            return self._local(403, "purge is accepted from loopback addresses only")
        token = self.settings.admin_token
        if not token:
            return self._local(403, "purge over HTTP is off (no admin_token in the config)")
        offered = request.headers.get("authorization") or ""
        scheme, _, credential = offered.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            credential.strip().encode(), token.encode()
        ):
            return self._local(403, "wrong or missing admin token")
        try:
            raw = await request.body(max_size=4096)
            message = json.loads(raw or b"{}")
            if not isinstance(message, dict):
                raise ValueError("expected a JSON object")
            count = self.purge_message(message)
        except (ValueError, UnicodeDecodeError) as error:
            return self._local(400, f"bad purge request: {error}")
        return Response.json(200, {"purged": count}, [("Cache-Control", "no-store")])

    def purge_message(self, message: dict[str, Any]) -> int:
        """Purge from ``{"id": ...}`` or ``{"prefix": ...}``; ValueError otherwise."""
        video_id = message.get("id")
        prefix = message.get("prefix")
        if (video_id is None) == (prefix is None):
            raise ValueError('give exactly one of "id" or "prefix"')
        if video_id is not None and not isinstance(video_id, str):
            raise ValueError('"id" must be a string')
        if prefix is not None and not isinstance(prefix, str):
            raise ValueError('"prefix" must be a string')
        return self.purge(video_id=video_id, prefix=prefix)

    # -- statistics -------------------------------------------------------------------
    def statistics(self) -> dict[str, float | int | str]:
        now = self.clock()
        return {
            "req_per_s": round(self.requests_rate.rate(now), 2),
            "hit_ratio": round(self.counters.hit_ratio, 4),
            "byte_hit_ratio": round(self.counters.byte_hit_ratio, 4),
            "bytes_out_per_s": round(self.bytes_out.rate(now), 1),
            "cache_objects": len(self.store.objects),
        }

    def metric_families(self) -> Iterable[Any]:
        return metric_families(
            self.counters,
            self.store.statistics(),
            open_connections=self.open_connections(),
            bytes_out_per_second=self.bytes_out.rate(self.clock()),
            in_flight_fills=len(self.fills),
        )


class _EmptyStream:
    """A body that is never iterated (HEAD of a streamed response with a known length)."""

    def __aiter__(self) -> _EmptyStream:
        return self

    async def __anext__(self) -> bytes:
        raise StopAsyncIteration


def _content_length(headers: HeaderPairs) -> int | None:
    value = header_value(headers, "content-length")
    if value is None:
        return None
    first = value.split(",")[0].strip()
    if not first.isdigit() or len(first) > 15:
        return None
    return int(first)


def _storable_headers(upstream: HeaderPairs, response_time: float) -> list[tuple[str, str]]:
    """Upstream's end-to-end fields minus the per-response ones; adds Date when missing."""
    stored = [
        (name, value) for name, value in end_to_end(upstream) if name.lower() not in _NOT_STORED
    ]
    if header_value(stored, "date") is None:
        stored.append(("Date", format_http_date(response_time)))
    return stored


def _origin_form(request: Request) -> str:
    target = request.raw_path or "/"
    return f"{target}?{request.query}" if request.query else target
