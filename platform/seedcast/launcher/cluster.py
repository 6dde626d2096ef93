"""The running cluster, seen from outside: find it, ask its launcher, stop it.

``status``, ``down``, ``up`` (cleaning up after a crashed run) and the demo
find the cluster through ``<run_dir>/state.json`` and talk to its launcher
over the control socket.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import select
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from seedcast.config import ClusterConfig
from seedcast.control import ControlError, connect_control
from seedcast.errors import SeedcastError
from seedcast.launcher import netns
from seedcast.launcher.state import (
    ClusterState,
    belongs_to,
    is_launcher,
    pid_alive,
    processes_of,
    read_state,
    remove_state,
    rss_bytes,
)

SHUTDOWN_SECONDS = 30.0
"""How long ``down`` waits for the launcher to stop everything before killing."""


class ClusterNotRunning(SeedcastError):
    """There is no running cluster in this run directory."""


# --- shared helpers ------------------------------------------------------------


def absolute_dirs(config: ClusterConfig) -> ClusterConfig:
    """The config with its data and run directories made absolute (children may chdir)."""
    data_dir = Path(config.cluster.data_dir).resolve()
    run_dir = config.run_dir.resolve() if config.cluster.run_dir else data_dir / "run"
    return dataclasses.replace(
        config,
        cluster=dataclasses.replace(config.cluster, data_dir=str(data_dir), run_dir=str(run_dir)),
    )


def command_hint(args: argparse.Namespace, command: str) -> str:
    """``seedcast [--config F] [--data D] <command>``: how to reach this cluster again."""
    parts = ["seedcast"]
    if getattr(args, "config", None):
        parts += ["--config", str(args.config)]
    if getattr(args, "data", None):
        parts += ["--data", str(args.data)]
    return " ".join([*parts, command])


def wait_pids_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait (on pidfds, not by polling) until ``pids`` are gone; returns those still alive."""
    descriptors: dict[int, int] = {}
    for pid in pids:
        try:
            descriptors[os.pidfd_open(pid)] = pid
        except OSError:
            continue
    deadline = time.monotonic() + timeout
    poller = select.poll()
    for descriptor in descriptors:
        poller.register(descriptor, select.POLLIN)
    try:
        remaining = dict(descriptors)
        while remaining:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for descriptor, _ in poller.poll(left * 1000):
                poller.unregister(descriptor)
                remaining.pop(descriptor, None)
        return [pid for pid in remaining.values() if pid_alive(pid)]
    finally:
        for descriptor in descriptors:
            os.close(descriptor)


def stop_leftovers(cluster_id: str, pids: Iterable[int] = ()) -> int:
    """TERM, then KILL, every process of the cluster; returns how many there were."""
    leftovers = sorted(
        set(processes_of(cluster_id)) | {p for p in pids if belongs_to(p, cluster_id)}
    )
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    still = wait_pids_gone(leftovers, 2.0)
    for pid in still:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    wait_pids_gone(still, 2.0)
    return len(leftovers)


def clean_stale(run_dir: Path) -> str | None:
    """Clean up after a launcher that died; raises if a live cluster owns ``run_dir``."""
    state = read_state(run_dir)
    if state is None:
        return None
    if is_launcher(state.launcher_pid, state):
        raise SeedcastError(
            f"a cluster is already running in {run_dir} (launcher pid {state.launcher_pid}); "
            "stop it with `seedcast down` first"
        )
    count = stop_leftovers(state.cluster_id, state.pids())
    remove_state(run_dir, state)
    remove_network(run_dir)
    return (
        f"cleaned up a stale run in {run_dir} (launcher {state.launcher_pid} gone, "
        f"{count} leftover process(es) stopped)"
    )


def query_cluster(state: ClusterState, timeout: float = 5.0) -> dict[str, Any]:
    """Ask the launcher for every process's row (with live statistics)."""
    import trio

    async def main() -> dict[str, Any]:
        with trio.fail_after(timeout):
            channel = await connect_control(state.control)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(channel.run)
                reply = await channel.request("cluster-status", timeout=timeout)
                nursery.cancel_scope.cancel()
            await channel.aclose()
            return dict(reply.fields)

    return trio.run(main)


def stale_rows(state: ClusterState) -> list[dict[str, Any]]:
    rows = []
    for recorded in state.processes:
        row = dict(recorded)
        pid = row.get("pid")
        alive = isinstance(pid, int) and belongs_to(pid, state.cluster_id)
        if not alive:
            row["pid"] = None
            row["state"] = "stopped"
        row["rss_bytes"] = rss_bytes(pid) if alive else None
        row.setdefault("statistics", {})
        rows.append(row)
    return rows


def stop_cluster(state: ClusterState, timeout: float) -> str:
    """Stop the recorded cluster: ask its launcher, else kill what is left. Returns a summary."""
    import trio

    stopped_by = f"its launcher {state.launcher_pid} was already gone"
    if is_launcher(state.launcher_pid, state):

        async def ask() -> None:
            with trio.move_on_after(timeout):
                channel = await connect_control(state.control)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(channel.run)
                    with contextlib.suppress(ControlError):
                        await channel.request("shutdown", {}, timeout=timeout)
                    nursery.cancel_scope.cancel()
                await channel.aclose()

        with contextlib.suppress(ControlError, OSError):
            trio.run(ask)
        if wait_pids_gone([state.launcher_pid], 5.0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.launcher_pid, signal.SIGKILL)
            wait_pids_gone([state.launcher_pid], 2.0)
            stopped_by = "launcher did not stop; killed it"
        else:
            stopped_by = "stopped gracefully"
    leftovers = stop_leftovers(state.cluster_id, state.pids())
    remove_state(Path(state.run_dir), state)
    if leftovers:
        stopped_by += f"; killed {leftovers} leftover process(es)"
    network = remove_network(Path(state.run_dir))
    if network:
        stopped_by += f"; {network}"
    return stopped_by


def remove_network(run_dir: Path) -> str | None:
    """Remove a ``--netns`` network left in ``run_dir`` (its launcher normally does)."""
    if not (run_dir / "netns.json").exists():
        return None

    return netns.teardown_recorded(run_dir)
