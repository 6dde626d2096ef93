"""run_role's control side: hello/ready, status, role handlers, graceful stop, orphan rules."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from seedcast.control import (
    ControlChannel,
    ControlError,
    ControlMessage,
    ErrorCode,
    open_control_listener,
    socket_path_for,
)
from seedcast.roles import RoleRunner


class FakeLauncher:
    """The launcher's end of one control connection, recording notifications."""

    def __init__(self) -> None:
        self.channel: ControlChannel | None = None
        self.connected = trio.Event()
        self.send_notes, self.notes = trio.open_memory_channel[ControlMessage](100)

    async def handle(self, message: ControlMessage) -> Any:
        await self.send_notes.send(message)
        return None

    async def serve(self, listener: trio.SocketListener) -> None:
        stream = await listener.accept()
        self.channel = ControlChannel(stream, label="role")
        self.connected.set()
        await self.channel.run(self.handle)

    async def next_note(self) -> ControlMessage:
        with trio.fail_after(10):
            return await self.notes.receive()


@asynccontextmanager
async def fake_launcher(tmp_path: Path) -> AsyncIterator[tuple[FakeLauncher, str, trio.Nursery]]:
    path = socket_path_for(tmp_path)
    listener = await open_control_listener(path)
    launcher = FakeLauncher()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(launcher.serve, listener)
        yield launcher, path, nursery
        nursery.cancel_scope.cancel()
    await listener.aclose()


async def tcp_serve(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    host, port = listeners[0].socket.getsockname()[:2]
    task_status.started([f"{host}:{port}"])
    async with listeners[0]:
        await trio.sleep_forever()


def runner_for(path: str | None, **overrides: Any) -> RoleRunner:
    async def purge(message: Mapping[str, Any]) -> Mapping[str, Any]:
        return {"purged": message.get("prefix") or message.get("id"), "keys": sorted(message)}

    options: dict[str, Any] = {
        "role": "edge",
        "name": "edge-1",
        "serve": tcp_serve,
        "control_handlers": {"purge": purge},
        "statistics": lambda: {
            "req_per_s": 2.5,
            "hit_ratio": 0.5,
            "junk": object(),
            "nan": float("nan"),
        },
        "control_path": path,
    }
    options.update(overrides)
    return RoleRunner(**options)


async def test_hello_ready_status_handlers_shutdown(tmp_path: Path) -> None:
    async with fake_launcher(tmp_path) as (launcher, path, nursery):
        runner = runner_for(path)
        finished = trio.Event()

        async def run() -> None:
            await runner.main()
            finished.set()

        nursery.start_soon(run)
        hello = await launcher.next_note()
        assert (hello.type, hello.get("role"), hello.get("name"), hello.get("pid")) == (
            "hello",
            "edge",
            "edge-1",
            os.getpid(),
        )
        ready = await launcher.next_note()
        assert ready.type == "ready"
        (address,) = ready.get("addresses")
        assert address.startswith("127.0.0.1:")
        channel = launcher.channel
        assert channel is not None
        status = await channel.request("status")
        assert status.get("state") == "ready"
        assert status.get("statistics") == {"req_per_s": 2.5, "hit_ratio": 0.5}
        purged = await channel.request("purge", {"prefix": "/sample/"})
        assert purged.get("result") == {"purged": "/sample/", "keys": ["prefix", "type"]}
        purged = await channel.request("purge", {"video": "sample"})
        assert purged.get("result") == {"purged": "sample", "keys": ["id", "type"]}
        with pytest.raises(ControlError) as caught:
            await channel.request("set-rate", {"upload": 5.0})
        assert caught.value.code == ErrorCode.UNKNOWN_TYPE
        drained = await channel.request("drain")
        assert drained.get("result") == {"drained": False}
        reply = await channel.request("shutdown", {"deadline": 2.0})
        assert reply.type == "ok"
        with trio.fail_after(5):
            await finished.wait()
        assert runner.exit_code == 0
        assert runner.state == "stopped"


async def test_closing_the_control_socket_stops_the_role(tmp_path: Path) -> None:
    drain_started = trio.Event()

    async def slow_drain(message: Mapping[str, Any]) -> Mapping[str, Any]:
        drain_started.set()
        await trio.sleep_forever()  # never drains: the deadline must cut it
        return {}

    async with fake_launcher(tmp_path) as (launcher, path, nursery):
        runner = runner_for(path, control_handlers={"drain": slow_drain})
        finished = trio.Event()

        async def run() -> None:
            await runner.main()
            finished.set()

        nursery.start_soon(run)
        assert (await launcher.next_note()).type == "hello"
        assert (await launcher.next_note()).type == "ready"
        assert launcher.channel is not None
        await launcher.channel.aclose()
        with trio.fail_after(5):
            await finished.wait()
        assert drain_started.is_set()


async def test_a_role_that_fails_to_start_reports_why(tmp_path: Path) -> None:
    async def broken_serve(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        raise OSError(98, "Address already in use")

    async with fake_launcher(tmp_path) as (launcher, path, _):
        runner = runner_for(path, serve=broken_serve)
        with pytest.raises(BaseExceptionGroup) as caught:
            await runner.main()
        assert caught.group_contains(OSError)
        assert runner.exit_code == 1
        assert (await launcher.next_note()).type == "hello"
        error = await launcher.next_note()
        assert error.type == "error"
        assert "Address already in use" in error.get("message")


async def test_without_a_launcher_there_is_no_control_channel() -> None:
    runner = runner_for(None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner.main)
        while runner.state != "ready":
            await trio.lowlevel.checkpoint()
        runner.stop(1.0, "test")
    assert runner.state == "stopped"


# --- real processes ---------------------------------------------------------------


@contextmanager
def dummy(*options: str, env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """The test role as a real process; killed, reaped and closed at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "seedcast.testing.dummy_role", "--listen", "127.0.0.1:0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


async def wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int:
    with trio.fail_after(timeout):
        descriptor = os.pidfd_open(process.pid)
        try:
            await trio.lowlevel.wait_readable(descriptor)
        finally:
            trio.lowlevel.notify_closing(descriptor)
            os.close(descriptor)
    return process.wait()


@pytest.mark.slow
async def test_process_exits_when_the_launcher_hangs_up(tmp_path: Path) -> None:
    async with fake_launcher(tmp_path) as (launcher, path, _):
        launched = {"SEEDCAST_CONTROL": path, "SEEDCAST_LAUNCHER_PID": str(os.getpid())}
        with dummy(env=launched) as process:
            assert (await launcher.next_note()).get("pid") == process.pid
            assert (await launcher.next_note()).type == "ready"
            assert launcher.channel is not None
            await launcher.channel.aclose()
            assert await wait_exit(process, 5) == 0
            assert process.stdout is not None
            assert b"control channel closed" in process.stdout.read()


@pytest.mark.slow
async def test_process_refuses_to_run_for_a_launcher_that_is_not_its_parent() -> None:
    # Our parent is this test, not pid 1: the launcher "died" before we started.
    with dummy(
        env={"SEEDCAST_CONTROL": "/nonexistent.sock", "SEEDCAST_LAUNCHER_PID": "1"}
    ) as process:
        assert await wait_exit(process, 10) == 1


@pytest.mark.slow
async def test_sigterm_stops_a_role_gracefully() -> None:
    with dummy("--name", "alone") as process:
        assert process.stdout is not None
        line = b""
        with trio.fail_after(10):
            while b" ready " not in line:
                line = await trio.to_thread.run_sync(process.stdout.readline)
                assert line, "the dummy exited before ready"
        process.send_signal(signal.SIGTERM)
        assert await wait_exit(process, 5) == 0
        assert b"stopping reason=SIGTERM" in process.stdout.read()
