"""The HTTP server's process-wide egress cap (``HttpServer(upload_limit=...)``), which the
distribution benchmark relies on: bytes, file and streamed bodies all pay into one bucket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import trio
from seedcast.http11 import FileBody, HttpClient, HttpServer, Request, Response, Router
from seedcast.ratelimit import TokenBucket
from seedcast.units import KiB, MiB

RATE = 8 * MiB
SIZE = 1 * MiB


async def _serve(tmp_path: Path, limit: TokenBucket | None) -> tuple[HttpServer, Router, Path]:
    path = tmp_path / "file.bin"
    path.write_bytes(bytes(range(256)) * (SIZE // 256))
    router = Router()

    async def memory(request: Request) -> Response:
        return Response(200, [("Content-Type", "application/octet-stream")], path.read_bytes())

    async def file(request: Request) -> Response:
        return Response(200, [("Content-Type", "application/octet-stream")], FileBody(path))

    async def stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            data = path.read_bytes()
            for start in range(0, len(data), 100 * KiB):
                yield data[start : start + 100 * KiB]

        return Response(200, [("Content-Type", "application/octet-stream")], chunks())

    router.add("GET", "/memory", memory)
    router.add("GET", "/file", file)
    router.add("GET", "/stream", stream)
    return HttpServer(router, upload_limit=limit), router, path


async def _fetch_all(base: str, paths: list[str]) -> list[bytes]:
    bodies: dict[int, bytes] = {}
    async with HttpClient() as client:

        async def one(number: int, path: str) -> None:
            response = await client.request("GET", base + path)
            assert response.status == 200
            bodies[number] = response.content

        async with trio.open_nursery() as nursery:
            for number, path in enumerate(paths):
                nursery.start_soon(one, number, path)
    return [bodies[number] for number in range(len(paths))]


async def test_every_kind_of_body_pays_into_the_shared_upload_limit(tmp_path: Path) -> None:
    limit = TokenBucket(RATE)
    server, _, path = await _serve(tmp_path, limit)
    paths = ["/memory", "/file", "/stream", "/file"]
    async with trio.open_nursery() as nursery:
        ((host, port),) = await nursery.start(server.serve, ["127.0.0.1:0"])
        started = trio.current_time()
        bodies = await _fetch_all(f"http://{host}:{port}", paths)
        elapsed = trio.current_time() - started
        server.shutdown(0.1)
    assert bodies == [path.read_bytes()] * len(paths)
    total = SIZE * len(paths)
    statistics = limit.statistics()
    assert statistics.bytes_consumed == total
    # The bucket may hold `burst` bytes of credit when the first response starts; no more.
    assert elapsed >= (total - statistics.burst) / RATE
    assert server.statistics().response_body_bytes == total


async def test_without_a_limit_nothing_is_charged(tmp_path: Path) -> None:
    server, _, path = await _serve(tmp_path, None)
    async with trio.open_nursery() as nursery:
        ((host, port),) = await nursery.start(server.serve, ["127.0.0.1:0"])
        bodies = await _fetch_all(f"http://{host}:{port}", ["/file", "/memory"])
        server.shutdown(0.1)
    assert bodies == [path.read_bytes()] * 2
    assert server.upload_limit is None
