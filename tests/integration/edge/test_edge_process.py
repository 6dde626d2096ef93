"""A real ``seedcast edge`` process driven through the control channel, as the launcher does.

Purge and status go over the control socket; shutdown is graceful; the disk
tier is still there after a restart with the origin gone.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from edge_harness import Resource, ScriptedOrigin, start_origin
from seedcast.control import ControlChannel, ControlMessage, open_control_listener
from seedcast.http11 import HttpClient

pytestmark = pytest.mark.slow


class WallClock:
    def __call__(self) -> float:
        return time.time()


@asynccontextmanager
async def edge_process(
    tmp_path: Path, origin_url: str, disk: Path
) -> AsyncIterator[tuple[ControlChannel, str, trio.Process]]:
    socket_path = str(tmp_path / f"control-{time.monotonic_ns()}.sock")
    listener = await open_control_listener(socket_path)
    environment = dict(os.environ, SEEDCAST_CONTROL=socket_path)
    environment.pop("SEEDCAST_LAUNCHER_PID", None)
    command = [
        sys.executable, "-m", "seedcast", "edge", "--name", "edge-1",
        "--origin", origin_url, "--listen", "127.0.0.1:0",
        "--cache-disk", f"{disk}:16MiB", "--cache-memory", "8MiB",
    ]  # fmt: skip
    log_file = open(tmp_path / "edge.log", "ab")  # noqa: ASYNC230, SIM115
    process = await trio.lowlevel.open_process(
        command, env=environment, cwd=str(tmp_path), stderr=log_file
    )
    ready = trio.Event()
    addresses: list[str] = []

    async def on_message(message: ControlMessage) -> Any:
        if message.type == "ready":
            addresses.extend(message.get("addresses"))
            ready.set()
        return None

    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(20):
                stream = await listener.accept()
            channel = ControlChannel(stream, label="edge")
            nursery.start_soon(channel.run, on_message)
            with trio.fail_after(20):
                await ready.wait()
            yield channel, f"http://{addresses[0]}", process
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
        log_file.close()
        await listener.aclose()


async def test_edge_process_purge_status_shutdown_and_restart(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    origin = ScriptedOrigin(WallClock())  # type: ignore[arg-type]
    await start_origin(nursery, origin)
    target = "/sample/chunk-0-00001.m4s"
    body = os.urandom(300_000)
    origin.resources[target] = Resource(body, "max-age=3600")
    disk = tmp_path / "disk"
    async with HttpClient() as client:
        async with edge_process(tmp_path, origin.url, disk) as (channel, url, process):
            first = await client.request("GET", url + target)
            assert first.headers["x-cache"] == "MISS"
            assert (await client.request("GET", url + target)).headers["x-cache"] == "HIT"
            purged = await channel.request("purge", {"prefix": "/sample/"})
            assert purged.get("result") == {"purged": 1}
            assert (await client.request("GET", url + target)).headers["x-cache"] == "MISS"
            status = await channel.request("status")
            assert status.get("statistics")["hit_ratio"] > 0
            await channel.request("shutdown", {"deadline": 3})
            with trio.fail_after(15):
                await process.wait()
            assert process.returncode == 0
        await origin.stop()
        async with edge_process(tmp_path, origin.url, disk) as (channel, url, process):
            again = await client.request("GET", url + target)
            assert again.status == 200
            assert again.headers["x-cache"] == "HIT"
            assert again.content == body
            await channel.request("shutdown", {"deadline": 3})
            with trio.fail_after(15):
                await process.wait()
    assert origin.count(target) == 2
