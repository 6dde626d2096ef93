"""Running one role (origin, edge, dns, tracker, peer) as a process.

``run_role`` is what every ``seedcast <role>`` command ends with. It sets up
logging, runs the role's ``serve`` under trio and stops it gracefully:

- **Stop**: SIGINT/SIGTERM or a ``shutdown`` control message starts a
  graceful stop: the role's ``drain`` control handler (if it has one) runs
  under a deadline, then ``serve`` is cancelled. Without a drain handler there
  is nothing to wait for and ``serve`` is cancelled at once. A second signal
  cancels at once too.
- **Launched** (the environment variable ``SEEDCAST_CONTROL`` names the
  launcher's unix socket): the process first sets its parent-death signal
  (SIGTERM when the launcher dies, even by SIGKILL) and checks the launcher is
  still its parent; then it connects, says ``hello`` (role, name, pid), runs
  ``serve`` and says ``ready`` with the addresses ``serve`` passed to
  ``task_status.started``. It answers ``status`` (the role's
  ``statistics()``), ``drain``, ``shutdown`` and the role's own
  ``control_handlers`` (``purge``, ``set-rate``, ...). When the control
  connection closes, the launcher is gone: the role stops within
  :data:`ORPHAN_STOP_SECONDS`.
- **Errors**: an exception from ``serve`` is logged, reported to the launcher
  as an ``error`` message, and re-raised (unwrapped from trio's exception
  groups) so the CLI prints one line and exits 1.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import trio
from seedcast.config import ClusterConfig
from seedcast.control import ControlError, ErrorCode, Kind, connect_control
from seedcast.logs import setup_logging
from seedcast.orphan import guard_against_orphaning, launcher_gone

log = logging.getLogger("seedcast.roles")

GRACEFUL_STOP_SECONDS = 5.0
"""Deadline for in-flight work on SIGTERM/SIGINT or ``shutdown`` without its own deadline."""
ORPHAN_STOP_SECONDS = 1.0
"""Deadline when the launcher is gone (children must be gone within 2 s)."""
CONTROL_ENV = "SEEDCAST_CONTROL"
LOG_FILE_ENV = "SEEDCAST_LOG_FILE"

ControlHandler = Callable[[Mapping[str, Any]], Awaitable[Mapping[str, Any]]]


class Serve(Protocol):
    def __call__(self, task_status: Any) -> Awaitable[None]: ...


def run_role(
    *,
    role: str,
    name: str,
    config: ClusterConfig,
    serve: Serve,
    control_handlers: Mapping[str, ControlHandler] | None = None,
    statistics: Callable[[], Mapping[str, Any]] | None = None,
    debug: bool = False,
    metrics_address: str | None = None,
) -> int:
    """Run ``serve`` until it returns or is stopped; returns the exit code.

    ``metrics_address`` (optional) is where this process serves ``/metrics``
    when that is not its first address; it is passed on to the launcher.
    Raises what ``serve`` raised (a lone exception, not a group).
    """
    if not guard_against_orphaning():
        # The launcher died between starting us and now: nobody wants us.
        print(
            f"{role} {name}: the launcher that started this process is gone; exiting",
            file=sys.stderr,
        )
        return 1
    log_file = os.environ.get(LOG_FILE_ENV)
    setup_logging(
        role, name, level="DEBUG" if debug else "INFO", file=Path(log_file) if log_file else None
    )
    runner = RoleRunner(
        role=role,
        name=name,
        serve=serve,
        control_handlers=control_handlers or {},
        statistics=statistics,
        control_path=os.environ.get(CONTROL_ENV) or None,
        metrics_address=metrics_address,
    )
    try:
        trio.run(runner.main)
    except BaseExceptionGroup as group:
        raise _lone(group) from None
    return runner.exit_code


def _lone(error: BaseException) -> BaseException:
    """The single leaf of nested one-member exception groups (else the group)."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _scalar_statistics(values: Mapping[str, Any]) -> dict[str, Any]:
    """Only what the status reply schema carries: string keys, finite scalars."""
    result: dict[str, Any] = {}
    for key, value in values.items():
        if (
            isinstance(value, bool)
            or value is None
            or isinstance(value, str)
            or (isinstance(value, int | float) and math.isfinite(value))
        ):
            result[str(key)] = value
    return result


class RoleRunner:
    """The trio side of :func:`run_role`; usable in-process by tests."""

    def __init__(
        self,
        *,
        role: str,
        name: str,
        serve: Serve,
        control_handlers: Mapping[str, ControlHandler],
        statistics: Callable[[], Mapping[str, Any]] | None,
        control_path: str | None,
        metrics_address: str | None = None,
    ) -> None:
        self.role = role
        self.name = name
        self.serve = serve
        self.control_handlers = control_handlers
        self.statistics = statistics
        self.control_path = control_path
        self.metrics_address = metrics_address
        self.state = "starting"
        self.addresses: list[str] = []
        self.exit_code = 0
        self._started_at = time.monotonic()
        self._serve_scope = trio.CancelScope()
        self._stopping = False
        self._channel: Any = None  # ControlChannel, imported lazily
        self._nursery: trio.Nursery | None = None

    # -- lifecycle ---------------------------------------------------------

    async def main(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._watch_signals, signals)
                    if self.control_path:
                        await self._connect()
                    try:
                        await self._run_serve()
                    finally:
                        self.state = "stopped"
                        nursery.cancel_scope.cancel()
            finally:
                if self._channel is not None:
                    await self._channel.aclose()

    async def _run_serve(self) -> None:
        with self._serve_scope:
            try:
                async with trio.open_nursery() as serve_nursery:
                    addresses = await serve_nursery.start(self.serve)
                    self.addresses = [str(address) for address in addresses or []]
                    self.state = "ready"
                    log.info("ready", extra={"fields": {"addresses": ",".join(self.addresses)}})
                    await self._notify(
                        "ready",
                        {
                            "role": self.role,
                            "name": self.name,
                            "pid": os.getpid(),
                            "addresses": self.addresses,
                            "metrics": self.metrics_address,
                        },
                    )
            except Exception as error:
                leaf = _lone(error) if isinstance(error, BaseExceptionGroup) else error
                self.exit_code = 1
                log.error("failed", extra={"fields": {"error": f"{type(leaf).__name__}: {leaf}"}})
                await self._notify(
                    "error", {"code": "failed", "message": f"{type(leaf).__name__}: {leaf}"}
                )
                raise
        if self._stopping:
            log.info("stopped")

    def stop(self, deadline: float, reason: str) -> None:
        """Start a graceful stop (drain under ``deadline`` seconds, then cancel)."""
        if self._stopping:
            # A second request: the shorter deadline wins.
            self._serve_scope.deadline = min(
                self._serve_scope.deadline, trio.current_time() + deadline
            )
            return
        self._stopping = True
        self.state = "stopping"
        log.info("stopping", extra={"fields": {"reason": reason, "deadline": f"{deadline:g}s"}})
        self._serve_scope.deadline = trio.current_time() + deadline
        assert self._nursery is not None
        self._nursery.start_soon(self._drain_then_cancel)

    async def _drain_then_cancel(self) -> None:
        drain = self.control_handlers.get("drain")
        if drain is not None:
            with trio.CancelScope(deadline=self._serve_scope.deadline):
                try:
                    await drain({"type": "drain"})
                except Exception:
                    log.exception("drain failed")
        self._serve_scope.cancel()

    async def _watch_signals(self, signals: Any) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if self._stopping:
                log.info("stopping now", extra={"fields": {"signal": name}})
                self._serve_scope.cancel()
                continue
            orphaned = launcher_gone()
            deadline = ORPHAN_STOP_SECONDS if orphaned else GRACEFUL_STOP_SECONDS
            self.stop(deadline, "launcher gone" if orphaned else name)

    # -- control channel ---------------------------------------------------

    async def _connect(self) -> None:
        assert self.control_path is not None
        try:
            self._channel = await connect_control(self.control_path)
        except ControlError as error:
            log.error("cannot reach the launcher", extra={"fields": {"error": error}})
            self.exit_code = 1
            self.stop(0, "launcher unreachable")
            return
        assert self._nursery is not None
        self._nursery.start_soon(self._run_channel)
        await self._notify("hello", {"role": self.role, "name": self.name, "pid": os.getpid()})

    async def _run_channel(self) -> None:
        await self._channel.run(self._handle)
        if not self._stopping:
            self.stop(ORPHAN_STOP_SECONDS, "control channel closed")

    async def _notify(self, message_type: str, fields: Mapping[str, Any]) -> None:
        if self._channel is None:
            return
        try:
            await self._channel.send(message_type, fields)
        except ControlError:
            pass

    async def _handle(self, message: Any) -> Any:
        if message.kind is not Kind.REQUEST:
            return None
        if message.type == "status":
            return "status-reply", self.status_fields()
        if message.type == "shutdown":
            deadline = message.get("deadline")
            deadline = GRACEFUL_STOP_SECONDS if deadline is None else max(0.0, float(deadline))
            self.stop(deadline, "shutdown requested")
            return "ok", {"result": {"state": self.state}}
        handler = self.control_handlers.get(message.type)
        if message.type == "drain":
            self.state = "draining" if not self._stopping else self.state
            if handler is not None:
                result = await handler(dict(message.fields, type=message.type))
                return "ok", {"result": dict(result or {})}
            return "ok", {"result": {"drained": False}}
        if handler is None:
            raise ControlError(
                ErrorCode.UNKNOWN_TYPE, f"{self.role} {self.name} does not handle {message.type!r}"
            )
        if self.state not in ("ready", "draining"):
            raise ControlError(ErrorCode.UNAVAILABLE, f"{self.name} is {self.state}")
        fields = dict(message.fields, type=message.type)
        if message.type == "purge":
            # "id" is the envelope's message id on the wire; handlers take the video as "id".
            video = fields.pop("video", None)
            if video is not None:
                fields["id"] = video
            if fields.get("prefix") is None:
                fields.pop("prefix", None)
        result = await handler(fields)
        return "ok", {"result": dict(result or {})}

    def status_fields(self) -> dict[str, Any]:
        statistics: dict[str, Any] = {}
        if self.statistics is not None:
            try:
                statistics = _scalar_statistics(self.statistics())
            except Exception:
                log.exception("statistics failed")
        return {
            "statistics": statistics,
            "state": self.state,
            "uptime": time.monotonic() - self._started_at,
        }
