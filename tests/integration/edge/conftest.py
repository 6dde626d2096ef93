"""Fixtures for the edge's integration tests (helpers live in edge_harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from edge_harness import FakeClock, ScriptedOrigin, start_origin
from seedcast.http11 import HttpClient


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def origin(nursery: trio.Nursery, clock: FakeClock) -> ScriptedOrigin:
    scripted = ScriptedOrigin(clock)
    await start_origin(nursery, scripted)
    return scripted


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    async with HttpClient(
        connect_timeout=5, read_timeout=10, max_connections_per_host=256
    ) as http_client:
        yield http_client
