"""One HTTP/1.1 client connection: the request loop, bodies, errors and timeouts.

See ``_server.py``'s docstring for how connections run.
"""

from __future__ import annotations

import bisect
import logging
import math
import socket
import time
from typing import TYPE_CHECKING

import trio
from seedcast.errors import LocalProtocolError, RemoteProtocolError
from trio.lowlevel import checkpoint, wait_readable

from ._headers import Headers
from ._messages import Address, Request, Response
from ._sending import Sender
from ._server_core import (
    CONNECTION_CLOSED,
    CONTINUE_RESPONSE,
    END_OF_MESSAGE,
    NEED_DATA,
    Data,
    Framing,
    RequestHead,
    RequestParser,
    frame_response,
)
from ._server_state import (
    COALESCE_LIMIT,
    DRAIN_LIMIT,
    DURATION_BUCKETS,
    RECEIVE_SIZE,
    SOFT_ERRORS,
    YIELD_EVERY,
    BadResponse,
    ClientGone,
    Phase,
    close_body,
    error_response,
    new_headers,
    new_request,
    socket_address,
)

log = logging.getLogger("seedcast.http11")

if TYPE_CHECKING:
    from ._server import HttpServer


class Connection(Sender):
    """One client connection; see the module docstring for how it runs."""

    __slots__ = ()  # declared by Sender, which the send paths need to type-check

    def __init__(self, server: HttpServer, sock: socket.socket, client: Address) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.client = client
        self.local = socket_address(sock.getsockname())
        self.parser = RequestParser(max_head_size=server.limits.max_head_size)
        self.max_body_size = server.limits.max_body_size
        self.scope = trio.CancelScope()
        self.phase = Phase.IDLE
        self.deadline = trio.current_time() + server.limits.head_timeout
        self.expired_in: Phase | None = None
        self.evicted = False  # closed by HttpServer._evict to make room
        self.responded = False  # a response is under way (head sent, body not finished)
        self._request_done = True  # the current request's body was fully read
        self._continue_pending = False
        self._yield_credit = YIELD_EVERY

    async def run(self) -> None:
        try:
            with self.scope:
                await self._serve_requests()
        except (*SOFT_ERRORS, ClientGone):
            if self.phase == Phase.SEND or self.responded:
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
                if not parser.in_head and self.phase != Phase.IDLE:
                    self.phase = Phase.IDLE
                    self.deadline = trio.current_time() + limits.keep_alive_timeout
                    if server._held >= limits.max_connections:
                        server._slot_freed.set()  # full: an accept may now evict us
                data = await self._receive(yield_first)
                yield_first = False
                parser.receive_data(data)
                if parser.in_head and self.phase == Phase.IDLE:
                    # A head has started but not ended: it gets head_timeout from now.
                    # (A head complete in one read never needs this deadline.)
                    self.phase = Phase.HEAD
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
            self._yield_credit = YIELD_EVERY
        else:
            # A client that always has bytes ready (pipelining, a big upload) must
            # not keep the others waiting: yield now and then.
            self._yield_credit -= 1
            if self._yield_credit <= 0:
                self._yield_credit = YIELD_EVERY
                await checkpoint()
        while True:
            try:
                return sock.recv(RECEIVE_SIZE)
            except BlockingIOError:
                await wait_readable(self.fd)
                self._yield_credit = YIELD_EVERY
            except SOFT_ERRORS:
                return b""

    async def _respond(self, head: RequestHead) -> bool:
        """Run the handler for one request and send its response; True to keep going."""
        server = self.server
        started = time.perf_counter()
        self.phase = Phase.HANDLER
        self.deadline = math.inf
        self.responded = False
        # Bodiless requests (most of them): their end is already queued.
        self._request_done = self.parser.pop_end_of_message()
        self._continue_pending = head.expect_continue and not self._request_done
        headers = new_headers(Headers)
        headers._items = head.headers
        headers._wire = None
        request = new_request(Request)
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
                raise ClientGone from error
            server._count_bad(error.reason, str(error), self.client)
            response = error_response(error.status_hint, str(error))
            keep_alive = False
        except trio.Cancelled:
            raise
        except Exception:
            log.exception("handler failed for %s %s", head.method, head.target)
            response = error_response(500, "internal server error")
            keep_alive = False
        # A pipelined request behind this one that is known bad still gets its own
        # error response (then the connection closes): only Upgrade/EOF end it here.
        parser = self.parser
        keep_alive = keep_alive and not server._closing and (parser.reusable or parser.failed)
        body = response.body
        try:
            if type(body) is bytes and len(body) <= COALESCE_LIMIT and server.upload_limit is None:
                # The hot path, inlined: one head, one send() that nearly always fits.
                frame = self._frame(head, response, keep_alive, len(body))
                data = frame.head if frame.framing is Framing.NONE else frame.head + body
                try:
                    sent = self.sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError as error:
                    raise ClientGone from error
                if sent < len(data):
                    self.responded = True
                    await self._send_rest(memoryview(data)[sent:])
                server._counters.response_body_bytes += len(data) - len(frame.head)
                keep_alive = frame.keep_alive
            else:
                keep_alive = await self._send_response(head, response, keep_alive)
        except BadResponse as error:
            log.error("bad response to %s %s: %s", head.method, head.target, error)
            await close_body(response.body)
            response = error_response(500, "internal server error")
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
            self._yield_credit = YIELD_EVERY
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
            self.phase = Phase.BODY
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
                if discarded > DRAIN_LIMIT:
                    return False
        except RemoteProtocolError:
            return False
        return True

    # -- errors and closing --------------------------------------------------------
    async def _reject(self, error: RemoteProtocolError) -> None:
        """Answer a bad request with its status (when the client is still there) and close."""
        self.server._count_bad(error.reason, str(error), self.client)
        if error.reason == "incomplete":
            return  # the client left; nobody to answer
        response = error_response(error.status_hint, str(error))
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
        self.phase = Phase.LINGER
        self.deadline = trio.current_time() + self.server.limits.linger_timeout
        discarded = 0
        while discarded < DRAIN_LIMIT:
            data = await self._receive(False)
            if not data:
                return
            discarded += len(data)

    async def _after_timeout(self, phase: Phase) -> None:
        """The watchdog cancelled us: 408 if a request head or body was under way."""
        stalled_head = phase == Phase.HEAD and self.parser.in_head
        stalled_body = phase == Phase.BODY
        if (stalled_head or stalled_body) and not self.responded:
            reason = "head_timeout" if stalled_head else "body_timeout"
            message = f"request {'head' if stalled_head else 'body'} not complete in time"
            self.server._count_bad(reason, message, self.client)
            response = error_response(408, message)
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
        elif phase == Phase.SEND:
            self.server._counters.aborted_responses += 1
