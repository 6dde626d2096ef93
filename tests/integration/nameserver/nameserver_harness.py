"""Helpers for the nameserver's integration tests: start a server, tiny /healthz edges, framing."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from typing import Any

import dns.asyncquery
import dns.message
import dns.rdatatype
import trio
from seedcast.config import ClusterConfig
from seedcast.http11 import HttpServer, Request, Response, Router
from seedcast.nameserver.server import NameServer
from seedcast.units import parse_host_port


@dataclass
class Running:
    server: NameServer
    host: str
    port: int
    metrics: tuple[str, int]

    async def udp(
        self, query: dns.message.Message, *, source: str | None = None
    ) -> dns.message.Message:
        response = await dns.asyncquery.udp(
            query, self.host, timeout=5, port=self.port, source=source, ignore_trailing=False
        )
        assert query.is_response(response)
        return response

    async def tcp(self, query: dns.message.Message) -> dns.message.Message:
        return await dns.asyncquery.tcp(query, self.host, timeout=5, port=self.port)

    async def addresses(self, name: str, *, source: str | None = None) -> list[str]:
        response = await self.udp(dns.message.make_query(name, "A"), source=source)
        return [
            rdata.to_text()
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.A
            for rdata in rrset
        ]


async def start_nameserver(
    nursery: trio.Nursery, config: ClusterConfig, *, probe: bool = False, seed: int = 1
) -> Running:
    server = NameServer(config, "dns-test", rng=random.Random(seed), probe=probe)
    addresses = await nursery.start(lambda task_status: server.serve(task_status=task_status))
    host, port = parse_host_port(addresses[0])
    metrics = parse_host_port(addresses[1])
    return Running(server, host, port, metrics)


@dataclass
class TinyEdge:
    """An HTTP server whose /healthz answers ``status`` with an optional load figure."""

    host: str
    status: int = 200
    load: float | None = None
    port: int = 0
    probes: int = 0
    server: HttpServer | None = field(default=None, repr=False)

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"

    async def healthz(self, request: Request) -> Response:
        self.probes += 1
        body: dict[str, Any] = {"status": "ok" if self.status == 200 else "failing"}
        if self.load is not None:
            body["load"] = self.load
        return Response.json(self.status, body)


async def start_edge(nursery: trio.Nursery, host: str) -> TinyEdge:
    edge = TinyEdge(host)
    router = Router()
    router.add("GET", "/healthz", edge.healthz)
    edge.server = HttpServer(router, component="tinyedge")
    bound = await nursery.start(edge.server.serve, [f"{host}:0"])
    edge.port = bound[0][1]
    return edge


def frame(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


async def read_frame(stream: trio.SocketStream, buffer: bytearray) -> bytes | None:
    """One length-prefixed DNS message from ``stream``; None when it closes first."""
    while True:
        if len(buffer) >= 2 and len(buffer) >= 2 + (buffer[0] << 8 | buffer[1]):
            length = buffer[0] << 8 | buffer[1]
            message = bytes(buffer[2 : 2 + length])
            del buffer[: 2 + length]
            return message
        data = await stream.receive_some(65536)
        if not data:
            return None
        buffer += data


async def http_get(address: tuple[str, int], path: str) -> tuple[int, str]:
    from seedcast.http11 import HttpClient

    async with HttpClient(connect_timeout=5, read_timeout=5) as client:
        response = await client.request("GET", f"http://{address[0]}:{address[1]}{path}")
        return response.status, response.text()
