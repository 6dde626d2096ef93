"""The edge's upstream side: fills (one fetch per cache key, shared by its viewers).

How it works: a :class:`Fill` is one upstream GET and the viewers waiting on
it. :class:`Upstream` starts fills in the edge's own nursery (so a viewer
hanging up doesn't cancel it for the others), streams the body into the
fill's chunk list as bytes arrive (viewers read while it is written) and into
the store's tiers, and commits the copy when complete. A revalidation sends
the stored validators; a 304 refreshes the stored copy. Timeouts bound every
upstream step; failures are counted, logged at most once a second, and
published to the waiters (502/504). Prefetches (``prefetch_next``) fetch
segment N+1 when N is asked for and remember what failed for a while.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from enum import IntEnum
from typing import Any

import trio
from seedcast.edge.caching import (
    HeaderPairs,
    Storability,
    conditional_headers,
    end_to_end,
    header_value,
    merge_not_modified,
    not_modified_matches,
    storability,
    vary_key,
    vary_names,
)
from seedcast.edge.segments import next_segment_target
from seedcast.edge.settings import EdgeSettings
from seedcast.edge.statistics import EdgeCounters
from seedcast.edge.store import CachedObject, CacheStore, FillSlot, object_key
from seedcast.errors import ConnectError, ReadTimeout, RemoteProtocolError, TransportError
from seedcast.http11 import HttpClient, Request
from seedcast.http11.semantics import http_date
from seedcast.provenance import CACHE, SERVED_BY
from seedcast.units import KiB

log = logging.getLogger("seedcast.edge")

PREFETCH_RETRY_SECONDS = 10.0
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
#: Response fields the edge computes per response instead of storing them.
#: (A stored ``Age`` is kept for the age calculation but never served as is.)
_NOT_STORED = frozenset({"content-length", CACHE.lower(), SERVED_BY.lower(), "content-range"})


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


class Upstream:
    """Runs the edge's fills against its one upstream; ``fills`` are those in flight."""

    def __init__(
        self,
        settings: EdgeSettings,
        store: CacheStore,
        client: HttpClient,
        counters: EdgeCounters,
        *,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.counters = counters
        self.clock = clock
        self.fills: dict[str, Fill] = {}
        self._nursery: trio.Nursery | None = None
        self._via = f"1.1 {settings.name}"
        self._base = settings.upstream_base
        self._prefetch_failures: dict[str, float] = {}
        self._last_failure_log = -math.inf

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the nursery where fills run; returns when cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def spawn(self, fill: Fill) -> None:
        if self._nursery is None:
            raise RuntimeError("Edge.run() is not running")
        self._nursery.start_soon(self._run_fill, fill)

    def shared_fill(
        self,
        key: str,
        primary: str,
        pairs: HeaderPairs,
        request: Request | None,
        *,
        revalidating: CachedObject | None = None,
    ) -> tuple[Fill, bool]:
        """The fill in flight for ``key``, or a new one; True when this call started it."""
        fill = self.fills.get(key)
        if fill is not None:
            self.counters.coalesced_waiters += 1
            return fill, False
        fill = Fill(key, primary, self.forward_headers(pairs, request), revalidating=revalidating)
        self.fills[key] = fill
        self.spawn(fill)
        return fill, True

    def private_fill(self, primary: str, pairs: HeaderPairs, request: Request) -> Fill:
        """A fetch for one viewer alone (never stored nor shared)."""
        fill = Fill(
            primary, primary, self.forward_headers(pairs, request, private=True), shared=False
        )
        self.spawn(fill)
        return fill

    def refresh_in_background(self, obj: CachedObject, pairs: HeaderPairs) -> None:
        if obj.key in self.fills or self._nursery is None:
            return
        fill = Fill(obj.key, obj.primary, self.forward_headers(pairs, None), revalidating=obj)
        self.fills[obj.key] = fill
        self.counters.background_refreshes += 1
        self.spawn(fill)

    def prefetch_after(self, primary: str, pairs: HeaderPairs) -> None:
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
        fill = Fill(target, target, self.forward_headers(pairs, None), prefetch=True)
        self.fills[target] = fill
        self.counters.prefetches += 1
        self.spawn(fill)

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

    def forward_headers(
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
        stored.append(("Date", http_date(response_time)))
    return stored
