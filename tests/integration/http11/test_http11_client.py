"""HttpClient against our server and against raw misbehaving servers on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import pytest
import trio
from http11_helpers import Start, echo_router
from seedcast.errors import (
    ConnectError,
    LocalProtocolError,
    PoolTimeout,
    ReadTimeout,
    RemoteProtocolError,
)
from seedcast.http11 import HttpClient, Request, Response, Router
from seedcast.ratelimit import TokenBucket
from seedcast.units import MiB


def _where_router() -> Router:
    router = echo_router()

    async def where(request: Request) -> Response:
        return Response.json(200, {"client": request.client[0], "host": request.headers["host"]})

    async def big(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for index in range(64):
                yield bytes([index]) * 16384

        return Response(200, body=chunks())

    async def hang(request: Request) -> Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    router.add("GET", "/where", where)
    router.add("GET", "/big", big)
    router.add("GET", "/hang", hang)
    return router


async def test_requests_reuse_one_pooled_connection(start_server: Start) -> None:
    server, (host, port) = await start_server(_where_router())
    async with HttpClient() as client:
        for _ in range(3):
            response = await client.request("GET", f"http://{host}:{port}/hello")
            assert (response.status, response.content) == (200, b"hello /hello")
        head = await client.request("HEAD", f"http://{host}:{port}/hello")
        assert (head.headers["content-length"], head.content) == ("12", b"")
        posted = await client.request("POST", f"http://{host}:{port}/echo", body=b"payload")
        assert posted.content == b"payload"
        statistics = client.statistics()
        assert (statistics.connections_opened, statistics.connections_reused) == (1, 4)
    assert server.statistics().connections_total == 1


async def test_streamed_bodies_both_ways(start_server: Start) -> None:
    _, (host, port) = await start_server(_where_router())

    async def upload() -> AsyncIterator[bytes]:
        for index in range(5):
            yield b"%d" % index * 1000

    async with HttpClient() as client:
        response = await client.request("PUT", f"http://{host}:{port}/echo", body=upload())
        assert response.content == b"".join(b"%d" % index * 1000 for index in range(5))
        async with client.stream("GET", f"http://{host}:{port}/big") as streamed:
            assert streamed.headers["transfer-encoding"] == "chunked"
            size = 0
            async for chunk in streamed.iter_bytes():
                size += len(chunk)
        assert size == 64 * 16384
        assert client.statistics().connections_opened == 1  # reused after a full read


async def test_download_limit_pays_for_every_body_byte(start_server: Start) -> None:
    _, (host, port) = await start_server(_where_router())
    limit = TokenBucket(4 * MiB)  # starts empty: 1 MiB of body has to wait for tokens
    async with HttpClient(download_limit=limit) as client:
        response = await client.request("GET", f"http://{host}:{port}/big")
        assert len(response.content) == 64 * 16384
        async with client.stream("GET", f"http://{host}:{port}/hello") as streamed:
            hello = b"".join([chunk async for chunk in streamed.iter_bytes()])
    statistics = limit.statistics()
    assert statistics.bytes_consumed == 64 * 16384 + len(hello)  # bodies, not heads
    assert statistics.seconds_waited > 0


async def test_leaving_a_stream_early_closes_its_connection(start_server: Start) -> None:
    _, (host, port) = await start_server(_where_router())
    async with HttpClient() as client:
        async with client.stream("GET", f"http://{host}:{port}/big") as streamed:
            async for _ in streamed.iter_bytes():
                break
        response = await client.request("GET", f"http://{host}:{port}/hello")
        assert response.status == 200
        assert client.statistics().connections_opened == 2


async def test_pools_are_per_local_address(start_server: Start) -> None:
    server, (host, port) = await start_server(_where_router())
    url = f"http://{host}:{port}/where"
    async with HttpClient(local_address="127.0.41.7") as client:
        first = await client.request("GET", url)
        second = await client.request("GET", url, local_address="127.0.42.9")
        third = await client.request("GET", url)
        assert first.json() == {"client": "127.0.41.7", "host": f"{host}:{port}"}
        assert second.json()["client"] == "127.0.42.9"
        assert third.json()["client"] == "127.0.41.7"
        assert client.statistics().connections_opened == 2
    assert server.statistics().connections_total == 2


async def test_max_connections_per_host_and_pool_timeout(start_server: Start) -> None:
    _, (host, port) = await start_server(_where_router())
    async with HttpClient(max_connections_per_host=1, pool_timeout=0.2) as client:
        async with client.stream("GET", f"http://{host}:{port}/big"):
            with pytest.raises(PoolTimeout):
                await client.request("GET", f"http://{host}:{port}/hello")
        assert (await client.request("GET", f"http://{host}:{port}/hello")).status == 200


async def test_read_timeout(start_server: Start) -> None:
    _, (host, port) = await start_server(_where_router())
    async with HttpClient(read_timeout=0.2) as client:
        with pytest.raises(ReadTimeout):
            await client.request("GET", f"http://{host}:{port}/hang")
        # The timed-out connection is not reused; the next request works.
        assert (await client.request("GET", f"http://{host}:{port}/hello")).status == 200


async def test_connection_refused_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        async with HttpClient() as client:
            with pytest.raises(ConnectError, match="cannot connect"):
                await client.request("GET", f"http://127.0.0.1:{port}/")


async def test_connect_timeout() -> None:
    # A listener with a full accept queue that never accepts: SYNs go unanswered.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    try:
        for _ in range(8):
            filler = trio.socket.socket()
            fillers.append(filler)
            with trio.move_on_after(0.2):
                await filler.connect(address)
        async with HttpClient(connect_timeout=0.3) as client:
            with pytest.raises(ConnectError, match="timed out"):
                await client.request("GET", f"http://{address[0]}:{address[1]}/")
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_bad_urls_are_local_errors() -> None:
    async with HttpClient() as client:
        for url in ("https://127.0.0.1/", "ftp://x/", "http:///path", "http://127.0.0.1:99999/"):
            with pytest.raises(LocalProtocolError):
                await client.request("GET", url)


RawHandler = Callable[[trio.SocketStream], Awaitable[None]]


@pytest.fixture
async def raw_server(nursery: trio.Nursery) -> Callable[[RawHandler], Awaitable[str]]:
    """A TCP server running ``handler(stream)`` per connection; returns its base URL."""

    async def start(handler: RawHandler) -> str:
        async def serve(stream: trio.SocketStream) -> None:
            async with stream:
                await handler(stream)

        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        host, port = listeners[0].socket.getsockname()[:2]
        return f"http://{host}:{port}"

    return start


async def _read_head(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize(
    "reply",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        b"",
    ],
)
async def test_misbehaving_servers_give_remote_protocol_errors(
    raw_server: Any, reply: bytes
) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await _read_head(stream)
        if reply:
            await stream.send_all(reply)

    base = await raw_server(handler)
    async with HttpClient(read_timeout=5) as client:
        with pytest.raises(RemoteProtocolError):
            await client.request("GET", base + "/")


async def test_oversized_response_body_is_refused(start_server: Start) -> None:
    _, (host, port) = await start_server(_where_router())
    async with HttpClient() as client:
        with pytest.raises(RemoteProtocolError, match="exceeds"):
            await client.request("GET", f"http://{host}:{port}/big", max_body_size=1000)


async def test_informational_responses_are_skipped(raw_server: Any) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await _read_head(stream)
        await stream.send_all(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
        )

    base = await raw_server(handler)
    async with HttpClient() as client:
        response = await client.request("POST", base + "/", body=b"x")
        assert (response.status, response.reason, response.content) == (201, "Created", b"ok")


_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_server_closing_an_idle_connection_is_survived(raw_server: Any) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await _read_head(stream)
        await stream.send_all(_OK)  # keep-alive by default... then close anyway

    base = await raw_server(handler)
    async with HttpClient() as client:
        for _ in range(3):
            assert (await client.request("GET", base + "/")).content == b"ok"
        assert client.statistics().connections_opened == 3


@pytest.mark.parametrize(("method", "retried"), [("GET", True), ("POST", False)])
async def test_request_lost_on_a_reused_connection_is_retried_if_idempotent(
    raw_server: Any, method: str, retried: bool
) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        # Answer the first request, then drop the second one unanswered: the race
        # of a server closing an idle connection just as the client reuses it.
        await _read_head(stream)
        await stream.send_all(_OK)
        await _read_head(stream)

    base = await raw_server(handler)
    async with HttpClient() as client:
        assert (await client.request(method, base + "/")).content == b"ok"
        if retried:
            assert (await client.request(method, base + "/")).content == b"ok"
            assert client.statistics().connections_opened == 2
        else:
            with pytest.raises(RemoteProtocolError, match="before responding"):
                await client.request(method, base + "/")
