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

import errno
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import trio
from seedcast.errors import LocalProtocolError
from seedcast.ratelimit import TokenBucket
from seedcast.units import parse_host_port
from trio.lowlevel import notify_closing, wait_readable

from ._connection import Connection
from ._messages import Address, Handler, Response
from ._server_core import (
    date_line,
    server_line,
)
from ._server_state import (
    DURATION_BUCKETS,
    Counters,
    Phase,
    ServerLimits,
    ServerStatistics,
    default_server_name,
    socket_address,
)

log = logging.getLogger("seedcast.http11")


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
            default_server_name() if server_name is None else server_name
        )
        self._date_line = date_line(time.time())
        self._counters = Counters()
        self._connections: set[Connection] = set()
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
        bound = [socket_address(listener.getsockname()) for listener in listeners]
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
            if connection.phase == Phase.IDLE or connection.phase == Phase.LINGER:
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
            connection = Connection(self, connection_socket, socket_address(peer))
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

    def _victim(self, source: str | None) -> Connection | None:
        """The least useful connection (of ``source``, or any), None if all are busy.

        Candidates wait for a request (idle keep-alive, or a new connection that
        hasn't sent a byte) or are still sending a head: the one nearest its
        deadline goes, which puts silent new connections and the longest idle first.
        """
        victim: Connection | None = None
        for connection in self._connections:
            if (
                connection.phase <= Phase.HEAD
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

    async def _run_connection(self, connection: Connection) -> None:
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
