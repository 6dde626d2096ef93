"""Edge test harness: a scriptable origin on seedcast.http11, a fake wall clock, edges.

The origin counts every request it gets, can hold a response (head or body)
until the test opens a gate, can fail with a status, and answers conditional
GETs with 304 when the ETag matches. Its Date headers come from the same fake
clock the edge uses, so freshness and age are exact and tests advance time
instead of sleeping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import trio
from seedcast.config import ClusterConfig
from seedcast.edge.proxy import Edge
from seedcast.edge.server import EdgeOptions, serve
from seedcast.http11 import HttpServer, Request, Response
from seedcast.http11.semantics import http_date

START = 1_700_000_000.0


class FakeClock:
    """Wall-clock time the test controls (the edge's ``clock`` and the origin's Date)."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Resource:
    body: bytes
    cache_control: str | None = "max-age=60"
    etag: str | None = None
    last_modified: float | None = None
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    hold_head: trio.Event | None = None
    """When set, the response head waits for this event."""
    hold_body_after: int | None = None
    """Send this many body bytes, then wait for ``release_body``."""
    release_body: trio.Event | None = None
    abort_body_after: int | None = None
    """Send this many body bytes, then break the connection."""
    send_length: bool = True


@dataclass
class SeenRequest:
    method: str
    target: str
    headers: dict[str, str]


class ScriptedOrigin:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.resources: dict[str, Resource] = {}
        self.seen: list[SeenRequest] = []
        self.url = ""
        self.server: HttpServer | None = None
        self.scope = trio.CancelScope()
        self.on_request: Any = None

    def count(self, target: str) -> int:
        return sum(1 for seen in self.seen if seen.target == target)

    async def handle(self, request: Request) -> Response:
        self.seen.append(
            SeenRequest(
                request.method,
                request.target,
                {name.lower(): value for name, value in request.headers.items()},
            )
        )
        if self.on_request is not None:
            self.on_request(request)
        resource = self.resources.get(request.target)
        if resource is None:
            return Response(404, [("Content-Type", "text/plain")], b"no such thing\n")
        if resource.hold_head is not None:
            await resource.hold_head.wait()
        headers = [("Date", http_date(self.clock()))]
        if resource.cache_control is not None:
            headers.append(("Cache-Control", resource.cache_control))
        if resource.etag is not None:
            headers.append(("ETag", resource.etag))
        if resource.last_modified is not None:
            headers.append(("Last-Modified", http_date(resource.last_modified)))
        headers.extend(resource.headers)
        if resource.etag is not None and request.headers.get("if-none-match") == resource.etag:
            return Response(304, headers)
        if resource.send_length:
            headers.append(("Content-Length", str(len(resource.body))))
        if (
            resource.hold_body_after is None
            and resource.abort_body_after is None
            and resource.send_length
        ):
            return Response(resource.status, headers, resource.body)
        return Response(resource.status, headers, self._stream(resource))

    async def _stream(self, resource: Resource) -> AsyncIterator[bytes]:
        body = resource.body
        if resource.abort_body_after is not None:
            yield body[: resource.abort_body_after]
            raise ConnectionAbortedError("origin breaks off on purpose")
        split = resource.hold_body_after if resource.hold_body_after is not None else len(body)
        if split:
            yield body[:split]
        if resource.release_body is not None:
            await resource.release_body.wait()
        if body[split:]:
            yield body[split:]

    async def stop(self) -> None:
        """Kill the origin: its port stops accepting connections."""
        self.scope.cancel()
        if self.server is not None:
            await self.server.wait_stopped()


async def start_origin(nursery: trio.Nursery, origin: ScriptedOrigin, port: int = 0) -> None:
    async def run(task_status: trio.TaskStatus[list[tuple[str, int]]]) -> None:
        with origin.scope:
            origin.server = HttpServer(origin.handle)
            await origin.server.serve([f"127.0.0.1:{port}"], task_status=task_status)

    bound = await nursery.start(run)
    host, bound_port = bound[0]
    origin.url = f"http://{host}:{bound_port}"


@dataclass
class RunningEdge:
    url: str
    host: str
    edge: Edge
    server: HttpServer
    scope: trio.CancelScope

    async def stop(self) -> None:
        self.scope.cancel()
        await self.server.wait_stopped()


async def start_edge(
    nursery: trio.Nursery,
    config: ClusterConfig,
    clock: FakeClock,
    *,
    origin: str,
    name: str = "edge-1",
    listen: str = "127.0.0.1:0",
    **edge_settings: Any,
) -> RunningEdge:
    """Run an edge in ``nursery``; ``edge_settings`` are EdgeConfig fields to override."""
    edges = tuple(
        dataclasses.replace(edge, **edge_settings) if edge.name == name else edge
        for edge in config.edges
    )
    config = dataclasses.replace(config, edges=edges)
    scope = trio.CancelScope()
    ready: dict[str, Any] = {}

    def on_ready(edge: Edge, server: HttpServer) -> None:
        ready["edge"] = edge
        ready["server"] = server

    async def run(task_status: trio.TaskStatus[list[str]]) -> None:
        with scope:
            await serve(
                config,
                name,
                options=EdgeOptions(origin=origin, listen=listen),
                clock=clock,
                on_ready=on_ready,
                task_status=task_status,
            )

    addresses = await nursery.start(run)
    return RunningEdge(
        url=f"http://{addresses[0]}",
        host=addresses[0],
        edge=ready["edge"],
        server=ready["server"],
        scope=scope,
    )


async def raw_exchange(host_port: str, data: bytes) -> bytes:
    """Send raw bytes to ``host:port`` and read until the server closes (bounded)."""
    host, _, port = host_port.rpartition(":")
    stream = await trio.open_tcp_stream(host, int(port))
    received = b""
    async with stream:
        await stream.send_all(data)
        with trio.move_on_after(5):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                received += chunk
                if b"\r\n\r\n" in received and _complete(received):
                    break
    return received


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False
