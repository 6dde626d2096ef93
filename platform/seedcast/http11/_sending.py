"""The send paths of an HTTP connection: bytes, files (sendfile), streams, rate-limited.

:class:`Sender` is the base of :class:`~._connection.Connection`: the
connection's slots are declared here, so the send paths type-check on their own.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING

import trio
from seedcast.errors import LocalProtocolError
from trio.lowlevel import wait_writable

from ._messages import FileBody, Response
from ._server_core import (
    LAST_CHUNK,
    Framing,
    RequestHead,
    ResponseFrame,
    chunk_header,
    frame_response,
)
from ._server_state import (
    COALESCE_LIMIT,
    LIMITED_CHUNK,
    OPEN_FLAGS,
    SMALL_FILE,
    BadResponse,
    ClientGone,
    Phase,
    close_body,
    error_response,
)

log = logging.getLogger("seedcast.http11")

if TYPE_CHECKING:
    from ._server import HttpServer


class Sender:
    """The send paths; every slot of a connection is declared here."""

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
    server: HttpServer
    sock: socket.socket
    fd: int
    phase: Phase
    deadline: float
    responded: bool
    _continue_pending: bool

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
            elif length <= COALESCE_LIMIT:
                data = frame.head + body  # type: ignore[operator]
                try:  # the common case: it all fits in the socket buffer at once
                    sent = self.sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError as error:
                    raise ClientGone from error
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
                fd = os.open(body.path, OPEN_FLAGS)
            except OSError as error:
                # Gone between the handler's stat and now; the head is not sent yet.
                log.error("cannot open %s: %s", body.path, error)
                status = 404 if isinstance(error, FileNotFoundError) else 500
                return await self._send_response(
                    head, error_response(status, "cannot read the file"), keep_alive
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
            await close_body(body)
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
            raise BadResponse(str(error)) from error

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
            raise ClientGone from error
        if sent == len(data):
            return
        await self._send_rest(memoryview(data)[sent:])

    async def _send_rest(self, view: memoryview) -> None:
        sock = self.sock
        previous = self.phase
        self.phase = Phase.SEND
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
                    raise ClientGone from error
                view = view[sent:]
        finally:
            self.phase = previous
            self.deadline = math.inf

    async def _send_head_and_bytes(self, head: bytes, body: bytes | bytearray | memoryview) -> None:
        if len(body) <= COALESCE_LIMIT:
            await self._send_all(head + body)
            return
        try:
            sent = self.sock.sendmsg([head, body])
        except BlockingIOError:
            sent = 0
        except OSError as error:
            raise ClientGone from error
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
        if remaining <= SMALL_FILE and body.throttle is None and limit is None:
            # One read and one send with the head beat sendfile's extra syscalls here.
            data = os.pread(fd, remaining, offset)
            if len(data) != remaining:
                log.error("%s is shorter than announced; aborting the response", body.path)
                raise ClientGone
            await self._send_head_and_bytes(head, data)
            counters.response_body_bytes += remaining
            return
        if self.server.use_sendfile and body.throttle is None and limit is None:
            try:
                sent = self.sock.send(head, socket.MSG_MORE)
            except BlockingIOError:
                sent = 0
            except OSError as error:
                raise ClientGone from error
            if sent < len(head):
                await self._send_rest(memoryview(head)[sent:])
            await self._sendfile(fd, offset, remaining)
            counters.response_body_bytes += remaining
            return
        await self._send_all(head)
        chunk_size = body.chunk_size if limit is None else min(body.chunk_size, LIMITED_CHUNK)
        while remaining:
            size = min(chunk_size, remaining)
            if body.throttle is not None:
                await body.throttle(size)
            if limit is not None:
                await limit.consume(size)
            chunk = os.pread(fd, size, offset)
            if not chunk:
                log.error("%s is shorter than announced; aborting the response", body.path)
                raise ClientGone
            await self._send_all(chunk)
            offset += len(chunk)
            remaining -= len(chunk)
            counters.response_body_bytes += len(chunk)

    async def _send_limited(self, view: memoryview) -> None:
        """Send ``view`` in chunks, each charged to the server's upload limit first."""
        limit = self.server.upload_limit
        assert limit is not None
        for start in range(0, len(view), LIMITED_CHUNK):
            chunk = view[start : start + LIMITED_CHUNK]
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
                    self.phase = Phase.SEND
                    self.deadline = trio.current_time() + send_timeout
                    await wait_writable(sock)
                    continue
                except OSError as error:
                    raise ClientGone from error
                if sent == 0:
                    log.error("file shorter than announced; aborting the response")
                    raise ClientGone
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
                raise ClientGone
            if self.server.upload_limit is not None:
                await self.server.upload_limit.consume(len(chunk))
            if chunked:
                await self._send_all(b"".join((chunk_header(len(chunk)), chunk, b"\r\n")))
            else:
                await self._send_all(chunk)
            counters.response_body_bytes += len(chunk)
        if expected is not None and sent_bytes != expected:
            log.error("streamed body of %d bytes, Content-Length said %d", sent_bytes, expected)
            raise ClientGone
        if chunked:
            await self._send_all(LAST_CHUNK)
