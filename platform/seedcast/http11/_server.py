"""The trio HTTP/1.1 server: sockets, timers and tasks around the sans-IO core.

One task per connection, none per request: the connection task reads bytes,
feeds the :class:`~._server_core.RequestParser`, awaits the handler and
writes the response, in a loop (keep-alive; pipelined requests are answered
in order because they are queued in the parser and handled one by one).

The hot path talks to non-blocking stdlib sockets through
``trio.lowlevel.wait_readable``/``wait_writable``: a read or write that can
complete at once costs one syscall and no trip through the scheduler. After
a response a connection yields once and then tries to read the next request
(under load it is there by then, which saves the epoll re-arm that every
trio wait costs); it also yields at least every few requests so a pipelining
client cannot starve the others.

Timeouts cost nothing per request: each connection records its phase (idle,
reading a head, reading a body, sending, lingering) and a deadline; one
watchdog task wakes a few times a second and cancels the connections whose
deadline passed. A connection that timed out in the middle of a head gets 408.
The watchdog also refreshes the cached ``Date`` header.

Graceful stop (:meth:`HttpServer.shutdown`): close the listeners, close idle
connections, let in-flight requests finish (their responses say
``Connection: close``), and cancel whatever is left after the grace period.
"""

from __future__ import annotations

import bisect
import enum
import errno
import logging
import math
import os
import socket
import time
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from seedcast.errors import LocalProtocolError, RemoteProtocolError
from seedcast.ratelimit import TokenBucket
from seedcast.units import KiB, MiB, parse_host_port
from trio.lowlevel import checkpoint, notify_closing, wait_readable, wait_writable

from ._headers import Headers
from ._messages import Address, FileBody, Handler, Request, Response
from ._server_core import (
    CONNECTION_CLOSED,
    CONTINUE_RESPONSE,
    END_OF_MESSAGE,
    LAST_CHUNK,
    NEED_DATA,
    Data,
    Framing,
    RequestHead,
    RequestParser,
    ResponseFrame,
    chunk_header,
    date_line,
    frame_response,
    server_line,
)

log = logging.getLogger("seedcast.http11")

_new_headers = Headers.__new__  # the hot path skips validation: the parser already checked
_new_request = Request.__new__

_RECEIVE_SIZE = 64 * KiB
_YIELD_EVERY = 16  # requests handled back to back before a forced checkpoint
_DRAIN_LIMIT = 1 * MiB  # unread request body we discard to keep a connection
_COALESCE_LIMIT = 16 * KiB  # bodies up to this size are copied into one send with the head
_SMALL_FILE = 64 * KiB  # files up to this size are read and sent with the head
_LIMITED_CHUNK = 64 * KiB  # with an upload_limit, bodies go out in chunks of at most this
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_SOFT_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)

DURATION_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


def _default_server_name() -> str:
    try:
        from seedcast.version import version

        return f"seedcast/{version()}"
    except ImportError:  # pragma: no cover - version module is part of the platform
        return "seedcast"


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Limits and timeouts (seconds, bytes) of an :class:`HttpServer`.

    - ``max_head_size``: request line + headers; more -> 431.
    - ``head_timeout``: a started request head must be complete within this
      (slow-loris guard) -> 408 and close. Also the time a new connection has
      to send its first byte (then closed silently).
    - ``keep_alive_timeout``: an idle connection between requests is closed.
    - ``body_timeout``: longest wait for the next bytes of a request body.
    - ``send_timeout``: longest wait for the client to accept more response bytes.
    - ``max_body_size``: default bound of ``await request.body()`` (-> 413).
    - ``max_connections``: concurrent connections. When full, a new connection
      evicts the least useful one (idle or still sending its head, the one
      closest to its deadline first); only when every connection is busy does
      the server stop accepting (clients wait in the listen backlog).
    - ``max_connections_per_source``: concurrent connections from one client
      address; beyond it the same eviction runs among that address's own
      connections, else the new one is closed at once. One client re-opening
      sockets can then hold at most this many slots.
    - ``shutdown_grace``: default deadline of :meth:`HttpServer.shutdown`.
    - ``linger_timeout``: after an error response, how long to read and discard
      what the client still sends before closing (so it gets the response, not a reset).
    """

    max_head_size: int = 16 * KiB
    head_timeout: float = 5.0
    keep_alive_timeout: float = 30.0
    body_timeout: float = 30.0
    send_timeout: float = 60.0
    max_body_size: int = 16 * MiB
    max_connections: int = 1024
    max_connections_per_source: int = 64
    shutdown_grace: float = 10.0
    linger_timeout: float = 2.0
    backlog: int = 1024

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> ServerLimits:
        """Limits from a config section (``config.http``): its fields named like ours."""
        values = {
            name: getattr(settings, name)
            for name in cls.__dataclass_fields__
            if hasattr(settings, name)
        }
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        for name in (
            "head_timeout",
            "keep_alive_timeout",
            "body_timeout",
            "send_timeout",
            "shutdown_grace",
            "linger_timeout",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"ServerLimits.{name} must be > 0")
        if self.max_connections < 1 or self.max_connections_per_source < 1:
            raise ValueError("ServerLimits: max_connections and max_connections_per_source >= 1")
        if self.max_head_size < 256:
            raise ValueError("ServerLimits: max_head_size >= 256")


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    """A snapshot of an :class:`HttpServer`'s counters (see :meth:`HttpServer.statistics`)."""

    open_connections: int
    connections_total: int
    requests_total: int
    requests: dict[tuple[str, int], int]  # (method, status) -> count
    bad_requests: dict[str, int]  # reason -> count
    aborted_responses: int  # client vanished or timed out while we were sending
    evicted_connections: dict[str, int]  # why ("full", "per_source") -> count
    refused_connections: int  # closed at accept: the source had its cap of busy connections
    response_body_bytes: int
    duration_buckets: tuple[float, ...]
    duration_counts: tuple[int, ...]  # per bucket, not cumulative; last = +Inf
    duration_sum: float


class _Phase(enum.IntEnum):
    IDLE = 0  # waiting for the first byte of a request
    HEAD = 1  # a request head has started
    HANDLER = 2  # the handler runs (no deadline: the handler owns its time)
    BODY = 3  # the handler waits for request body bytes
    SEND = 4  # waiting for the client to take response bytes
    LINGER = 5  # error sent; discarding input before close


class _ClientGone(Exception):
    """The peer closed or reset the connection while we were writing."""


class _BadResponse(Exception):
    """The handler's response cannot be framed (e.g. a wrong Content-Length)."""


@dataclass(slots=True)
class _Counters:
    connections_total: int = 0
    requests_total: int = 0
    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    bad_requests: dict[str, int] = field(default_factory=dict)
    aborted_responses: int = 0
    evicted_connections: dict[str, int] = field(default_factory=dict)
    refused_connections: int = 0
    response_body_bytes: int = 0
    duration_counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0


class HttpServer:
    """An HTTP/1.1 server running ``handler`` for each request.

    ``registry`` (a prometheus ``CollectorRegistry``) gets this server's
    metrics, named ``seedcast_<component>_http_*``, while :meth:`serve` runs,
    and is served at ``GET /metrics`` (ahead of the handler). Handler
    exceptions become 500 (logged); a :class:`RemoteProtocolError` from the
    handler (e.g. ``request.body()`` over its limit) becomes its status_hint.

    ``upload_limit`` (a process-wide :class:`~seedcast.ratelimit.TokenBucket`)
    caps the egress of response bodies: every body chunk (at most 64 KiB;
    files are then read and sent in chunks instead of one sendfile) is
    charged to it before it is sent, so concurrent responses share the rate.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        registry: Any = None,
        component: str = "http",
        limits: ServerLimits | None = None,
        server_name: str | None = None,
        metrics_path: str | None = "/metrics",
        use_sendfile: bool = True,
        upload_limit: TokenBucket | None = None,
    ) -> None:
        self.handler = handler
        self.upload_limit = upload_limit
        self.registry = registry
        self.component = component
        self.limits = limits or ServerLimits()
        self.metrics_path = metrics_path if registry is not None else None
        self.use_sendfile = use_sendfile and hasattr(os, "sendfile")
        self._server_line = server_line(
            _default_server_name() if server_name is None else server_name
        )
        self._date_line = date_line(time.time())
        self._counters = _Counters()
        self._connections: set[_Connection] = set()
        self._listeners: list[socket.socket] = []
        # Slots held, total and per client address; an evicted connection gives
        # its slot back at once (its task ends at its next checkpoint).
        self._held = 0
        self._held_by_source: dict[str, int] = {}
        self._slot_freed = trio.Event()
        self._closing = False
        self._shutdown_started = trio.Event()
        self._connections_done = trio.Event()
        self._serve_scope: trio.CancelScope | None = None
        self._stopped = trio.Event()
        self._running = False
        self._tick = max(
            0.02,
            min(
                0.5,
                self.limits.head_timeout / 4,
                self.limits.keep_alive_timeout / 4,
                self.limits.body_timeout / 4,
                self.limits.linger_timeout / 4,
            ),
        )

    # -- public ------------------------------------------------------------------
    async def serve(
        self,
        addresses: Sequence[str | tuple[str, int]],
        *,
        task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``addresses`` ("host:port" or (host, port); port 0 picks one) and serve.

        Calls ``task_status.started(bound)`` with the bound (host, port)s once
        listening. Returns after :meth:`shutdown` has finished; cancelling it
        stops at once. Raises OSError when an address cannot be bound.
        """
        if self._running:
            raise LocalProtocolError("this HttpServer is already serving")
        self._running = True
        listeners: list[socket.socket] = []
        try:
            for address in addresses:
                listeners.append(self._listen(address))
        except OSError:
            for listener in listeners:
                listener.close()
            self._running = False
            raise
        self._listeners = listeners
        bound = [_address(listener.getsockname()) for listener in listeners]
        collector = self._register_metrics()
        try:
            async with trio.open_nursery() as nursery:
                self._serve_scope = nursery.cancel_scope
                nursery.start_soon(self._watchdog)
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener, nursery)
                log.debug("listening on %s", ", ".join(f"{h}:{p}" for h, p in bound))
                task_status.started(bound)
                await self._wait_shutdown_done()
                nursery.cancel_scope.cancel()
        finally:
            self._close_listeners()
            if collector is not None:
                try:
                    self.registry.unregister(collector)
                except KeyError:
                    pass
            self._running = False
            self._stopped.set()

    def shutdown(self, grace_period: float | None = None) -> None:
        """Start a graceful stop: stop accepting, finish in-flight requests.

        Idle connections close now; busy ones close after their current
        response; whatever is still running after ``grace_period`` seconds
        (default ``limits.shutdown_grace``) is cancelled. :meth:`serve` then
        returns. Safe to call more than once and before serve starts.
        """
        grace = self.limits.shutdown_grace if grace_period is None else grace_period
        self._closing = True
        self._shutdown_started.set()
        self._close_listeners()
        for connection in list(self._connections):
            if connection.phase == _Phase.IDLE or connection.phase == _Phase.LINGER:
                connection.scope.cancel()
        if self._serve_scope is not None:
            deadline = trio.current_time() + grace
            self._serve_scope.deadline = min(self._serve_scope.deadline, deadline)

    async def wait_stopped(self) -> None:
        """Wait until :meth:`serve` has returned."""
        await self._stopped.wait()

    @property
    def closing(self) -> bool:
        return self._closing

    def statistics(self) -> ServerStatistics:
        counters = self._counters
        return ServerStatistics(
            open_connections=len(self._connections),
            connections_total=counters.connections_total,
            requests_total=counters.requests_total,
            requests=dict(counters.requests),
            bad_requests=dict(counters.bad_requests),
            aborted_responses=counters.aborted_responses,
            evicted_connections=dict(counters.evicted_connections),
            refused_connections=counters.refused_connections,
            response_body_bytes=counters.response_body_bytes,
            duration_buckets=DURATION_BUCKETS,
            duration_counts=tuple(counters.duration_counts),
            duration_sum=counters.duration_sum,
        )

    # -- listening -----------------------------------------------------------------
    def _listen(self, address: str | tuple[str, int]) -> socket.socket:
        host, port = parse_host_port(address) if isinstance(address, str) else address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(self.limits.backlog)
            listener.setblocking(False)
        except OSError as error:
            listener.close()
            # Name the address: "Address already in use" alone doesn't say which.
            raise OSError(
                error.errno, f"cannot listen on {host}:{port}: {error.strerror}"
            ) from error
        return listener

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            if listener.fileno() >= 0:
                notify_closing(listener)
                listener.close()
        self._listeners = []

    async def _wait_shutdown_done(self) -> None:
        await self._shutdown_started.wait()
        if self._connections:
            await self._connections_done.wait()

    async def _accept_loop(self, listener: socket.socket, nursery: trio.Nursery) -> None:
        limits = self.limits
        while True:
            # Full of busy connections: leave new clients in the backlog until one closes.
            while self._held >= limits.max_connections and self._victim(None) is None:
                await self._wait_slot()
            try:
                connection_socket, peer = await self._accept(listener)
            except trio.ClosedResourceError:
                return
            # Full: an idle connection makes room (or, all busy now, wait for one).
            while self._held >= limits.max_connections and not self._evict(None, "full"):
                await self._wait_slot()
            source = str(peer[0])
            held = self._held_by_source.get(source, 0)
            if held >= limits.max_connections_per_source and not self._evict(source, "per_source"):
                self._counters.refused_connections += 1
                connection_socket.close()
                continue
            self._held += 1
            self._held_by_source[source] = self._held_by_source.get(source, 0) + 1
            connection_socket.setblocking(False)
            try:
                connection_socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            # Registered now, not when its task first runs: a burst of accepts must
            # see the connections before it as eviction candidates.
            connection = _Connection(self, connection_socket, _address(peer))
            self._connections.add(connection)
            self._counters.connections_total += 1
            nursery.start_soon(self._run_connection, connection)

    @staticmethod
    async def _accept(listener: socket.socket) -> tuple[socket.socket, Any]:
        while True:
            try:
                return listener.accept()
            except BlockingIOError:
                await wait_readable(listener)
            except OSError as error:
                if error.errno == errno.EBADF or listener.fileno() < 0:
                    raise trio.ClosedResourceError from None
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept failed (%s); pausing 100 ms", error)
                    await trio.sleep(0.1)
                # ECONNABORTED and friends: that client is gone; next.

    async def _wait_slot(self) -> None:
        if self._slot_freed.is_set():
            self._slot_freed = trio.Event()
        await self._slot_freed.wait()

    def _victim(self, source: str | None) -> _Connection | None:
        """The least useful connection (of ``source``, or any), None if all are busy.

        Candidates wait for a request (idle keep-alive, or a new connection that
        hasn't sent a byte) or are still sending a head: the one nearest its
        deadline goes, which puts silent new connections and the longest idle first.
        """
        victim: _Connection | None = None
        for connection in self._connections:
            if (
                connection.phase <= _Phase.HEAD
                and not connection.evicted
                and (source is None or connection.client[0] == source)
                and (victim is None or connection.deadline < victim.deadline)
            ):
                victim = connection
        return victim

    def _evict(self, source: str | None, why: str) -> bool:
        """Close :meth:`_victim`'s pick and free its slot at once; False if there is none."""
        victim = self._victim(source)
        if victim is None:
            return False
        victim.evicted = True
        victim.scope.cancel()
        self._release(victim.client[0])
        evicted = self._counters.evicted_connections
        evicted[why] = evicted.get(why, 0) + 1
        return True

    def _release(self, source: str) -> None:
        self._held -= 1
        left = self._held_by_source[source] - 1
        if left:
            self._held_by_source[source] = left
        else:
            del self._held_by_source[source]
        self._slot_freed.set()

    async def _run_connection(self, connection: _Connection) -> None:
        try:
            if not connection.scope.cancel_called:  # evicted before it ever ran
                await connection.run()
        finally:
            self._connections.discard(connection)
            notify_closing(connection.sock)
            connection.sock.close()
            if not connection.evicted:
                self._release(connection.client[0])
            if self._closing and not self._connections:
                self._connections_done.set()

    async def _watchdog(self) -> None:
        """Cancel connections past their deadline; refresh the Date header."""
        last_second = -1
        while True:
            await trio.sleep(self._tick)
            wall = time.time()
            if int(wall) != last_second:
                last_second = int(wall)
                self._date_line = date_line(wall)
            now = trio.current_time()
            for connection in list(self._connections):
                if connection.deadline <= now and not connection.scope.cancel_called:
                    connection.expired_in = connection.phase
                    connection.scope.cancel()

    # -- bookkeeping -----------------------------------------------------------------
    def _count_bad(self, reason: str, message: str, client: Address) -> None:
        bad = self._counters.bad_requests
        first = reason not in bad
        bad[reason] = bad.get(reason, 0) + 1
        (log.info if first else log.debug)(
            "bad request from %s:%d: %s (%s)", client[0], client[1], message, reason
        )

    def _register_metrics(self) -> Any:
        if self.registry is None:
            return None
        from ._metrics import server_collector

        return server_collector(self, self.registry)

    def _metrics_response(self) -> Response:
        try:
            from seedcast.metrics import render_metrics

            body, content_type = render_metrics(self.registry)
        except ImportError:  # pragma: no cover - the platform ships seedcast.metrics
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            body, content_type = generate_latest(self.registry), CONTENT_TYPE_LATEST
        return Response(200, [("Content-Type", content_type)], body)


def _address(sockname: Any) -> tuple[str, int]:
    return (str(sockname[0]), int(sockname[1]))


def _error_response(status: int, message: str) -> Response:
    return Response.text(status, message.rstrip() + "\n")


class _Connection:
    """One client connection; see the module docstring for how it runs."""

    __slots__ = (
        "_continue_pending",
        "_request_done",
        "_yield_credit",
        "client",
        "deadline",
        "evicted",
        "expired_in",
        "fd",
        "local",
        "max_body_size",
        "parser",
        "phase",
        "responded",
        "scope",
        "server",
        "sock",
    )

    def __init__(self, server: HttpServer, sock: socket.socket, client: Address) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.client = client
        self.local = _address(sock.getsockname())
        self.parser = RequestParser(max_head_size=server.limits.max_head_size)
        self.max_body_size = server.limits.max_body_size
        self.scope = trio.CancelScope()
        self.phase = _Phase.IDLE
        self.deadline = trio.current_time() + server.limits.head_timeout
        self.expired_in: _Phase | None = None
        self.evicted = False  # closed by HttpServer._evict to make room
        self.responded = False  # a response is under way (head sent, body not finished)
        self._request_done = True  # the current request's body was fully read
        self._continue_pending = False
        self._yield_credit = _YIELD_EVERY

    async def run(self) -> None:
        try:
            with self.scope:
                await self._serve_requests()
        except (*_SOFT_ERRORS, _ClientGone):
            if self.phase == _Phase.SEND or self.responded:
                self.server._counters.aborted_responses += 1
            return
        except OSError as error:
            log.debug("connection from %s:%d: %s", *self.client, error)
            return
        except Exception:
            # A bug of ours or of a handler's body iterator: this connection dies, not the server.
            log.exception("connection from %s:%d failed", *self.client)
            return
        if self.expired_in is not None:
            await self._after_timeout(self.expired_in)

    # -- the request loop ----------------------------------------------------------
    async def _serve_requests(self) -> None:
        server = self.server
        parser = self.parser
        limits = server.limits
        yield_first = False
        while True:
            try:
                event = parser.next_event()
            except RemoteProtocolError as error:
                await self._reject(error)
                return
            if event is NEED_DATA:
                if server._closing and not parser.in_head:
                    return
                if not parser.in_head and self.phase != _Phase.IDLE:
                    self.phase = _Phase.IDLE
                    self.deadline = trio.current_time() + limits.keep_alive_timeout
                    if server._held >= limits.max_connections:
                        server._slot_freed.set()  # full: an accept may now evict us
                data = await self._receive(yield_first)
                yield_first = False
                parser.receive_data(data)
                if parser.in_head and self.phase == _Phase.IDLE:
                    # A head has started but not ended: it gets head_timeout from now.
                    # (A head complete in one read never needs this deadline.)
                    self.phase = _Phase.HEAD
                    self.deadline = trio.current_time() + limits.head_timeout
                continue
            if type(event) is RequestHead:
                if not await self._respond(event):
                    return
                # The client usually waits for our answer before sending more:
                # give it (and the other connections) a turn before reading.
                yield_first = not parser.has_events
                continue
            if event is CONNECTION_CLOSED:
                return
            # Data / END_OF_MESSAGE of a body the handler left unread: discard.
            if event is END_OF_MESSAGE:
                self._request_done = True

    async def _receive(self, yield_first: bool) -> bytes:
        sock = self.sock
        if yield_first:
            # Let the other connections run first: under load the client has
            # usually sent its next request by then, and the recv below takes it
            # without an epoll re-arm (trio's waits are one-shot: a syscall
            # each). When nothing else runs, the recv fails once and we wait.
            await checkpoint()
            self._yield_credit = _YIELD_EVERY
        else:
            # A client that always has bytes ready (pipelining, a big upload) must
            # not keep the others waiting: yield now and then.
            self._yield_credit -= 1
            if self._yield_credit <= 0:
                self._yield_credit = _YIELD_EVERY
                await checkpoint()
        while True:
            try:
                return sock.recv(_RECEIVE_SIZE)
            except BlockingIOError:
                await wait_readable(self.fd)
                self._yield_credit = _YIELD_EVERY
            except _SOFT_ERRORS:
                return b""

    async def _respond(self, head: RequestHead) -> bool:
        """Run the handler for one request and send its response; True to keep going."""
        server = self.server
        started = time.perf_counter()
        self.phase = _Phase.HANDLER
        self.deadline = math.inf
        self.responded = False
        # Bodiless requests (most of them): their end is already queued.
        self._request_done = self.parser.pop_end_of_message()
        self._continue_pending = head.expect_continue and not self._request_done
        headers = _new_headers(Headers)
        headers._items = head.headers
        headers._wire = None
        request = _new_request(Request)
        request._init(
            head.method, head.target, head.version, headers, self.client, self.local, self
        )
        keep_alive = head.keep_alive
        try:
            if (
                server.metrics_path is not None
                and request.path == server.metrics_path
                and (head.method == "GET" or head.method == "HEAD")
            ):
                response = server._metrics_response()
            else:
                response = await server.handler(request)
            if type(response) is not Response and not isinstance(response, Response):
                raise LocalProtocolError(
                    f"handler returned {type(response).__name__}, not Response"
                )
        except RemoteProtocolError as error:
            if self.responded:
                raise _ClientGone from error
            server._count_bad(error.reason, str(error), self.client)
            response = _error_response(error.status_hint, str(error))
            keep_alive = False
        except trio.Cancelled:
            raise
        except Exception:
            log.exception("handler failed for %s %s", head.method, head.target)
            response = _error_response(500, "internal server error")
            keep_alive = False
        # A pipelined request behind this one that is known bad still gets its own
        # error response (then the connection closes): only Upgrade/EOF end it here.
        parser = self.parser
        keep_alive = keep_alive and not server._closing and (parser.reusable or parser.failed)
        body = response.body
        try:
            if type(body) is bytes and len(body) <= _COALESCE_LIMIT and server.upload_limit is None:
                # The hot path, inlined: one head, one send() that nearly always fits.
                frame = self._frame(head, response, keep_alive, len(body))
                data = frame.head if frame.framing is Framing.NONE else frame.head + body
                try:
                    sent = self.sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError as error:
                    raise _ClientGone from error
                if sent < len(data):
                    self.responded = True
                    await self._send_rest(memoryview(data)[sent:])
                server._counters.response_body_bytes += len(data) - len(frame.head)
                keep_alive = frame.keep_alive
            else:
                keep_alive = await self._send_response(head, response, keep_alive)
        except _BadResponse as error:
            log.error("bad response to %s %s: %s", head.method, head.target, error)
            await _close_body(response.body)
            response = _error_response(500, "internal server error")
            keep_alive = await self._send_response(head, response, False)
        self.responded = False  # complete: a timeout from here on concerns the next request
        counters = server._counters
        counters.requests_total += 1
        key = (head.method, response.status)
        counters.requests[key] = counters.requests.get(key, 0) + 1
        elapsed = time.perf_counter() - started
        counters.duration_counts[bisect.bisect_left(DURATION_BUCKETS, elapsed)] += 1
        counters.duration_sum += elapsed
        if not keep_alive:
            await self._close_gently()
            return False
        if not self._request_done:
            return await self._drain_body()
        self._yield_credit -= 1
        if self._yield_credit <= 0:
            self._yield_credit = _YIELD_EVERY
            await checkpoint()
        return True

    # -- request bodies (called through Request) -----------------------------------
    async def receive_body_chunk(self) -> bytes | None:
        """Next piece of the current request's body; None at its end."""
        if self._request_done:
            return None
        parser = self.parser
        while True:
            event = parser.next_event()  # raises RemoteProtocolError on a bad body
            if type(event) is Data:
                return event.data
            if event is END_OF_MESSAGE:
                self._request_done = True
                return None
            if event is not NEED_DATA:  # pragma: no cover - the parser's order forbids it
                raise RemoteProtocolError("request body interrupted", reason="incomplete")
            if self._continue_pending:
                self._continue_pending = False
                await self._send_all(CONTINUE_RESPONSE)
            previous = self.phase
            self.phase = _Phase.BODY
            self.deadline = trio.current_time() + self.server.limits.body_timeout
            data = await self._receive(False)
            self.phase = previous
            self.deadline = math.inf
            parser.receive_data(data)

    async def _drain_body(self) -> bool:
        """Discard the unread rest of a request body; False when not worth it."""
        if self._continue_pending:
            return False  # the client waits for 100 Continue: it may never send the body
        discarded = 0
        try:
            while (chunk := await self.receive_body_chunk()) is not None:
                discarded += len(chunk)
                if discarded > _DRAIN_LIMIT:
                    return False
        except RemoteProtocolError:
            return False
        return True

    # -- responses -------------------------------------------------------------------
    async def _send_response(self, head: RequestHead, response: Response, keep_alive: bool) -> bool:
        """Frame and send ``response``; returns whether the connection stays open."""
        body = response.body
        body_type = type(body)
        if body_type is bytes or body_type is bytearray or body_type is memoryview:
            length = len(body)  # type: ignore[arg-type]
            frame = self._frame(head, response, keep_alive, length)
            self.responded = True
            self._continue_pending = False
            if frame.framing is Framing.NONE:
                await self._send_all(frame.head)
            elif self.server.upload_limit is not None:
                await self._send_all(frame.head)
                await self._send_limited(memoryview(body))  # type: ignore[arg-type]
                self.server._counters.response_body_bytes += length
            elif length <= _COALESCE_LIMIT:
                data = frame.head + body  # type: ignore[operator]
                try:  # the common case: it all fits in the socket buffer at once
                    sent = self.sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError as error:
                    raise _ClientGone from error
                if sent < len(data):
                    await self._send_rest(memoryview(data)[sent:])
                self.server._counters.response_body_bytes += length
            else:
                await self._send_head_and_bytes(frame.head, body)  # type: ignore[arg-type]
                self.server._counters.response_body_bytes += length
            return frame.keep_alive
        if isinstance(body, FileBody):
            if head.method == "HEAD":
                frame = self._frame(head, response, keep_alive, body.length)
                self._start_response()
                await self._send_all(frame.head)
                return frame.keep_alive
            try:
                fd = os.open(body.path, _OPEN_FLAGS)
            except OSError as error:
                # Gone between the handler's stat and now; the head is not sent yet.
                log.error("cannot open %s: %s", body.path, error)
                status = 404 if isinstance(error, FileNotFoundError) else 500
                return await self._send_response(
                    head, _error_response(status, "cannot read the file"), keep_alive
                )
            try:
                frame = self._frame(head, response, keep_alive, body.length)
                self._start_response()
                await self._send_file(frame.head, body, fd)
            finally:
                os.close(fd)
            return frame.keep_alive
        try:
            frame = self._frame(head, response, keep_alive, None)
            self._start_response()
            if frame.framing is Framing.NONE:
                await self._send_all(frame.head)
            else:
                await self._send_stream(frame, body)  # type: ignore[arg-type]
        finally:
            await _close_body(body)
        return frame.keep_alive

    def _frame(
        self, head: RequestHead, response: Response, keep_alive: bool, body_length: int | None
    ) -> ResponseFrame:
        server = self.server
        try:
            return frame_response(
                head.method,
                head.version,
                keep_alive,
                response.status,
                response.headers,
                body_length,
                response.reason,
                server._date_line,
                server._server_line,
            )
        except LocalProtocolError as error:
            # The handler's headers contradict its body: a bug on our side of the wire.
            raise _BadResponse(str(error)) from error

    def _start_response(self) -> None:
        self.responded = True
        self._continue_pending = False

    async def _send_all(self, data: bytes | memoryview) -> None:
        sock = self.sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as error:
            raise _ClientGone from error
        if sent == len(data):
            return
        await self._send_rest(memoryview(data)[sent:])

    async def _send_rest(self, view: memoryview) -> None:
        sock = self.sock
        previous = self.phase
        self.phase = _Phase.SEND
        send_timeout = self.server.limits.send_timeout
        try:
            while view:
                self.deadline = trio.current_time() + send_timeout
                await wait_writable(sock)
                try:
                    sent = sock.send(view)
                except BlockingIOError:
                    continue
                except OSError as error:
                    raise _ClientGone from error
                view = view[sent:]
        finally:
            self.phase = previous
            self.deadline = math.inf

    async def _send_head_and_bytes(self, head: bytes, body: bytes | bytearray | memoryview) -> None:
        if len(body) <= _COALESCE_LIMIT:
            await self._send_all(head + body)
            return
        try:
            sent = self.sock.sendmsg([head, body])
        except BlockingIOError:
            sent = 0
        except OSError as error:
            raise _ClientGone from error
        if sent < len(head):
            await self._send_rest(memoryview(head)[sent:])
            sent = 0
        else:
            sent -= len(head)
        if sent < len(body):
            await self._send_rest(memoryview(body)[sent:])

    async def _send_file(self, head: bytes, body: FileBody, fd: int) -> None:
        counters = self.server._counters
        remaining = body.length
        offset = body.offset
        limit = self.server.upload_limit
        if remaining <= _SMALL_FILE and body.throttle is None and limit is None:
            # One read and one send with the head beat sendfile's extra syscalls here.
            data = os.pread(fd, remaining, offset)
            if len(data) != remaining:
                log.error("%s is shorter than announced; aborting the response", body.path)
                raise _ClientGone
            await self._send_head_and_bytes(head, data)
            counters.response_body_bytes += remaining
            return
        if self.server.use_sendfile and body.throttle is None and limit is None:
            try:
                sent = self.sock.send(head, socket.MSG_MORE)
            except BlockingIOError:
                sent = 0
            except OSError as error:
                raise _ClientGone from error
            if sent < len(head):
                await self._send_rest(memoryview(head)[sent:])
            await self._sendfile(fd, offset, remaining)
            counters.response_body_bytes += remaining
            return
        await self._send_all(head)
        chunk_size = body.chunk_size if limit is None else min(body.chunk_size, _LIMITED_CHUNK)
        while remaining:
            size = min(chunk_size, remaining)
            if body.throttle is not None:
                await body.throttle(size)
            if limit is not None:
                await limit.consume(size)
            chunk = os.pread(fd, size, offset)
            if not chunk:
                log.error("%s is shorter than announced; aborting the response", body.path)
                raise _ClientGone
            await self._send_all(chunk)
            offset += len(chunk)
            remaining -= len(chunk)
            counters.response_body_bytes += len(chunk)

    async def _send_limited(self, view: memoryview) -> None:
        """Send ``view`` in chunks, each charged to the server's upload limit first."""
        limit = self.server.upload_limit
        assert limit is not None
        for start in range(0, len(view), _LIMITED_CHUNK):
            chunk = view[start : start + _LIMITED_CHUNK]
            await limit.consume(len(chunk))
            await self._send_all(chunk)

    async def _sendfile(self, fd: int, offset: int, count: int) -> None:
        sock = self.sock
        out = sock.fileno()
        previous = self.phase
        send_timeout = self.server.limits.send_timeout
        try:
            while count:
                try:
                    sent = os.sendfile(out, fd, offset, count)
                except BlockingIOError:
                    self.phase = _Phase.SEND
                    self.deadline = trio.current_time() + send_timeout
                    await wait_writable(sock)
                    continue
                except OSError as error:
                    raise _ClientGone from error
                if sent == 0:
                    log.error("file shorter than announced; aborting the response")
                    raise _ClientGone
                offset += sent
                count -= sent
        finally:
            self.phase = previous
            self.deadline = math.inf

    async def _send_stream(self, frame: ResponseFrame, body: AsyncIterable[bytes]) -> None:
        counters = self.server._counters
        chunked = frame.framing is Framing.CHUNKED
        expected = frame.length if frame.framing is Framing.LENGTH else None
        sent_bytes = 0
        await self._send_all(frame.head)
        async for chunk in body:  # a failing iterator aborts the connection (logged)
            if not chunk:
                continue
            sent_bytes += len(chunk)
            if expected is not None and sent_bytes > expected:
                log.error("streamed body longer than its Content-Length %d", expected)
                raise _ClientGone
            if self.server.upload_limit is not None:
                await self.server.upload_limit.consume(len(chunk))
            if chunked:
                await self._send_all(b"".join((chunk_header(len(chunk)), chunk, b"\r\n")))
            else:
                await self._send_all(chunk)
            counters.response_body_bytes += len(chunk)
        if expected is not None and sent_bytes != expected:
            log.error("streamed body of %d bytes, Content-Length said %d", sent_bytes, expected)
            raise _ClientGone
        if chunked:
            await self._send_all(LAST_CHUNK)

    # -- errors and closing --------------------------------------------------------
    async def _reject(self, error: RemoteProtocolError) -> None:
        """Answer a bad request with its status (when the client is still there) and close."""
        self.server._count_bad(error.reason, str(error), self.client)
        if error.reason == "incomplete":
            return  # the client left; nobody to answer
        response = _error_response(error.status_hint, str(error))
        frame = frame_response(
            method="GET",
            version="1.1",
            keep_alive=False,
            status=error.status_hint,
            headers=response.headers,
            body_length=len(response.body),  # type: ignore[arg-type]
            date=self.server._date_line,
            server=self.server._server_line,
        )
        await self._send_all(frame.head + response.body)  # type: ignore[operator]
        await self._close_gently()

    async def _close_gently(self) -> None:
        """Half-close, then read and discard until EOF (bounded), so the client gets our bytes."""
        sock = self.sock
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        self.phase = _Phase.LINGER
        self.deadline = trio.current_time() + self.server.limits.linger_timeout
        discarded = 0
        while discarded < _DRAIN_LIMIT:
            data = await self._receive(False)
            if not data:
                return
            discarded += len(data)

    async def _after_timeout(self, phase: _Phase) -> None:
        """The watchdog cancelled us: 408 if a request head or body was under way."""
        stalled_head = phase == _Phase.HEAD and self.parser.in_head
        stalled_body = phase == _Phase.BODY
        if (stalled_head or stalled_body) and not self.responded:
            reason = "head_timeout" if stalled_head else "body_timeout"
            message = f"request {'head' if stalled_head else 'body'} not complete in time"
            self.server._count_bad(reason, message, self.client)
            response = _error_response(408, message)
            frame = frame_response(
                method="GET",
                version="1.1",
                keep_alive=False,
                status=408,
                headers=response.headers,
                body_length=len(response.body),  # type: ignore[arg-type]
                date=self.server._date_line,
                server=self.server._server_line,
            )
            try:
                self.sock.send(frame.head + response.body)  # type: ignore[operator]
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        elif stalled_body:
            self.server._count_bad("body_timeout", "request body stalled", self.client)
        elif phase == _Phase.SEND:
            self.server._counters.aborted_responses += 1


async def _close_body(body: object) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # the handler's generator failing on close is not our problem
            log.debug("closing a response body failed", exc_info=True)
