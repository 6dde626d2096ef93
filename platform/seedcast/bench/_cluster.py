"""The processes of one benchmark run: role processes, client workers, and their CPU time.

How it works. A :class:`RunCluster` is an async context manager that owns a
nursery. :meth:`RunCluster.start_role` starts ``python -m seedcast <role>
...`` in its own session (so a Ctrl-C in the terminal reaches only the
benchmark, which then stops everything in order), copies the role's log
lines to ``<log_dir>/<name>.log`` and returns the addresses of its ``ready``
line. :meth:`RunCluster.start_worker` starts a worker (``python -m
seedcast.bench._clients`` or another module speaking :mod:`seedcast.bench._worker`'s
line protocol), sends it its job as one JSON line and hands every JSON line it
prints to a callback. Leaving the context stops every process it
started: workers get EOF on stdin, roles SIGTERM, and whatever is still there
after a grace period SIGKILL; each is waited for, so no PID outlives the run.
With ``--netns`` every command line is wrapped (``ip netns exec <ns> ...``,
which execs the program: the PID is still the program's own).

:func:`cpu_seconds` reads a set of PIDs' user+system time from ``/proc``;
:class:`SystemCpu` the whole machine's busy fraction between two samples
(both Linux; elsewhere they report nothing).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import trio
from seedcast.bench._worker import LineReader
from seedcast.errors import SeedcastError

__all__ = ["RunCluster", "SystemCpu", "Worker", "cpu_seconds", "open_run_cluster"]

log = logging.getLogger("seedcast.bench")

START_TIMEOUT = 30.0
STOP_GRACE = 5.0
_READY = re.compile(rb"\bready addresses=(\S+)")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ClusterError(SeedcastError):
    """A process of the run did not start or died early."""


@dataclass(slots=True)
class _Child:
    name: str
    process: trio.Process
    role: bool
    log_file: BinaryIO
    ready: trio.Event = field(default_factory=trio.Event)
    addresses: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Worker:
    """A client worker process: send it lines, it reports through the callback."""

    name: str
    process: trio.Process

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(json.dumps(message).encode() + b"\n")

    async def close_input(self) -> None:
        assert self.process.stdin is not None
        try:
            await self.process.stdin.aclose()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass


Wrap = Callable[[str, list[str]], list[str]]
"""``wrap(name, argv)``: the command line that runs ``argv`` as process ``name`` (e.g. inside
its network namespace: ``ip netns exec <ns> argv...``)."""


def _as_is(name: str, argv: list[str]) -> list[str]:
    return argv


class RunCluster:
    def __init__(
        self, nursery: trio.Nursery, log_dir: Path, env: dict[str, str], wrap: Wrap = _as_is
    ) -> None:
        self._nursery = nursery
        self.log_dir = log_dir
        self._env = env
        self._wrap = wrap
        self._children: list[_Child] = []
        self._stopping = False
        self.role_failed = trio.Event()
        """Set when a role process exits on its own after it was ready."""
        self.failed_roles: list[str] = []

    @property
    def pids(self) -> list[int]:
        return [child.process.pid for child in self._children if child.process.returncode is None]

    def process_names(self) -> dict[int, str]:
        return {child.process.pid: child.name for child in self._children}

    async def start_role(self, name: str, argv: Sequence[str]) -> list[str]:
        """Start ``seedcast <argv>``; returns the addresses of its ``ready`` log line."""
        command = self._wrap(name, [sys.executable, "-m", "seedcast", *argv])
        log_file = (self.log_dir / f"{name}.log").open("wb")
        process = await trio.lowlevel.open_process(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self._env,
            start_new_session=True,
        )
        child = _Child(name, process, True, log_file)
        self._children.append(child)
        self._nursery.start_soon(self._read_role_log, child)
        with trio.move_on_after(START_TIMEOUT):
            await child.ready.wait()
        if not child.addresses:
            tail = " | ".join(child.tail[-3:]) or "no output"
            raise ClusterError(f"{name} did not become ready ({' '.join(argv[:3])}...): {tail}")
        return child.addresses

    async def _read_role_log(self, child: _Child) -> None:
        stream = child.process.stderr
        assert stream is not None
        try:
            async for line in LineReader(stream):
                child.log_file.write(line + b"\n")
                child.log_file.flush()
                child.tail = [*child.tail[-4:], line.decode(errors="replace")]
                if not child.ready.is_set():
                    match = _READY.search(line)
                    if match:
                        child.addresses = match.group(1).decode().split(",")
                        child.ready.set()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            if child.ready.is_set() and child.addresses and not self._stopping:
                self.failed_roles.append(child.name)
                self.role_failed.set()
            child.ready.set()  # exited before ready: start_role reports it

    async def start_worker(
        self,
        name: str,
        job: dict[str, Any],
        on_message: Callable[[dict[str, Any]], None],
        module: str = "seedcast.bench._clients",
    ) -> Worker:
        """Start worker ``python -m <module>`` with ``job``; every line it prints goes to
        ``on_message`` (the protocol: :mod:`seedcast.bench._worker`)."""
        log_file = (self.log_dir / f"{name}.log").open("wb")
        process = await trio.lowlevel.open_process(
            self._wrap(name, [sys.executable, "-m", module]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=self._env,
            start_new_session=True,
        )
        child = _Child(name, process, False, log_file)
        self._children.append(child)
        worker = Worker(name, process)
        self._nursery.start_soon(self._read_worker, child, on_message)
        await worker.send(job)
        return worker

    async def _read_worker(
        self, child: _Child, on_message: Callable[[dict[str, Any]], None]
    ) -> None:
        stream = child.process.stdout
        assert stream is not None
        try:
            async for line in LineReader(stream):
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                message.setdefault("worker", child.name)
                on_message(message)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        on_message({"event": "exit", "worker": child.name})

    async def close_worker_inputs(self) -> None:
        """EOF to every worker: each stops, reports what it has, and exits."""
        for child in self._children:
            if not child.role and child.process.stdin is not None:
                try:
                    await child.process.stdin.aclose()
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    pass

    def tail(self, name: str) -> list[str]:
        for child in self._children:
            if child.name == name:
                if child.role:
                    return list(child.tail)
                path = self.log_dir / f"{name}.log"
                try:
                    return path.read_text(errors="replace").splitlines()[-5:]
                except OSError:
                    return []
        return []

    async def stop_all(self) -> None:
        """Workers: EOF, then wait; roles: SIGTERM; after the grace period SIGKILL. Waits for all."""
        self._stopping = True
        await self.close_worker_inputs()
        with trio.move_on_after(STOP_GRACE):
            for child in self._children:
                if not child.role:
                    await child.process.wait()
        for child in reversed(self._children):
            if child.process.returncode is None:
                send_signal(child.process, signal.SIGTERM)
        with trio.move_on_after(STOP_GRACE):
            for child in self._children:
                await child.process.wait()
        for child in self._children:
            if child.process.returncode is None:
                log.warning("%s did not stop in %.0f s; killing it", child.name, STOP_GRACE)
                send_signal(child.process, signal.SIGKILL)
        for child in self._children:
            await child.process.wait()
            child.log_file.close()


def send_signal(process: trio.Process, number: int) -> None:
    """Signal a child that may already have exited."""
    try:
        process.send_signal(number)
    except ProcessLookupError:
        pass


@asynccontextmanager
async def open_run_cluster(log_dir: Path, wrap: Wrap = _as_is) -> AsyncIterator[RunCluster]:
    """A :class:`RunCluster` whose processes are all stopped (and reaped) on exit;
    ``wrap`` changes each process's command line (see :data:`Wrap`)."""
    os.makedirs(log_dir, exist_ok=True)
    env = {**os.environ}
    env.pop("SEEDCAST_CONTROL", None)
    env["PYTHONUNBUFFERED"] = "1"
    async with trio.open_nursery() as nursery:
        cluster = RunCluster(nursery, log_dir, env, wrap)
        try:
            yield cluster
        finally:
            with trio.CancelScope(shield=True):
                await cluster.stop_all()
            nursery.cancel_scope.cancel()


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (all threads); 0 for the gone."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _TICKS


class SystemCpu:
    """Busy fraction of all CPUs from its creation to :meth:`busy` (from /proc/stat)."""

    def __init__(self) -> None:
        self._start = _system_ticks()

    def busy(self) -> float | None:
        end = _system_ticks()
        if self._start is None or end is None:
            return None
        busy = end[0] - self._start[0]
        total = end[1] - self._start[1]
        return busy / total if total > 0 else None


def _system_ticks() -> tuple[int, int] | None:
    try:
        line = Path("/proc/stat").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    values = [int(value) for value in line.split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total
