"""Running one role (origin, edge, dns, tracker, peer) as a process.

``run_role`` is what every ``seedcast <role>`` command ends with. It sets up
logging, runs the role's ``serve`` under trio, turns SIGINT/SIGTERM into a
graceful stop, and, when the launcher started this process (the environment
variable ``SEEDCAST_CONTROL`` names its unix socket), reports ready with the
bound addresses and answers control messages.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import trio
from seedcast.config import ClusterConfig
from seedcast.logs import setup_logging

log = logging.getLogger("seedcast.roles")

GRACEFUL_STOP_SECONDS = 5.0

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
) -> int:
    """Run ``serve`` until it returns or a signal stops it; returns the exit code."""
    log_file = os.environ.get("SEEDCAST_LOG_FILE")
    setup_logging(
        role, name, level="DEBUG" if debug else "INFO", file=Path(log_file) if log_file else None
    )
    trio.run(_main, role, name, serve, control_handlers or {}, statistics)
    return 0


async def _main(
    role: str,
    name: str,
    serve: Serve,
    control_handlers: Mapping[str, ControlHandler],
    statistics: Callable[[], Mapping[str, Any]] | None,
) -> None:
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(serve)
        log.info("ready", extra={"fields": {"addresses": ",".join(addresses or [])}})
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("stopping", extra={"fields": {"signal": signal.Signals(signum).name}})
                # Give in-flight work a deadline, then cancel whatever is left.
                nursery.cancel_scope.deadline = trio.current_time() + GRACEFUL_STOP_SECONDS
                nursery.cancel_scope.cancel()
                break
