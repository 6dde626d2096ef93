"""The supervisor: starts every process of a cluster, watches it, stops it.

One trio task per process spawns it (``subprocess.Popen`` from the trio
thread itself: the children's parent-death signal is tied to the thread that
forked them, and trio's own ``open_process`` forks from a worker thread that
exits when idle), pumps its output line by line, waits for its exit through a
pidfd, and restarts it as :mod:`seedcast.launcher.supervision` decides.

Readiness comes over the control channel: the launcher listens on a unix
socket in the run directory; each child connects, says ``hello`` and then
``ready`` with its bound addresses (Prometheus, which is not ours, is ready
when it logs so). Nothing polls. The same socket answers the CLI:
``cluster-status`` (every process, with its live statistics) and
``shutdown``; a request with a ``target`` field is forwarded to that child.

Stopping: every child is asked to ``drain``, then tier by tier (viewers and
peers, edges, dns, origin and tracker) to ``shutdown`` with a deadline; a
child still there after it is killed with its whole process group. The state
file, targets file and socket are removed at the end. Whatever happens, no
child outlives the supervisor: a ``finally`` kills what is left, and each
child has its parent-death signal set should the launcher be SIGKILLed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from seedcast.config import ClusterConfig
from seedcast.control import (
    ControlChannel,
    ControlError,
    ControlMessage,
    ErrorCode,
    Kind,
    open_control_listener,
    socket_path_for,
)
from seedcast.launcher.netns import teardown_recorded
from seedcast.launcher.plan import ClusterPlan, ProcessSpec, Tier
from seedcast.launcher.prometheus import Target, render_config, render_targets, write_atomically
from seedcast.launcher.state import (
    CLUSTER_ID_ENV,
    ClusterState,
    remove_state,
    rss_bytes,
    write_state,
)
from seedcast.launcher.supervision import ProcessRecord, ProcessState, RestartPolicy
from seedcast.orphan import LAUNCHER_PID_ENV
from seedcast.roles import CONTROL_ENV, LOG_FILE_ENV

log = logging.getLogger("seedcast.launcher")

READY_TIMEOUT_SECONDS = 60.0
"""A child that has not said ready by then is killed and counts as a crash."""
DRAIN_SECONDS = 2.0
STOP_SECONDS = 3.0
"""Shutdown deadline given to each child; stragglers are killed one second later."""
STATUS_SECONDS = 1.0
MAX_LINE = 16 * 1024
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s")

LineSink = Callable[[ProcessSpec, str], None]


@dataclass(eq=False)
class Child:
    spec: ProcessSpec
    record: ProcessRecord
    log_file: Path
    popen: subprocess.Popen[bytes] | None = None
    channel: ControlChannel | None = None
    settled: trio.Event = field(default_factory=trio.Event)
    exited: trio.Event = field(default_factory=trio.Event)
    backoff: trio.CancelScope | None = None
    statistics: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """Main service address: the first one reported (viewers: their agent's)."""
        reported = self.record.addresses
        if self.spec.role == "viewer":
            # A viewer's main service is its agent (HTTP for players), not BitTorrent.
            port = self.spec.address.rpartition(":")[2]
            return next((a for a in reported if a.rpartition(":")[2] == port), self.spec.address)
        return reported[0] if reported else self.spec.address

    @property
    def metrics_address(self) -> str:
        if self.record.metrics:
            return self.record.metrics
        if self.spec.metrics:
            return self.spec.metrics
        return self.address


class Supervisor:
    """Runs the processes of ``plan`` until :meth:`request_stop`; see the module doc."""

    def __init__(
        self,
        config: ClusterConfig,
        plan: ClusterPlan,
        *,
        config_file: Path,
        detached: bool = False,
        on_line: LineSink | None = None,
        policy: RestartPolicy | None = None,
        cluster_id: str | None = None,
        ready_timeout: float = READY_TIMEOUT_SECONDS,
    ) -> None:
        self.config = config
        self.plan = plan
        self.config_file = config_file
        self.detached = detached
        self.on_line = on_line
        self.cluster_id = cluster_id or uuid.uuid4().hex
        self.ready_timeout = ready_timeout
        self.run_dir = config.run_dir
        self.log_dir = self.run_dir / "logs"
        self.socket_path = socket_path_for(self.run_dir)
        self.prometheus_dir = self.run_dir / "prometheus"
        self.started_wall = time.time()
        self.started_at = 0.0
        policy = policy or RestartPolicy()
        self.children = [
            Child(
                spec=spec,
                record=ProcessRecord(spec.role, spec.name, policy=policy),
                log_file=self.log_dir / f"{spec.name}.log",
            )
            for spec in plan.processes
        ]
        self._by_name = {child.spec.name: child for child in self.children}
        self._stop_requested = trio.Event()
        self._stopped = trio.Event()
        self._changed = trio.Event()
        self._stopping = False
        self.ready_seconds: float | None = None

    # -- running -----------------------------------------------------------

    def request_stop(self) -> None:
        self._stopping = True
        self._stop_requested.set()
        self._changed.set()

    def kill_now(self) -> None:
        """Second Ctrl-C: no more waiting, SIGKILL every child's process group."""
        self.request_stop()
        for child in self.children:
            child.record.request_stop()
            self._kill(child)

    async def run(self, on_ready: Callable[[Supervisor], None] | None = None) -> None:
        """Start everything, call ``on_ready`` once all settled, run until stopped."""
        self.started_at = trio.current_time()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        listener = await open_control_listener(self.socket_path)
        self._write_prometheus_config()
        self._write_targets()
        self._write_state()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve_control, listener)
                for child in self.children:
                    nursery.start_soon(self._supervise, child)
                with trio.CancelScope() as settle_scope:
                    nursery.start_soon(self._cancel_on_stop, settle_scope)
                    for child in self.children:
                        await child.settled.wait()
                if not self._stopping:
                    self.ready_seconds = trio.current_time() - self.started_at
                    log.info(
                        "cluster ready",
                        extra={
                            "fields": {
                                "processes": len(self.children),
                                "seconds": f"{self.ready_seconds:.2f}",
                            }
                        },
                    )
                    if on_ready is not None:
                        on_ready(self)
                await self._stop_requested.wait()
                await self._stop_all()
                self._stopped.set()
                # Let a `down` waiting on us get its reply before the server goes.
                await trio.lowlevel.checkpoint()
                nursery.cancel_scope.cancel()
        finally:
            for child in self.children:
                self._kill(child)
                if child.popen is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        child.popen.wait(timeout=1.0)
            with contextlib.suppress(OSError):
                listener.socket.close()
            remove_state(self.run_dir)
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
            if (self.run_dir / "netns.json").exists():  # up --netns: the network goes too
                teardown_recorded(self.run_dir)

    async def _cancel_on_stop(self, scope: trio.CancelScope) -> None:
        await self._stop_requested.wait()
        scope.cancel()

    # -- one child ---------------------------------------------------------

    def _environment(self, child: Child) -> dict[str, str]:
        env = dict(os.environ)
        env[CLUSTER_ID_ENV] = self.cluster_id
        env[LAUNCHER_PID_ENV] = str(os.getpid())
        env["PYTHONUNBUFFERED"] = "1"
        env.pop(CONTROL_ENV, None)
        env.pop(LOG_FILE_ENV, None)
        if child.spec.controlled:
            env[CONTROL_ENV] = self.socket_path
            env[LOG_FILE_ENV] = str(child.log_file)
        return env

    def _spawn(self, child: Child) -> subprocess.Popen[bytes]:
        # Popen runs right here, in the trio thread (see the module doc).
        return subprocess.Popen(
            list(child.spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self._environment(child),
            process_group=0,  # Ctrl-C in the terminal reaches the launcher only
            close_fds=True,
        )

    async def _supervise(self, child: Child) -> None:
        record = child.record
        while not self._stopping:
            child.exited = trio.Event()
            try:
                popen = self._spawn(child)
            except OSError as error:
                record.last_error = f"cannot start: {error.strerror or error}"
                log.error(
                    "cannot start", extra={"fields": {"name": child.spec.name, "error": error}}
                )
                record.spawned(-1, trio.current_time())
                code = 127
            else:
                child.popen = popen
                record.spawned(popen.pid, trio.current_time())
                log.info("started", extra={"fields": {"name": child.spec.name, "pid": popen.pid}})
                self._write_state()
                code = await self._watch(child, popen)
            child.popen = None
            child.channel = None
            child.exited.set()
            decision = record.exited(code, trio.current_time())
            self._write_targets()
            self._write_state()
            if decision is None:
                log.info("stopped", extra={"fields": {"name": child.spec.name, "code": code}})
                break
            if not decision.restart:
                record.last_error = record.last_error or f"exit code {code}"
                log.error(
                    "failed",
                    extra={
                        "fields": {
                            "name": child.spec.name,
                            "crashes": decision.crashes_in_window,
                            "error": record.last_error,
                        }
                    },
                )
                child.settled.set()
                break
            log.warning(
                "crashed, restarting",
                extra={
                    "fields": {
                        "name": child.spec.name,
                        "code": code,
                        "delay": f"{decision.delay:.2f}s",
                    }
                },
            )
            with trio.CancelScope() as child.backoff:
                await trio.sleep(decision.delay)  # the backoff itself, not a wait for readiness
            child.backoff = None
        if record.state is ProcessState.RESTARTING:
            record.exited(0, trio.current_time())  # stopped while waiting to restart
            self._write_state()
        child.settled.set()

    async def _watch(self, child: Child, popen: subprocess.Popen[bytes]) -> int:
        assert popen.stdout is not None
        stream = trio.lowlevel.FdStream(os.dup(popen.stdout.fileno()))
        popen.stdout.close()
        pumped = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, child, popen.pid, stream, pumped)
            if child.spec.controlled:
                nursery.start_soon(self._ready_deadline, child, popen)
            code = await _wait_exit(popen)
            # Read what is left in the pipe, unless a grandchild keeps it open.
            with trio.move_on_after(0.5):
                await pumped.wait()
            nursery.cancel_scope.cancel()
        await stream.aclose()
        return code

    async def _ready_deadline(self, child: Child, popen: subprocess.Popen[bytes]) -> None:
        await trio.sleep(self.ready_timeout)
        if child.record.state is ProcessState.STARTING and child.popen is popen:
            child.record.last_error = f"not ready after {self.ready_timeout:g}s"
            log.error("not ready in time, killing", extra={"fields": {"name": child.spec.name}})
            self._kill(child)

    async def _pump(
        self, child: Child, pid: int, stream: trio.abc.ReceiveStream, done: trio.Event
    ) -> None:
        buffer = b""
        raw_log = None
        try:
            while True:
                try:
                    data = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    data = b""
                if not data:
                    if buffer:
                        raw_log = self._line(child, pid, buffer, raw_log)
                    return
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                if len(buffer) > MAX_LINE:
                    lines.append(buffer[:MAX_LINE])
                    buffer = b""
                for line in lines:
                    raw_log = self._line(child, pid, line, raw_log)
        finally:
            if raw_log is not None:
                raw_log.close()
            done.set()

    def _line(self, child: Child, pid: int, raw: bytes, raw_log: Any) -> Any:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")[:MAX_LINE]
        if not text:
            return raw_log
        is_log_line = bool(LOG_LINE.match(text))
        if not child.spec.controlled and child.spec.ready_line and child.spec.ready_line in text:
            self._mark_ready(child, pid, [child.spec.address], child.spec.address)
        if not is_log_line or not child.spec.controlled:
            # Tracebacks, prints and third-party logs: into the process's log file.
            if raw_log is None:
                raw_log = open(child.log_file, "a", encoding="utf-8")  # noqa: SIM115
            raw_log.write(text + "\n")
            raw_log.flush()
        if self.on_line is not None:
            self.on_line(child.spec, text)
        return raw_log

    def _kill(self, child: Child) -> None:
        popen = child.popen
        if popen is None or popen.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            popen.kill()

    def _mark_ready(
        self, child: Child, pid: int, addresses: list[str], metrics: str | None
    ) -> None:
        if child.record.became_ready(pid, addresses, metrics, trio.current_time()):
            log.info(
                "ready",
                extra={"fields": {"name": child.spec.name, "addresses": ",".join(addresses)}},
            )
            child.settled.set()
            self._write_targets()
            self._write_state()

    # -- control channel ---------------------------------------------------

    async def _serve_control(self, listener: trio.SocketListener) -> None:
        await trio.serve_listeners(self._connection, [listener])

    async def _connection(self, stream: trio.SocketStream) -> None:
        channel = ControlChannel(stream, label="client")
        bound: list[Child] = []

        async def handle(message: ControlMessage) -> Any:
            return await self._handle(channel, bound, message)

        try:
            await channel.run(handle)
        finally:
            for child in bound:
                if child.channel is channel:
                    child.channel = None
            await channel.aclose()

    async def _handle(
        self, channel: ControlChannel, bound: list[Child], message: ControlMessage
    ) -> Any:
        if message.type in ("hello", "ready"):
            child = self._by_name.get(str(message.get("name")))
            pid = message.get("pid")
            if child is None or child.record.pid != pid:
                await channel.send(
                    "error",
                    {
                        "code": ErrorCode.UNAVAILABLE,
                        "message": f"no process {message.get('name')!r} with pid {pid} here",
                    },
                    reply_to=message.id,
                )
                return None
            channel.label = child.spec.name
            child.channel = channel
            if child not in bound:
                bound.append(child)
            if message.type == "ready":
                self._mark_ready(child, pid, list(message.get("addresses")), message.get("metrics"))
            return None
        if message.type == "error" and message.kind is Kind.REPLY:
            for child in bound:
                child.record.last_error = str(message.get("message"))[:300]
            return None
        if message.kind is not Kind.REQUEST:
            return None
        target = message.get("target")
        if isinstance(target, str):
            return await self._forward(target, message)
        if message.type == "cluster-status":
            return "cluster-status-reply", {
                "processes": await self.process_rows(live=True),
                "cluster": self.cluster_fields(),
            }
        if message.type == "wait-ready":
            return "ok", {"result": await self._wait_ready(message)}
        if message.type == "shutdown":
            if bound:
                raise ControlError(ErrorCode.UNAVAILABLE, "children cannot stop the cluster")
            self.request_stop()
            await self._stopped.wait()
            return "ok", {"result": {"stopped": len(self.children)}}
        raise ControlError(ErrorCode.UNKNOWN_TYPE, f"the launcher does not handle {message.type!r}")

    async def _wait_ready(self, message: ControlMessage) -> dict[str, Any]:
        name = str(message.get("name"))
        child = self._by_name.get(name)
        if child is None:
            raise ControlError(ErrorCode.UNAVAILABLE, f"no process named {name!r}")
        after_pid = message.get("after_pid")
        record = child.record
        while not (record.state is ProcessState.READY and record.pid != after_pid):
            if record.state is ProcessState.FAILED or self._stopping:
                raise ControlError(ErrorCode.UNAVAILABLE, f"{name} is {record.state}")
            await self._changed.wait()
        return self._row(child, trio.current_time())

    async def _forward(self, target: str, message: ControlMessage) -> Any:
        child = self._by_name.get(target)
        if child is None:
            raise ControlError(ErrorCode.UNAVAILABLE, f"no process named {target!r}")
        if child.channel is None:
            raise ControlError(ErrorCode.UNAVAILABLE, f"{target} is {child.record.state}")
        fields = {key: value for key, value in message.fields.items() if key != "target"}
        reply = await child.channel.request(message.type, fields, timeout=10.0)
        return reply.type, dict(reply.fields)

    # -- reporting ---------------------------------------------------------

    def cluster_fields(self) -> dict[str, Any]:
        return {
            "name": self.config.cluster.name,
            "launcher_pid": os.getpid(),
            "run_dir": str(self.run_dir),
            "started_at": self.started_wall,
            "ready_seconds": self.ready_seconds,
            "skipped": list(self.plan.skipped),
        }

    async def process_rows(self, *, live: bool) -> list[dict[str, Any]]:
        """One row per process; with ``live``, each ready child's status reply too."""
        if live:
            async with trio.open_nursery() as nursery:
                for child in self.children:
                    if child.channel is not None and child.record.state is ProcessState.READY:
                        nursery.start_soon(self._refresh_statistics, child)
        now = trio.current_time()
        return [self._row(child, now) for child in self.children]

    async def _refresh_statistics(self, child: Child) -> None:
        channel = child.channel
        if channel is None:
            return
        try:
            reply = await channel.request("status", timeout=STATUS_SECONDS)
        except ControlError:
            return
        statistics = reply.get("statistics")
        if isinstance(statistics, Mapping):
            child.statistics = dict(statistics)

    def _row(self, child: Child, now: float) -> dict[str, Any]:
        record = child.record
        return {
            "role": child.spec.role,
            "name": child.spec.name,
            "pid": record.pid,
            "address": child.address,
            "addresses": list(record.addresses),
            "metrics": child.metrics_address,
            "region": child.spec.region,
            "state": str(record.state),
            "uptime": round(record.uptime(now), 3),
            "restarts": record.restarts,
            "rss_bytes": rss_bytes(record.pid),
            "statistics": dict(child.statistics) if record.state is ProcessState.READY else {},
            "error": record.last_error,
            "log": str(child.log_file),
        }

    def _write_state(self) -> None:
        """Record the change in the state file and wake whoever waits for one."""
        self._changed.set()
        self._changed = trio.Event()
        now = trio.current_time()
        rows = []
        for child in self.children:
            row = self._row(child, now)
            row.pop("statistics")
            row.pop("rss_bytes")
            rows.append(row)
        state = ClusterState(
            cluster=self.config.cluster.name,
            cluster_id=self.cluster_id,
            launcher_pid=os.getpid(),
            control=self.socket_path,
            run_dir=str(self.run_dir),
            config=str(self.config_file),
            detached=self.detached,
            started_at=self.started_wall,
            processes=tuple(rows),
            extra={"prometheus": self.prometheus_url(), "skipped": list(self.plan.skipped)},
        )
        with contextlib.suppress(OSError):
            write_state(self.run_dir, state)

    def prometheus_url(self) -> str | None:
        for child in self.children:
            if child.spec.role == "prometheus":
                return f"http://{child.spec.address}"
        return None

    def _write_prometheus_config(self) -> None:
        text = render_config(
            cluster=self.config.cluster.name,
            targets_file=self.prometheus_dir / "targets.json",
            scrape_interval=self.config.prometheus.scrape_interval,
        )
        write_atomically(self.prometheus_dir / "prometheus.yml", text)

    def _write_targets(self) -> None:
        targets = [
            Target(child.metrics_address, child.spec.role, child.spec.name, child.spec.region)
            for child in self.children
            if child.record.state is ProcessState.READY
        ]
        with contextlib.suppress(OSError):
            write_atomically(self.prometheus_dir / "targets.json", render_targets(targets))

    # -- stopping ----------------------------------------------------------

    async def _stop_all(self) -> None:
        log.info("stopping the cluster")
        for child in self.children:
            child.record.request_stop()
            if child.backoff is not None:
                child.backoff.cancel()
        async with trio.open_nursery() as nursery:
            for child in self.children:
                if child.channel is not None:
                    nursery.start_soon(self._request_quietly, child, "drain", {}, DRAIN_SECONDS)
        for tier in sorted(set(Tier), reverse=True):
            async with trio.open_nursery() as nursery:
                for child in self.children:
                    if child.spec.tier is tier and child.popen is not None:
                        nursery.start_soon(self._stop_child, child)

    async def _request_quietly(
        self, child: Child, message_type: str, fields: Mapping[str, Any], timeout: float
    ) -> None:
        channel = child.channel
        if channel is None:
            return
        with contextlib.suppress(ControlError):
            await channel.request(message_type, fields, timeout=timeout)

    async def _stop_child(self, child: Child) -> None:
        popen = child.popen
        if popen is None:
            return
        if child.channel is not None:
            await self._request_quietly(child, "shutdown", {"deadline": STOP_SECONDS}, 1.0)
        else:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_SECONDS + 1.0):
            await child.exited.wait()
            return
        log.warning("did not stop in time, killing", extra={"fields": {"name": child.spec.name}})
        self._kill(child)
        await child.exited.wait()


async def _wait_exit(popen: subprocess.Popen[bytes]) -> int:
    """Wait for ``popen`` to exit without blocking trio (a pidfd, else a thread)."""
    try:
        pidfd = os.pidfd_open(popen.pid)
    except (OSError, AttributeError):
        return await trio.to_thread.run_sync(popen.wait, abandon_on_cancel=True)
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        trio.lowlevel.notify_closing(pidfd)
        os.close(pidfd)
    return popen.wait()
