"""Fixtures for the HTTP core: a running server on a loopback port, raw clients."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from http11_helpers import RawClient, Start
from seedcast.http11 import Handler, HttpServer


@pytest.fixture
async def start_server(nursery: trio.Nursery) -> Start:
    """``server, (host, port) = await start_server(handler, limits=..., ...)``."""

    async def start(handler: Handler, **options: Any) -> tuple[HttpServer, tuple[str, int]]:
        server = HttpServer(handler, **options)
        addresses = await nursery.start(server.serve, ["127.0.0.1:0"])
        return server, addresses[0]

    return start


@pytest.fixture
async def connect() -> Any:
    clients: list[RawClient] = []

    async def open_client(address: tuple[str, int], source: str | None = None) -> RawClient:
        """A raw client; ``source`` binds it to that loopback address first."""
        if source is None:
            stream = await trio.open_tcp_stream(*address)
        else:
            sock = trio.socket.socket()
            await sock.bind((source, 0))
            await sock.connect(address)
            stream = trio.SocketStream(sock)
        client = RawClient(stream)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.aclose()
