"""The background launcher behind ``seedcast up --detach``.

``python -m seedcast.launcher.daemon --config <run_dir>/cluster.toml
--plan <run_dir>/plan.json --ready-fd N`` runs the same :class:`Supervisor`
as the foreground ``up``, with the plan ``up`` made, in its own session,
logging to ``<run_dir>/logs/launcher.log`` (its stdout). When every process
has settled it writes the summary as JSON to file descriptor N and closes
it: ``up --detach`` waits on that pipe, so it returns exactly when the
cluster is ready (EOF without a summary means the launcher failed).
SIGTERM/SIGINT stop the cluster gracefully; ``seedcast down`` does the same
over the control socket.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import trio
from seedcast.config import load_config
from seedcast.errors import SeedcastError
from seedcast.launcher.plan import ClusterPlan
from seedcast.launcher.state import CLUSTER_ID_ENV
from seedcast.launcher.supervisor import Supervisor
from seedcast.launcher.up import build_summary
from seedcast.logs import setup_logging


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m seedcast.launcher.daemon")
    parser.add_argument("--config", required=True)
    parser.add_argument("--ready-fd", type=int, default=None)
    parser.add_argument("--plan", required=True, help="the plan `up` made, as JSON")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        config = load_config(args.config)
    except SeedcastError as error:
        print(f"launcher: {error}", file=sys.stderr)
        return 1
    setup_logging("launcher", config.cluster.name)
    try:
        plan = ClusterPlan.from_json(json.loads(Path(args.plan).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"launcher: {args.plan}: unreadable plan: {error}", file=sys.stderr)
        return 1
    supervisor = Supervisor(
        config,
        plan,
        config_file=config.run_dir / "cluster.toml",
        detached=True,
        cluster_id=os.environ.get(CLUSTER_ID_ENV) or None,
    )

    def on_ready(running: Supervisor) -> None:
        if args.ready_fd is None:
            return
        payload = json.dumps(build_summary(running, None)).encode()
        try:
            with os.fdopen(args.ready_fd, "wb") as ready:
                ready.write(payload)
        except OSError:
            pass  # `up` went away; the cluster runs on

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def watch_signals() -> None:
                    async for _ in signals:
                        supervisor.request_stop()

                nursery.start_soon(watch_signals)
                await supervisor.run(on_ready=on_ready)
                nursery.cancel_scope.cancel()

    trio.run(run)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
