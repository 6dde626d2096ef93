"""The worker side of the benches' line protocol (the parent side is :mod:`._cluster`).

A worker (``python -m seedcast.bench._clients`` or ``._streaming_viewers``)
reads JSON lines on stdin: first its job, then ``{"start_at": <unix time>}``;
stdin closing means stop. It writes JSON lines on stdout (``{"event": ...}``),
which :meth:`seedcast.bench._cluster.RunCluster.start_worker` hands to the
bench's callback. :func:`run_worker` is a worker's ``main``: an exception is
reported as an ``error`` event before it propagates.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

__all__ = [
    "PROGRESS_SECONDS",
    "Emit",
    "JobInput",
    "LineReader",
    "emit",
    "report_progress",
    "run_worker",
]

PROGRESS_SECONDS = 0.5
"""How often a worker prints its ``progress`` event."""

Emit = Callable[[dict[str, Any]], None]


def emit(message: dict[str, Any]) -> None:
    """Print one event line to the parent."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class LineReader:
    """Lines (without the newline) from a byte stream; ``async for`` or :meth:`next_line`."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next_line(self) -> bytes | None:
        """The next whole line, or None at EOF (an unterminated last line is dropped)."""
        while b"\n" not in self._buffer:
            data = await self._stream.receive_some(65536)
            if not data:
                return None
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def __aiter__(self) -> LineReader:
        return self

    async def __anext__(self) -> bytes:
        line = await self.next_line()
        if line is None:
            raise StopAsyncIteration
        return line


class JobInput(LineReader):
    """The parent's lines on stdin: the job, the start instant, then EOF to stop."""

    def __init__(self, stream: trio.abc.ReceiveStream | None = None) -> None:
        super().__init__(stream or trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())))

    async def job(self) -> dict[str, Any] | None:
        """The first line's job, or None when stdin closed first."""
        line = await self.next_line()
        return None if line is None else dict(json.loads(line))

    async def start_at(self) -> float | None:
        """The common start instant (unix time), or None when stdin closed first."""
        line = await self.next_line()
        return None if line is None else float(json.loads(line)["start_at"])

    async def wait_closed(self) -> None:
        """Until the parent closes stdin (any further line is ignored)."""
        while await self.next_line() is not None:
            pass


async def report_progress(send: Emit, progress: Callable[[], dict[str, Any]]) -> None:
    """Print ``{"event": "progress", **progress()}`` every :data:`PROGRESS_SECONDS`, forever."""
    while True:
        send({"event": "progress", **progress()})
        await trio.sleep(PROGRESS_SECONDS)


def run_worker(serve: Callable[[Emit], Awaitable[None]]) -> None:
    """Run ``serve(emit)`` under trio; Ctrl-C is quiet, an error is reported, then raised."""
    try:
        trio.run(serve, emit)
    except KeyboardInterrupt:
        pass
    except Exception as error:
        emit({"event": "error", "message": f"{type(error).__name__}: {error}"})
        raise
