"""HttpServer against raw loopback sockets: framing, keep-alive, limits, failures."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import trio
from http11_helpers import RawClient, Start, echo_router
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from seedcast.errors import RemoteProtocolError
from seedcast.http11 import FileBody, HttpServer, Request, Response, Router, ServerLimits

GET = b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n"


async def test_keep_alive_reuses_one_connection(start_server: Start, connect: Any) -> None:
    server, address = await start_server(echo_router())
    client: RawClient = await connect(address)
    for index in range(3):
        await client.send(b"GET /hello/%d HTTP/1.1\r\nHost: test\r\n\r\n" % index)
        response = await client.response()
        assert response.status == 200
        assert response.body == b"hello /hello/%d" % index
        assert "connection" not in response.headers
        assert response.headers["server"].startswith("seedcast")
        assert response.headers["date"].endswith("GMT")
    statistics = server.statistics()
    assert statistics.connections_total == 1
    assert statistics.requests_total == 3


async def test_pipelined_requests_are_answered_in_order(start_server: Start, connect: Any) -> None:
    _, address = await start_server(echo_router())
    client: RawClient = await connect(address)
    await client.send(
        b"GET /hello/1 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nfirst"
        b"HEAD /hello/3 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nsec\r\n3\r\nond\r\n0\r\n\r\n"
        b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /hello/6 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    bodies = []
    for method in ("GET", "POST", "HEAD", "PUT", "GET", "GET"):
        response = await client.response(method)
        assert response.status == 200
        bodies.append(response.body)
    assert bodies == [
        b"hello /hello/1",
        b"first",
        b"",
        b"second",
        b"part0;part1;part2;",
        b"hello /hello/6",
    ]
    assert await client.closed_by_server()


async def test_head_has_length_but_no_body(
    start_server: Start, connect: Any, tmp_path: Path
) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"x" * 5000)

    async def file(request: Request) -> Response:
        return Response(200, body=FileBody(path))

    router = echo_router()
    router.add("GET", "/file", file)
    _, address = await start_server(router)
    client: RawClient = await connect(address)
    await client.send(
        b"HEAD /file HTTP/1.1\r\nHost: t\r\n\r\nHEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    response = await client.response("HEAD")
    assert (response.status, response.headers["content-length"], response.body) == (
        200,
        "5000",
        b"",
    )
    response = await client.response("HEAD")
    assert response.headers["content-length"] == str(len(b"hello /hello"))
    await client.send(GET)
    assert (await client.response()).body == b"hello /hello"  # no stray body bytes in between


async def test_connection_close_and_http10(start_server: Start, connect: Any) -> None:
    _, address = await start_server(echo_router())
    client: RawClient = await connect(address)
    await client.send(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    response = await client.response()
    assert response.headers["connection"] == "close"
    assert await client.closed_by_server()

    client = await connect(address)
    await client.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    data = b""
    while b"hello /hello" not in data:
        data += await client.stream.receive_some(4096)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: keep-alive\r\n" in data

    client = await connect(address)
    await client.send(b"GET /stream HTTP/1.0\r\n\r\n")
    data = await client.read_to_eof()
    assert b"Transfer-Encoding" not in data  # HTTP/1.0: close-delimited
    assert data.endswith(b"\r\n\r\npart0;part1;part2;")


@pytest.mark.parametrize("use_sendfile", [True, False])
async def test_file_bodies_stream_with_offset_and_throttle(
    start_server: Start, connect: Any, tmp_path: Path, use_sendfile: bool
) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB
    path = tmp_path / "segment.m4s"
    path.write_bytes(data)
    throttled: list[int] = []

    async def throttle(size: int) -> None:
        throttled.append(size)

    async def whole(request: Request) -> Response:
        return Response(200, [("Content-Type", "video/mp4")], FileBody(path))

    async def part(request: Request) -> Response:
        return Response(206, body=FileBody(path, offset=1000, length=300_000, throttle=throttle))

    router = Router()
    router.add("GET", "/whole", whole)
    router.add("GET", "/part", part)
    server, address = await start_server(router, use_sendfile=use_sendfile)
    client: RawClient = await connect(address)
    await client.send(
        b"GET /whole HTTP/1.1\r\nHost: t\r\n\r\nGET /part HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    response = await client.response()
    assert response.headers["content-length"] == str(len(data))
    assert response.body == data
    response = await client.response()
    assert response.status == 206
    assert response.body == data[1000:301_000]
    assert sum(throttled) == 300_000
    assert server.statistics().response_body_bytes == len(data) + 300_000


async def test_file_removed_after_the_handler_gives_404(
    start_server: Start, connect: Any, tmp_path: Path
) -> None:
    path = tmp_path / "gone"
    path.write_bytes(b"abc")

    async def vanishing(request: Request) -> Response:
        body = FileBody(path)
        path.unlink()
        return Response(200, body=body)

    router = echo_router()
    router.add("GET", "/gone", vanishing)
    _, address = await start_server(router)
    client: RawClient = await connect(address)
    await client.send(b"GET /gone HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
    assert (await client.response()).status == 404
    assert (await client.response()).status == 200


async def test_chunked_response_and_streamed_body_with_length(
    start_server: Start, connect: Any
) -> None:
    async def known(request: Request) -> Response:
        async def parts() -> Any:
            yield b"abc"
            yield b""
            yield b"def"

        return Response(200, [("Content-Length", "6")], parts())

    async def wrong(request: Request) -> Response:
        async def parts() -> Any:
            yield b"abc"

        return Response(200, [("Content-Length", "10")], parts())

    router = echo_router()
    router.add("GET", "/known", known)
    router.add("GET", "/wrong", wrong)
    _, address = await start_server(router)
    client: RawClient = await connect(address)
    await client.send(
        b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\nGET /known HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    response = await client.response()
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.body == b"part0;part1;part2;"
    response = await client.response()
    assert (response.headers["content-length"], response.body) == ("6", b"abcdef")

    client = await connect(address)
    await client.send(b"GET /wrong HTTP/1.1\r\nHost: t\r\n\r\n")
    data = await client.read_to_eof()  # cut short: the client can tell it is truncated
    assert data.endswith(b"\r\n\r\nabc")


async def test_handlers_stream_request_bodies_as_they_arrive(
    start_server: Start, connect: Any
) -> None:
    seen: list[bytes] = []
    first_chunk = trio.Event()

    async def upload(request: Request) -> Response:
        async for chunk in request.stream():
            seen.append(chunk)
            first_chunk.set()
        return Response.text(200, f"{sum(map(len, seen))} bytes")

    router = echo_router()
    router.add("POST", "/upload", upload)
    _, address = await start_server(router)
    client: RawClient = await connect(address)
    await client.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    await client.send(b"5\r\nhello\r\n")
    with trio.fail_after(10):
        await first_chunk.wait()  # the handler saw the first chunk before the rest was sent
    assert seen == [b"hello"]
    await client.send(b"6\r\n world\r\n0\r\n\r\n")
    response = await client.response("POST")
    assert response.body == b"11 bytes"
    assert b"".join(seen) == b"hello world"


async def test_upload_limit_is_charged_for_every_body_byte(
    start_server: Start, connect: Any, tmp_path: Path
) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"f" * 200_000)
    charged: list[int] = []

    class Recorder:
        async def consume(self, size: int) -> None:
            charged.append(size)

    async def file(request: Request) -> Response:
        return Response(200, body=FileBody(path))

    router = echo_router()
    router.add("GET", "/file", file)
    _, address = await start_server(router, upload_limit=Recorder())
    client: RawClient = await connect(address)
    await client.send(
        GET + b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\nGET /file HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    sizes = [len((await client.response()).body) for _ in range(3)]
    assert sizes == [len(b"hello /hello"), len(b"part0;part1;part2;"), 200_000]
    assert sum(charged) == sum(sizes)


async def test_expect_100_continue(start_server: Start, connect: Any) -> None:
    _, address = await start_server(echo_router())
    client: RawClient = await connect(address)
    await client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    )
    interim = await client.stream.receive_some(4096)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    await client.send(b"body")
    response = await client.response("POST")
    assert response.body == b"body"


async def test_unread_request_bodies_are_skipped(start_server: Start, connect: Any) -> None:
    _, address = await start_server(echo_router())
    client: RawClient = await connect(address)
    # /hello ignores the body; the next request on the connection must still parse.
    await client.send(b"GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n")
    response = await client.response()
    assert response.status == 200
    await client.send(b"xyz" + GET)
    assert (await client.response()).body == b"hello /hello"


async def test_request_body_over_the_limit_gets_413(start_server: Start, connect: Any) -> None:
    _, address = await start_server(echo_router(), limits=ServerLimits(max_body_size=10))
    client: RawClient = await connect(address)
    await client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n01234567890")
    response = await client.response("POST")
    assert response.status == 413
    assert response.headers["connection"] == "close"


async def test_handler_errors_become_500_and_the_server_lives_on(
    start_server: Start, connect: Any
) -> None:
    server, address = await start_server(echo_router())
    client: RawClient = await connect(address)
    await client.send(b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await client.response()).status == 500
    client = await connect(address)
    await client.send(GET)
    assert (await client.response()).status == 200
    assert server.statistics().requests[("GET", 500)] == 1


# -- limits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"GET / HTTP/1.2\r\n\r\n", 505),
        (b"FOO / HTTP/1.1\r\nHost: t\r\n\r\n", 501),
        (b"BREW /pot HTTP/1.1\r\n\r\n", 501),
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
        (b"hello\r\n\r\n", 400),
        (b"GET /a b c HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nNo-Colon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"v" * 20000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 17000 + b" HTTP/1.1\r\n\r\n", 414),
    ],
)
async def test_bad_requests_get_their_status_and_close(
    start_server: Start, connect: Any, request_bytes: bytes, status: int
) -> None:
    server, address = await start_server(echo_router())
    client: RawClient = await connect(address)
    await client.send(request_bytes)
    data = await client.read_to_eof()
    assert data.startswith(b"HTTP/1.1 %d " % status)
    assert b"Connection: close\r\n" in data
    assert sum(server.statistics().bad_requests.values()) == 1
    client = await connect(address)
    await client.send(GET)
    assert (await client.response()).status == 200


async def test_slow_loris_head_gets_408(start_server: Start, connect: Any) -> None:
    server, address = await start_server(echo_router(), limits=ServerLimits(head_timeout=0.3))
    client: RawClient = await connect(address)
    await client.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n")  # never finished
    data = await client.read_to_eof()
    assert data.startswith(b"HTTP/1.1 408 ")
    assert server.statistics().bad_requests == {"head_timeout": 1}


async def test_slow_second_head_and_stalled_body_get_408(start_server: Start, connect: Any) -> None:
    server, address = await start_server(
        echo_router(), limits=ServerLimits(head_timeout=0.3, body_timeout=0.3)
    )
    client: RawClient = await connect(address)
    await client.send(GET)
    assert (await client.response()).status == 200
    await client.send(b"GET /hello HTTP/1.1\r\n")  # the second head never ends
    assert (await client.read_to_eof()).startswith(b"HTTP/1.1 408 ")
    client = await connect(address)
    await client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    assert (await client.read_to_eof()).startswith(b"HTTP/1.1 408 ")
    assert server.statistics().bad_requests == {"head_timeout": 1, "body_timeout": 1}


async def test_trickling_bytes_do_not_extend_the_head_deadline(
    start_server: Start, connect: Any
) -> None:
    _, address = await start_server(echo_router(), limits=ServerLimits(head_timeout=0.3))
    client: RawClient = await connect(address)
    await client.send(b"GET /hello HTTP/1.1\r\n")
    with trio.fail_after(10):
        while True:  # one header line per 50 ms: the head still must end within 0.3 s
            try:
                await client.send(b"X-Slow: 1\r\n")
            except trio.BrokenResourceError:
                break
            with trio.move_on_after(0.05):
                data = await client.stream.receive_some(4096)
                assert data.startswith(b"HTTP/1.1 408 ")
                break


async def test_idle_keep_alive_connections_are_closed(start_server: Start, connect: Any) -> None:
    server, address = await start_server(echo_router(), limits=ServerLimits(keep_alive_timeout=0.2))
    client: RawClient = await connect(address)
    await client.send(GET)
    assert (await client.response()).status == 200
    assert await client.read_to_eof() == b""  # closed silently: no 408 between requests
    assert server.statistics().bad_requests == {}


async def test_silent_new_connection_is_closed_without_a_response(
    start_server: Start, connect: Any
) -> None:
    _, address = await start_server(echo_router(), limits=ServerLimits(head_timeout=0.2))
    client: RawClient = await connect(address)
    assert await client.read_to_eof() == b""


def _blocking_router() -> tuple[Router, trio.Event, list[int]]:
    """/wait handlers park until the event is set; ``entered`` counts them."""
    release = trio.Event()
    entered: list[int] = []
    router = echo_router()

    async def wait(request: Request) -> Response:
        entered.append(1)
        await release.wait()
        return Response.text(200, "released")

    router.add("GET", "/wait", wait)
    return router, release, entered


WAIT = b"GET /wait HTTP/1.1\r\nHost: test\r\n\r\n"


async def test_full_server_evicts_the_idle_connection_nearest_its_deadline(
    start_server: Start, connect: Any
) -> None:
    server, address = await start_server(echo_router(), limits=ServerLimits(max_connections=2))
    first: RawClient = await connect(address)
    second: RawClient = await connect(address)
    for client in (first, second):  # first goes idle first: nearest its keep-alive deadline
        await client.send(GET)
        assert (await client.response()).status == 200
    third: RawClient = await connect(address)
    await third.send(GET)
    assert (await third.response()).status == 200
    assert await first.closed_by_server()
    await second.send(GET)
    assert (await second.response()).status == 200
    statistics = server.statistics()
    assert statistics.evicted_connections == {"full": 1}
    assert statistics.open_connections == 2


async def test_busy_connections_are_never_evicted_new_clients_wait(
    start_server: Start, connect: Any
) -> None:
    router, release, entered = _blocking_router()
    server, address = await start_server(router, limits=ServerLimits(max_connections=2))
    busy = [await connect(address), await connect(address)]
    for client in busy:
        await client.send(WAIT)
    third: RawClient = await connect(address)  # accepted by the kernel, not by the server
    await third.send(GET)
    await trio.testing.wait_all_tasks_blocked()
    assert len(entered) == 2
    assert server.statistics().open_connections == 2
    release.set()
    for client in busy:
        assert (await client.response()).body == b"released"
    assert (await third.response()).status == 200
    assert server.statistics().evicted_connections == {"full": 1}  # an idle one made room


async def test_one_source_cannot_take_every_slot(start_server: Start, connect: Any) -> None:
    router, release, _ = _blocking_router()
    limits = ServerLimits(max_connections=8, max_connections_per_source=2)
    server, address = await start_server(router, limits=limits)
    hog = [await connect(address, "127.0.0.2") for _ in range(2)]
    for client in hog:
        await client.send(WAIT)
    extra = await connect(address, "127.0.0.2")  # a third, all busy: closed at once
    assert await extra.closed_by_server()
    other = await connect(address, "127.0.0.3")  # another source is still served
    await other.send(GET)
    assert (await other.response()).status == 200
    assert server.statistics().refused_connections == 1
    release.set()
    for client in hog:
        assert (await client.response()).status == 200
    # Now idle: a new connection of the same source replaces its oldest one.
    again = await connect(address, "127.0.0.2")
    await again.send(GET)
    assert (await again.response()).status == 200
    statistics = server.statistics()
    assert statistics.evicted_connections == {"per_source": 1}
    assert statistics.open_connections == 3  # two of 127.0.0.2, one of 127.0.0.3


async def test_silent_connections_flood_does_not_lock_out_clients(
    start_server: Start, connect: Any
) -> None:
    server, address = await start_server(echo_router(), limits=ServerLimits(max_connections=16))
    silent = [await connect(address) for _ in range(64)]  # never send a byte
    client: RawClient = await connect(address)
    await client.send(GET)
    assert (await client.response()).status == 200
    statistics = server.statistics()
    assert statistics.open_connections <= 16
    assert statistics.evicted_connections["full"] >= 64 - 16
    closed = 0
    for sock in silent:
        closed += await sock.closed_by_server()
    assert closed >= 64 - 16 + 1


async def test_client_vanishing_mid_body_leaves_the_server_healthy(
    start_server: Start, connect: Any
) -> None:
    failed = trio.Event()

    async def upload(request: Request) -> Response:
        try:
            await request.body()
        except RemoteProtocolError:
            failed.set()
            raise
        raise AssertionError("the body cannot be complete")

    router = echo_router()
    router.add("POST", "/upload", upload)
    server, address = await start_server(router)
    client: RawClient = await connect(address)
    await client.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nxxx")
    await client.aclose()
    with trio.fail_after(10):
        await failed.wait()
    client = await connect(address)
    await client.send(GET)
    assert (await client.response()).status == 200
    assert server.statistics().bad_requests == {"incomplete": 1}


async def test_client_vanishing_mid_response_leaves_the_server_healthy(
    start_server: Start, connect: Any
) -> None:
    stopped = trio.Event()

    async def endless(request: Request) -> Response:
        async def chunks() -> Any:
            try:
                while True:
                    yield b"z" * 65536
            finally:
                stopped.set()

        return Response(200, body=chunks())

    router = echo_router()
    router.add("GET", "/endless", endless)
    server, address = await start_server(router)
    client: RawClient = await connect(address)
    await client.send(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n")
    await client.stream.receive_some(1000)
    linger_now = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER 0: close sends RST
    client.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_now)
    await client.aclose()
    with trio.fail_after(10):
        await stopped.wait()
    client = await connect(address)
    await client.send(GET)
    assert (await client.response()).status == 200
    assert server.statistics().aborted_responses == 1


# -- stop and metrics -----------------------------------------------------------------


async def test_graceful_stop_finishes_in_flight_responses(connect: Any) -> None:
    entered = trio.Event()
    release = trio.Event()

    async def slow(request: Request) -> Response:
        entered.set()
        await release.wait()
        return Response.text(200, "finished")

    router = echo_router()
    router.add("GET", "/slow", slow)
    server = HttpServer(router)
    async with trio.open_nursery() as nursery:
        (address,) = await nursery.start(server.serve, ["127.0.0.1:0"])
        busy: RawClient = await connect(address)
        idle: RawClient = await connect(address)
        await idle.send(GET)
        assert (await idle.response()).status == 200
        await busy.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        await entered.wait()
        server.shutdown(grace_period=30)
        assert await idle.closed_by_server()
        with pytest.raises(OSError):
            await trio.open_tcp_stream(*address)  # no longer accepting
        release.set()
        response = await busy.response()
        assert (response.status, response.body) == (200, b"finished")
        assert response.headers["connection"] == "close"
        await server.wait_stopped()


async def test_graceful_stop_cancels_what_outlives_the_grace_period(connect: Any) -> None:
    async def forever(request: Request) -> Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    server = HttpServer(forever)
    async with trio.open_nursery() as nursery:
        (address,) = await nursery.start(server.serve, ["127.0.0.1:0"])
        client: RawClient = await connect(address)
        await client.send(GET)
        await trio.testing.wait_all_tasks_blocked()
        server.shutdown(grace_period=0.2)
        await server.wait_stopped()
        assert await client.closed_by_server()


async def test_metrics_are_served_from_the_registry(start_server: Start, connect: Any) -> None:
    registry = CollectorRegistry()
    _, address = await start_server(echo_router(), registry=registry, component="origin")
    client: RawClient = await connect(address)
    await client.send(GET + b"FOO / HTTP/1.1\r\n\r\n")
    assert (await client.response()).status == 200
    await client.read_to_eof()
    client = await connect(address)
    await client.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
    response = await client.response()
    assert response.headers["content-type"].startswith("text/plain")
    text = response.body.decode()
    assert 'seedcast_origin_http_requests_total{method="GET",status="200"} 1.0' in text
    assert 'seedcast_origin_http_bad_requests_total{reason="method"} 1.0' in text
    assert "seedcast_origin_http_request_duration_seconds_bucket" in text
    assert "seedcast_origin_http_open_connections " in text


async def test_two_addresses_and_port_zero(nursery: trio.Nursery, connect: Any) -> None:
    server = HttpServer(echo_router())
    addresses = await nursery.start(server.serve, ["127.0.0.1:0", ("127.0.0.2", 0)])
    assert [host for host, _ in addresses] == ["127.0.0.1", "127.0.0.2"]
    for address in addresses:
        client: RawClient = await connect(address)
        await client.send(GET)
        assert (await client.response()).status == 200
    server.shutdown(1)


# -- fuzzing ----------------------------------------------------------------------------

_garbage_heads = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.builds(
        lambda method, target, version, fields: (
            f"{method} {target} {version}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in fields)
            + "\r\n"
        ).encode("latin-1"),
        st.sampled_from(["GET", "HEAD", "POST", "XYZ", "G\tT", "", "GET GET"]),
        st.text(st.characters(codec="latin-1"), max_size=30),
        st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/0.9", "HTTP/9.9", "HTTP/1", ""]),
        st.lists(
            st.tuples(
                st.text(st.characters(codec="latin-1"), max_size=15),
                st.text(st.characters(codec="latin-1"), max_size=30),
            ),
            max_size=4,
        ),
    ),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(heads=st.lists(_garbage_heads, min_size=1, max_size=3))
async def test_garbage_request_heads_never_crash_the_server(heads: list[bytes]) -> None:
    limits = ServerLimits(head_timeout=0.2, keep_alive_timeout=0.2, linger_timeout=0.2)
    server = HttpServer(echo_router(), limits=limits)
    async with trio.open_nursery() as nursery:
        (address,) = await nursery.start(server.serve, ["127.0.0.1:0"])
        stream = await trio.open_tcp_stream(*address)
        try:
            for head in heads:
                await stream.send_all(head)
            with trio.fail_after(10):
                while await stream.receive_some(65536):
                    pass
        except trio.BrokenResourceError:
            pass
        finally:
            await stream.aclose()
        healthy = RawClient(await trio.open_tcp_stream(*address))
        await healthy.send(GET)
        assert (await healthy.response()).status == 200
        await healthy.aclose()
        server.shutdown(0.5)
