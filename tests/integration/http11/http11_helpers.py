"""Helpers for the HTTP core tests: a raw client and a small router.

Responses on raw sockets are read with h11 (an independent parser from the
server's llhttp), one after the other, so pipelined answers can be checked
in order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import h11
import trio
from seedcast.http11 import HttpServer, Request, Response, Router


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    raw_headers: list[tuple[str, str]]


class RawClient:
    """Send arbitrary bytes; read well-formed responses back with h11."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._h11: h11.Connection | None = None
        self._pending = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def response(self, method: str = "GET") -> RawResponse:
        """The next response (``method`` tells h11 whether a body follows)."""
        if self._h11 is None:
            self._h11 = h11.Connection(h11.CLIENT)
        elif self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        connection = self._h11
        connection.send(h11.Request(method=method, target="/", headers=[("Host", "test")]))
        connection.send(h11.EndOfMessage())
        head: Any = None
        body = b""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                with trio.fail_after(10):
                    data = await self.stream.receive_some(65536)
                connection.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise AssertionError("connection closed before a response")
        raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers.raw_items()]
        return RawResponse(head.status_code, {k.lower(): v for k, v in raw}, body, raw)

    async def read_to_eof(self) -> bytes:
        """Everything until the server closes (fails the test after 10 s)."""
        data = b""
        with trio.fail_after(10):
            while chunk := await self.stream.receive_some(65536):
                data += chunk
        return data

    async def closed_by_server(self) -> bool:
        """True once the server closed the connection (EOF or reset), within 10 s."""
        with trio.fail_after(10):
            try:
                while await self.stream.receive_some(65536):
                    pass
            except trio.BrokenResourceError:
                pass
        return True

    async def aclose(self) -> None:
        await self.stream.aclose()


Start = Callable[..., Awaitable[tuple[HttpServer, tuple[str, int]]]]


def echo_router() -> Router:
    """/hello, /echo (body back), /stream (async generator), /boom (raises)."""
    router = Router()

    async def hello(request: Request) -> Response:
        return Response.text(200, f"hello {request.path}")

    async def echo(request: Request) -> Response:
        return Response(200, [("Content-Type", "application/octet-stream")], await request.body())

    async def stream(request: Request) -> Response:
        async def parts() -> Any:
            for index in range(3):
                yield b"part%d;" % index

        return Response(200, body=parts())

    async def boom(request: Request) -> Response:
        raise RuntimeError("handler bug")

    router.add("GET", "/hello", hello)
    router.add("GET", "/hello/{name}", hello)
    router.add("POST", "/echo", echo)
    router.add("PUT", "/echo", echo)
    router.add("GET", "/stream", stream)
    router.add("GET", "/boom", boom)
    return router
