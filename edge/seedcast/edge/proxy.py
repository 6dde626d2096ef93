"""The edge's trio shell: a caching reverse proxy in front of one upstream.

How a request flows (:meth:`Edge.handle`):

1. ``/healthz`` and the admin purge are answered by :mod:`seedcast.edge.admin`.
2. The :class:`~seedcast.edge.store.CacheStore` is asked for a stored variant
   and :func:`~seedcast.edge.router.route` decides, without IO: refuse (open
   proxy, loop, only-if-cached), serve it (HIT), serve it stale (STALE, with
   a background refresh under stale-while-revalidate), revalidate first,
   fetch it (miss) or fetch for this viewer alone (pass).
3. Misses and revalidations go through a :class:`~seedcast.edge.fill.Fill`
   (:mod:`seedcast.edge.fill`): one upstream fetch per cache key at a time
   (request coalescing); every request for the same key waits for the
   response head, then streams the body out of the fill as bytes arrive,
   from any offset (ranges).
4. If upstream fails (connect error, timeout, 5xx) and the stored copy is
   within its stale-if-error window, the viewer gets the stale copy (STALE);
   otherwise a one-line 502 or 504. Timeouts bound every upstream step, so
   no viewer ever waits forever.

The viewer's own conditionals and Range are answered against the copy it gets
with :mod:`seedcast.http11.semantics`, the origin's rules. Responses carry
``X-Cache`` (HIT, MISS, REVALIDATED, STALE), ``X-Served-By`` and, when served
from the cache, ``Age``. Waiters only share a response that may be shared: a
non-storable response (private, no-store, Set-Cookie...) or a different
``Vary`` variant sends each waiter upstream on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import trio
from seedcast.edge import admin
from seedcast.edge.caching import (
    DEFAULT_REQUEST,
    DELTA_SECONDS_MAX,
    HeaderPairs,
    age_header,
    describe_request,
    header_value,
    stale_on_error_allowed,
    variant_matches,
    vary_key,
    vary_names,
)
from seedcast.edge.fill import Fill, FillState, Upstream
from seedcast.edge.router import (
    Hit,
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
from seedcast.edge.settings import EdgeSettings
from seedcast.edge.statistics import CacheResult, EdgeCounters, RateMeter, metric_families
from seedcast.edge.store import CachedObject, CacheStore, object_key
from seedcast.http11 import FileBody, Headers, HttpClient, Request, Response
from seedcast.http11.semantics import (
    Span,
    Unsatisfiable,
    parse_http_date,
    preconditions,
    range_answer,
)
from seedcast.provenance import CACHE, SERVED_BY
from seedcast.ratelimit import TokenBucket
from seedcast.units import KiB

log = logging.getLogger("seedcast.edge")

__all__ = ["Edge", "EdgeSettings"]

STREAM_CHUNK = 64 * KiB

#: Request fields that make a request more than a plain GET for the cache.
_CACHING_FIELDS = frozenset(
    {
        "cache-control",
        "pragma",
        "authorization",
        "range",
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
    }
)
#: At most this many distinct accepted Host values are remembered.
_ACCEPTED_HOSTS_KEPT = 256


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
        self.upstream = Upstream(settings, store, client, self.counters, clock=clock)
        self.fills: dict[str, Fill] = self.upstream.fills
        self.bytes_out = RateMeter()
        self.requests_rate = RateMeter()
        self.bucket = TokenBucket(settings.upload) if settings.upload > 0 else None
        self.open_connections: Callable[[], int] = lambda: 0
        self.draining = False
        self._served_by = settings.name
        self._via = f"1.1 {settings.name}"
        self._accepted_hosts: set[str] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the nursery where fills run; returns when cancelled."""
        await self.upstream.run(task_status=task_status)

    # -- the handler -------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        path = request.path
        if path == admin.HEALTH_PATH:
            return admin.health(self.load(), draining=self.draining)
        if path == admin.PURGE_PATH:
            return await admin.purge_request(
                request, self.settings.admin_token, self._purge, self._local
            )
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
        accepted = (
            len(hosts) == 1
            and hosts[0] in self._accepted_hosts
            and (method == "GET" or method == "HEAD")
            and target[:1] == "/"
        )
        facts: RequestFacts | None = None
        if not accepted or via is not None:
            # Refused requests never reach the cache (a lookup counts as a use).
            facts = self._facts(request, hosts, via, caching_fields, accepted)
            refused = refusal(facts, rules=self.settings.hosts, via_token=self._via)
            if refused is not None:
                self.counters.refused_requests += 1
                extra = [("Allow", refused.allow)] if refused.allow else []
                return self._local(refused.status, refused.reason, extra)
            if (
                not accepted
                and len(hosts) == 1
                and len(self._accepted_hosts) < _ACCEPTED_HOSTS_KEPT
            ):
                self._accepted_hosts.add(hosts[0])
        now = self.clock()
        self.requests_rate.add(1, now)
        primary = target if target[:1] == "/" else _origin_form(request)
        obj = self.store.lookup(primary, pairs)
        if obj is not None and not caching_fields:
            fast = self._fast_hit(obj, now, method)
            if fast is not None:
                return fast
        if facts is None:
            facts = self._facts(request, hosts, via, caching_fields, accepted)
        decision = route(facts, obj, now, rules=self.settings.hosts, via_token=self._via)
        if isinstance(decision, Refuse):
            return self._local(decision.status, decision.reason)
        if isinstance(decision, Hit):
            return self._serve_cached(
                request, decision.stored, CacheResult.HIT, now, caching_fields
            )
        if isinstance(decision, Stale | Refresh):
            if isinstance(decision, Refresh):
                self.upstream.refresh_in_background(decision.stored, pairs)
            return self._serve_cached(
                request, decision.stored, CacheResult.STALE, now, caching_fields
            )
        if isinstance(decision, Revalidate):
            return await self._revalidate(request, decision.stored, pairs)
        if isinstance(decision, Pass):
            return await self._pass(request, primary, pairs)
        return await self._miss(request, primary, pairs)

    @staticmethod
    def _facts(
        request: Request, hosts: list[str], via: str | None, caching_fields: bool, accepted: bool
    ) -> RequestFacts:
        policy = describe_request(request.headers.items()) if caching_fields else DEFAULT_REQUEST
        return RequestFacts(
            request.method, request.target, request.version, tuple(hosts), via, policy, accepted
        )

    # -- cache hits -----------------------------------------------------------------
    def _fast_hit(self, obj: CachedObject, now: float, method: str) -> Response | None:
        """A fresh in-memory copy for a plain GET/HEAD: what ``route`` would call a Hit.

        This is the hot path of a busy edge, so it skips the general machinery;
        anything unusual (stale, revalidation rules, throttling, prefetch) falls
        through to it.
        """
        if (
            obj.memory is None
            or self.bucket is not None
            or self.settings.prefetch_next
            or obj.prefetched
        ):
            return None
        age = plain_hit_age(obj.policy, now)
        if age is None:
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
            self.upstream.prefetch_after(obj.primary, request.headers.items())
        if caching_fields and obj.status == 200:
            # Conditionals and ranges (only looked at when the request has such fields).
            etag, last_modified = obj.policy.etag, parse_http_date(obj.policy.last_modified)
            answer = _viewer_answer(request, etag, last_modified, obj.length)
            if isinstance(answer, int):
                return _conditional_response(answer, headers)
            if answer is not None:
                return self._cached_range(request, obj, headers, answer)
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
            items.append((CACHE, result.value))
            items.append((SERVED_BY, self._served_by))
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
        self, request: Request, obj: CachedObject, headers: Headers, answer: Span | Unsatisfiable
    ) -> Response:
        base = [pair for pair in headers.items() if pair[0].lower() != "content-length"]
        base.append(("Content-Range", answer.content_range()))
        if isinstance(answer, Unsatisfiable):
            return Response(416, base, b"")
        base.append(("Content-Length", str(answer.length)))
        body: bytes | memoryview | FileBody
        if obj.memory is not None:
            body = memoryview(obj.memory)[answer.start : answer.end]
        elif obj.disk_path is not None:
            body = FileBody(obj.disk_path, answer.start, answer.length, throttle=self._throttle())
        else:  # pragma: no cover - callers check has_body after every await
            return self._local(503, "the cached copy went away; try again")
        self._count_out(answer.length, self.clock(), from_cache=True)
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
        fill, initiator = self.upstream.shared_fill(key, primary, pairs, request)
        if not initiator and fill.prefetch and fill.waiters == 0:
            self.counters.prefetch_hits += 1  # the prefetch is under way: a head start
        if self.settings.prefetch_next:
            self.upstream.prefetch_after(primary, pairs)
        return await self._answer_from_fill(
            request, fill, pairs, initiator=initiator, stale=None, hops=hops
        )

    async def _revalidate(
        self, request: Request, obj: CachedObject, pairs: HeaderPairs
    ) -> Response:
        fill, initiator = self.upstream.shared_fill(
            obj.key, obj.primary, pairs, request, revalidating=obj
        )
        return await self._answer_from_fill(request, fill, pairs, initiator=initiator, stale=obj)

    async def _pass(self, request: Request, primary: str, pairs: HeaderPairs) -> Response:
        """Fetch for this viewer alone (Authorization, no-store, unshareable answers)."""
        fill = self.upstream.private_fill(primary, pairs, request)
        return await self._answer_from_fill(request, fill, pairs, initiator=True, stale=None)

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
        headers.append((CACHE, result.value))
        headers.append((SERVED_BY, self._served_by))
        status = fill.status
        total = fill.content_length
        if fill.status == 200:
            etag = header_value(fill.headers, "etag")
            last_modified = parse_http_date(header_value(fill.headers, "last-modified"))
            answer = _viewer_answer(request, etag, last_modified, total)
            if isinstance(answer, int):
                return _conditional_response(answer, headers)
            if isinstance(answer, Unsatisfiable):
                headers.append(("Content-Range", answer.content_range()))
                return Response(416, headers, b"")
            if answer is not None:
                headers.append(("Content-Range", answer.content_range()))
                headers.append(("Content-Length", str(answer.length)))
                self._count_out(answer.length, self.clock(), from_cache=False)
                return Response(
                    206, headers, self._throttled_stream(fill, answer.start, answer.end)
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
        return self._local(status, message, [(CACHE, CacheResult.ERROR.value)])

    # -- helpers ---------------------------------------------------------------------
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
            (SERVED_BY, self._served_by),
            *extra,
        ]
        return Response(status, headers, (message.replace("\n", " ") + "\n").encode())

    # -- health, load, purge -----------------------------------------------------------
    def load(self) -> dict[str, Any]:
        """What /healthz reports; the DNS's least-loaded policy reads ``load``."""
        now = self.clock()
        connections = self.open_connections()
        bytes_out = self.bytes_out.rate(now)
        return {
            "name": self.settings.name,
            "status": "draining" if self.draining else "ok",
            "load": admin.load_number(connections, bytes_out),
            "open_connections": connections,
            "bytes_out_per_s": round(bytes_out, 1),
            "requests_per_s": round(self.requests_rate.rate(now), 2),
            "hit_ratio": round(self.counters.hit_ratio, 4),
            "fills_in_flight": len(self.fills),
            "cache_bytes": {tier.tier: tier.storage.used for tier in self.store.statistics()},
        }

    def purge(self, *, video_id: str | None = None, prefix: str | None = None) -> int:
        """Remove cached objects of a video (``/<id>/``) or under a path prefix."""
        return self._purge(admin.purge_prefix(video_id=video_id, prefix=prefix))

    def purge_message(self, message: dict[str, Any]) -> int:
        """Purge from ``{"id": ...}`` or ``{"prefix": ...}``; ValueError otherwise."""
        return self._purge(admin.message_prefix(message))

    def _purge(self, prefix: str) -> int:
        for fill in self.fills.values():
            if fill.primary.startswith(prefix):
                fill.no_store = True  # what is in flight is not kept either
        count = self.store.purge(prefix)
        self.counters.purged_objects += count
        log.info("purge", extra={"fields": {"prefix": prefix, "objects": count}})
        return count

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


def _viewer_answer(
    request: Request, etag: str | None, last_modified: float | None, total: int | None
) -> int | Span | Unsatisfiable | None:
    """The viewer's own conditionals (304/412), then its Range (when the length is known)."""
    get = request.headers.get
    status = preconditions(request.method, get, etag, last_modified)
    if status is not None or total is None:
        return status
    return range_answer(request.method, get, etag, last_modified, total)


def _conditional_response(status: int, headers: Headers | list[tuple[str, str]]) -> Response:
    """304 keeps the representation's headers; 412 is an empty answer."""
    if status == 304:
        return Response(304, headers)
    kept = [pair for pair in Headers(headers).items() if pair[0].lower() != "content-length"]
    return Response(412, kept, b"")


def _origin_form(request: Request) -> str:
    target = request.raw_path or "/"
    return f"{target}?{request.query}" if request.query else target
