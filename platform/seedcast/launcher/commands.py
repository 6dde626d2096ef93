"""``seedcast up``, ``seedcast status`` and ``seedcast down``.

``up`` resolves the config (``--edges``, ``--peers``), writes it to the run
directory, cleans up after a crashed run, publishes the sample video when the
library is empty (``seedcast sample`` and ``seedcast publish`` run as
subprocesses so their progress bars show), and then either supervises the
cluster in the foreground (children's log lines stream with a coloured
prefix; Ctrl-C stops everything, a second Ctrl-C kills) or, with
``--detach``, hands it to a background launcher
(:mod:`seedcast.launcher.daemon`) and returns once every process is ready.
``status`` and ``down`` find the cluster through ``<run_dir>/state.json``
and talk to its launcher over the control socket.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from seedcast.config import ClusterConfig, to_toml
from seedcast.errors import SeedcastError, UsageError
from seedcast.launcher.plan import ClusterPlan, plan_cluster, prometheus_binary
from seedcast.launcher.state import (
    CLUSTER_ID_ENV,
    ClusterState,
    belongs_to,
    is_launcher,
    pid_alive,
    processes_of,
    read_state,
    remove_state,
    rss_bytes,
)
from seedcast.units import format_size, parse_host_port

SHUTDOWN_SECONDS = 30.0
"""How long ``down`` waits for the launcher to stop everything before killing."""


class ClusterNotRunning(SeedcastError):
    """There is no running cluster in this run directory."""


# --- shared helpers ------------------------------------------------------------


def _absolute(config: ClusterConfig) -> ClusterConfig:
    """The config with its data and run directories made absolute (children may chdir)."""
    data_dir = Path(config.cluster.data_dir).resolve()
    run_dir = config.run_dir.resolve() if config.cluster.run_dir else data_dir / "run"
    return dataclasses.replace(
        config,
        cluster=dataclasses.replace(config.cluster, data_dir=str(data_dir), run_dir=str(run_dir)),
    )


def _command_hint(args: argparse.Namespace, command: str) -> str:
    """``seedcast [--config F] [--data D] <command>``: how to reach this cluster again."""
    parts = ["seedcast"]
    if getattr(args, "config", None):
        parts += ["--config", str(args.config)]
    if getattr(args, "data", None):
        parts += ["--data", str(args.data)]
    return " ".join([*parts, command])


def _wait_pids_gone(pids: Iterable[int], timeout: float) -> list[int]:
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


def _stop_leftovers(cluster_id: str, pids: Iterable[int] = ()) -> int:
    """TERM, then KILL, every process of the cluster; returns how many there were."""
    leftovers = sorted(
        set(processes_of(cluster_id)) | {p for p in pids if belongs_to(p, cluster_id)}
    )
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    still = _wait_pids_gone(leftovers, 2.0)
    for pid in still:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    _wait_pids_gone(still, 2.0)
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
    count = _stop_leftovers(state.cluster_id, state.pids())
    remove_state(run_dir, state)
    _remove_network(run_dir)
    return (
        f"cleaned up a stale run in {run_dir} (launcher {state.launcher_pid} gone, "
        f"{count} leftover process(es) stopped)"
    )


# --- seedcast up ---------------------------------------------------------------


def configure_up(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--edges", type=int, metavar="N", help="number of edges (default: from the config)"
    )
    parser.add_argument(
        "--peers",
        type=int,
        metavar="M",
        help="number of viewers, besides the one seeding peer (default: peers.count)",
    )
    parser.add_argument(
        "--detach",
        action="store_true",
        help="leave the cluster running in the background and return once it is ready",
    )
    parser.add_argument(
        "--prometheus",
        action="store_true",
        help="also start a Prometheus server (Debian package prometheus)",
    )
    parser.add_argument(
        "--no-publish",
        action="store_true",
        help="don't publish the sample video even if the library is empty",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="the demo: viewers join a few seconds apart and stream the sample through their "
        "agents; a live table, then a QoE and offload summary (what `make demo` runs)",
    )
    parser.add_argument(
        "--demo-seconds",
        type=float,
        metavar="S",
        default=None,
        help="with --demo: seconds of video each viewer plays (default 30)",
    )
    parser.add_argument(
        "--demo-exit",
        action="store_true",
        help="with --demo: stop the cluster after the summary instead of waiting for Ctrl-C",
    )
    parser.add_argument(
        "--netns",
        action="store_true",
        help="root, Linux: every node in its own network namespace (10.77.0.0/16, veth pairs "
        "to a bridge, tc shaping, DNS on port 53 in each namespace's resolv.conf)",
    )
    parser.add_argument(
        "--shaping",
        choices=("tc", "buckets", "both"),
        default="tc",
        help="with --netns: enforce upload/download caps with tc on the links (default), "
        "Seedcast's token buckets, or both",
    )


def prepare_config(args: argparse.Namespace, config: ClusterConfig) -> ClusterConfig:
    if args.edges is not None:
        if args.edges < 0 or args.edges > 250:
            raise UsageError(f"--edges {args.edges}: use 0 to 250")
        config = config.with_edge_count(args.edges)
    if args.peers is not None:
        if args.peers < 0 or args.peers > 250:
            raise UsageError(f"--peers {args.peers}: use 0 to 250")
        config = config.with_peer_count(args.peers)
    return _absolute(config)


def run_up(args: argparse.Namespace, config: ClusterConfig) -> int:
    config = prepare_config(args, config)
    if getattr(args, "demo", False):
        from seedcast.launcher.demo import run_demo

        return run_demo(args, config)
    run_dir = config.run_dir
    note = clean_stale(run_dir)
    if note:
        print(note)
    with_prometheus = bool(args.prometheus or config.prometheus.enabled)
    layout = None
    if getattr(args, "netns", False):
        from seedcast.launcher import netns

        config, layout = netns.prepare_cluster(
            config, shaping=args.shaping, prometheus=with_prometheus
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / "cluster.toml"
    config_file.write_text(to_toml(config), encoding="utf-8")
    if not args.no_publish:
        publish_sample_if_empty(config, config_file)
    plan = plan_cluster(config, config_file, prometheus=with_prometheus)
    if layout is not None:
        # The launcher removes the network when it stops; until it runs, we do on error.
        plan = netns.start_cluster_network(plan, layout, run_dir)
        try:
            if args.detach:
                return _up_detached(args, config, config_file, plan)
            return _up_foreground(args, config, config_file, plan)
        except BaseException:
            state = read_state(run_dir)
            if state is None or not is_launcher(state.launcher_pid, state):
                netns.teardown_recorded(run_dir)  # else a detached launcher owns it
            raise
    check_addresses_free(plan)
    if args.detach:
        return _up_detached(args, config, config_file, plan)
    return _up_foreground(args, config, config_file, plan)


def check_addresses_free(plan: ClusterPlan) -> None:
    """Fail before starting anything when another program holds a planned address.

    Otherwise the cluster would come up without that process and say why only
    in its log. TCP everywhere, UDP too for the DNS.
    """
    import socket

    for spec in plan.processes:
        for address in (spec.address, spec.metrics):
            if not address:
                continue
            try:
                host, port = parse_host_port(address)
            except ValueError:
                continue
            if port == 0:
                continue
            kinds = [socket.SOCK_STREAM] + ([socket.SOCK_DGRAM] if spec.role == "dns" else [])
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            for kind in kinds:
                with socket.socket(family, kind) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        probe.bind((host.strip("[]"), port))
                    except OSError as error:
                        if error.errno != errno.EADDRINUSE:
                            continue  # e.g. an address this host lacks: the role says so
                        raise SeedcastError(
                            f"{address} ({spec.name}) is already in use by another program: "
                            "stop it, or give the cluster other addresses (--config FILE)"
                        ) from None


def publish_sample_if_empty(config: ClusterConfig, config_file: Path) -> None:
    """Make and publish the sample video when the library has no video at all."""
    from seedcast.origin.library import Library

    library = Library.for_data_dir(config.data_dir)
    if library.read_index_or_empty().videos:
        return
    sample_file = config.data_dir / "sample.mp4"
    config.data_dir.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "seedcast"]
    common = ["--config", str(config_file)]
    print(
        f"library is empty: making and publishing the sample video as {config.origin.sample_id!r}"
    )
    if not sample_file.exists():
        _run_step([*base, "sample", *common, "--out", str(sample_file)], "seedcast sample")
    _run_step(
        [*base, "publish", *common, str(sample_file), "--id", config.origin.sample_id],
        "seedcast publish",
    )


def _run_step(argv: Sequence[str], what: str) -> None:
    completed = subprocess.run(list(argv), check=False)
    if completed.returncode != 0:
        raise SeedcastError(f"{what} failed (exit {completed.returncode}); see its message above")


def _up_foreground(
    args: argparse.Namespace, config: ClusterConfig, config_file: Path, plan: ClusterPlan
) -> int:
    import trio
    from rich.console import Console
    from seedcast.launcher.output import ColourLines, LauncherLogHandler
    from seedcast.launcher.supervisor import Supervisor
    from seedcast.logs import setup_logging

    console = Console(highlight=False, soft_wrap=True)
    sink = ColourLines(console, [spec.name for spec in plan.processes])
    setup_logging("launcher", config.cluster.name, file=config.run_dir / "logs" / "launcher.log")
    LauncherLogHandler.install(sink)
    supervisor = Supervisor(config, plan, config_file=config_file, on_line=sink)
    failed: list[str] = []

    def on_ready(running: Supervisor) -> None:
        summary = build_summary(running, args)
        failed.extend(row["name"] for row in summary["processes"] if row["state"] == "failed")
        print_summary(console, summary, detached=False)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async with trio.open_nursery() as nursery:

                async def watch_signals() -> None:
                    async for signum in signals:
                        if supervisor._stopping:
                            console.print("[bold red]killing every process now")
                            supervisor.kill_now()
                        else:
                            name = signal.Signals(signum).name
                            console.print(
                                f"[bold]{name}: stopping the cluster (Ctrl-C again to kill at once)"
                            )
                            supervisor.request_stop()

                nursery.start_soon(watch_signals)
                await supervisor.run(on_ready=on_ready)
                nursery.cancel_scope.cancel()

    trio.run(main)
    console.print("[bold]cluster stopped")
    return 1 if failed else 0


def _up_detached(
    args: argparse.Namespace, config: ClusterConfig, config_file: Path, plan: ClusterPlan
) -> int:
    cluster_id = uuid.uuid4().hex
    log_dir = config.run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    launcher_log = log_dir / "launcher.log"
    read_fd, write_fd = os.pipe()
    plan_file = config.run_dir / "plan.json"
    plan_file.write_text(json.dumps(plan.to_json(), indent=1), encoding="utf-8")
    argv = [
        sys.executable,
        "-m",
        "seedcast.launcher.daemon",
        "--config",
        str(config_file),
        "--plan",
        str(plan_file),
        "--ready-fd",
        str(write_fd),
    ]
    env = dict(os.environ, **{CLUSTER_ID_ENV: cluster_id})
    with open(launcher_log, "ab") as output:
        daemon = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            pass_fds=[write_fd],
            start_new_session=True,
            env=env,
            close_fds=True,
        )
    os.close(write_fd)
    chunks = []
    try:
        with os.fdopen(read_fd, "rb") as reader:
            while chunk := reader.read(65536):
                chunks.append(chunk)
    except KeyboardInterrupt:
        with contextlib.suppress(ProcessLookupError):
            daemon.send_signal(signal.SIGTERM)
        daemon.wait()
        raise
    payload = b"".join(chunks)
    if not payload:
        daemon.wait()
        raise SeedcastError(
            f"the launcher stopped before the cluster was ready (exit {daemon.returncode}): "
            f"{_last_line(launcher_log)} (log: {launcher_log})"
        )
    summary = json.loads(payload)
    summary["hints"] = _hints(args)
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    print_summary(console, summary, detached=True)
    return 1 if any(row["state"] == "failed" for row in summary["processes"]) else 0


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no output"


def _hints(args: argparse.Namespace) -> dict[str, str]:
    return {"status": _command_hint(args, "status"), "down": _command_hint(args, "down")}


def build_summary(supervisor: Any, args: argparse.Namespace | None) -> dict[str, Any]:
    """What ``up`` prints once the cluster is ready (also sent by the detached launcher)."""
    import trio

    now = trio.current_time()
    rows = [supervisor._row(child, now) for child in supervisor.children]
    config: ClusterConfig = supervisor.config
    return {
        "cluster": config.cluster.name,
        "run_dir": str(config.run_dir),
        "ready_seconds": supervisor.ready_seconds,
        "launcher_pid": os.getpid(),
        "sample_id": _video_to_watch(config),
        "prometheus": supervisor.prometheus_url(),
        "prometheus_installed": prometheus_binary(config) is not None,
        "skipped": list(supervisor.plan.skipped),
        "processes": rows,
        "hints": _hints(args) if args is not None else {},
        "netns": _network_summary(config),
    }


def _network_summary(config: ClusterConfig) -> dict[str, Any] | None:
    if not (config.run_dir / "netns.json").exists():
        return None
    from seedcast.launcher import netns

    return netns.summary(config)


def _video_to_watch(config: ClusterConfig) -> str:
    with contextlib.suppress(Exception):
        from seedcast.origin.library import Library

        videos = Library.for_data_dir(config.data_dir).read_index_or_empty().videos
        if videos and config.origin.sample_id not in videos:
            return str(sorted(videos)[0])
    return config.origin.sample_id


def print_summary(console: Any, summary: Mapping[str, Any], *, detached: bool) -> None:
    rows = summary["processes"]
    by_role: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_role.setdefault(row["role"], []).append(row)
    ready = sum(1 for row in rows if row["state"] == "ready")
    seconds = summary.get("ready_seconds")
    took = f" in {seconds:.1f} s" if isinstance(seconds, float) else ""
    console.print(
        f"[bold green]Seedcast cluster {summary['cluster']!r} is up[/]: "
        f"{ready}/{len(rows)} processes ready{took}"
    )

    def line(label: str, text: str) -> None:
        console.print(f"  [bold]{label:<11}[/]{text}")

    for origin in by_role.get("origin", []):
        line("player", f"http://{origin['address']}/watch/{summary['sample_id']}")
        line(
            "origin", f"http://{origin['address']}  (manifest /{summary['sample_id']}/manifest.mpd)"
        )
    for dns in by_role.get("dns", []):
        host, _, port = str(dns["address"]).rpartition(":")
        line("dns", f"{dns['address']}  (dig @{host} -p {port} video.netcinema.test)")
    for edge in by_role.get("edge", []):
        region = f" region {edge['region']}" if edge.get("region") else ""
        line("edge", f"{edge['name']} http://{edge['address']}{region}")
    for tracker in by_role.get("tracker", []):
        line("tracker", f"http://{tracker['address']}/announce")
    for peer in by_role.get("peer", []):
        line("peer", f"{peer['name']} {peer['address']} (seeding)")
    viewers = by_role.get("viewer", [])
    if viewers:
        line("viewers", ", ".join(f"{v['name']} http://{v['address']}" for v in viewers))
    if summary.get("prometheus"):
        line("prometheus", str(summary["prometheus"]))
    elif summary.get("prometheus_installed"):
        line("prometheus", "not started (add --prometheus)")
    else:
        line("prometheus", "not installed (apt-get install prometheus), then add --prometheus")
    for row in rows:
        if row["state"] != "ready":
            console.print(
                f"  [bold red]{row['name']} {row['state']}[/] {row.get('error') or ''}"
                f" (log: {row['log']})"
            )
    for skipped in summary.get("skipped", []):
        console.print(f"  [yellow]{skipped}[/]")
    network = summary.get("netns")
    if network:
        line(
            "netns",
            f"{len(network['namespaces'])} namespaces {network['prefix']}-* on bridge "
            f"{network['bridge']} ({network['subnet']}; DNS {network['nameserver']}:53)",
        )
        line("try", str(network["example"]))
    line("logs", str(Path(summary["run_dir"]) / "logs"))
    hints = summary.get("hints") or {}
    status = hints.get("status", "seedcast status")
    down = hints.get("down", "seedcast down")
    if detached:
        line("status", status)
        line("stop", down)
    else:
        line("status", f"{status}  (in another terminal)")
        line("stop", f"Ctrl-C here, or {down}")


# --- seedcast status -----------------------------------------------------------


def configure_status(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print a JSON list with one object per process"
    )
    parser.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=1.0,
        default=None,
        metavar="S",
        help="keep the table on screen, refreshed every S seconds (default 1) until Ctrl-C",
    )


def query_cluster(state: ClusterState, timeout: float = 5.0) -> dict[str, Any]:
    """Ask the launcher for every process's row (with live statistics)."""
    import trio
    from seedcast.control import connect_control

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


def _stale_rows(state: ClusterState) -> list[dict[str, Any]]:
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


def run_status(args: argparse.Namespace, config: ClusterConfig) -> int:
    from seedcast.control import ControlError

    run_dir = _absolute(config).run_dir
    state = read_state(run_dir)
    if state is None:
        raise ClusterNotRunning(f"no cluster is running in {run_dir} (start one with seedcast up)")
    stale = not is_launcher(state.launcher_pid, state)
    rows: list[dict[str, Any]]
    if not stale:
        try:
            rows = list(query_cluster(state)["processes"])
        except (ControlError, TimeoutError, OSError):
            rows = _stale_rows(state)
            print(
                f"launcher {state.launcher_pid} does not answer; showing the state file",
                file=sys.stderr,
            )
    else:
        rows = _stale_rows(state)
        print(
            f"launcher {state.launcher_pid} is gone: stale state (clean up with "
            f"{_command_hint(args, 'down')})",
            file=sys.stderr,
        )
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    elif args.watch and not stale:
        _watch(state, args.watch)
    else:
        _print_table(rows, state)
    return 1 if stale else 0


def _watch(state: ClusterState, interval: float) -> None:
    """A live table until Ctrl-C or until the cluster goes away."""
    from rich.console import Console
    from rich.live import Live
    from seedcast.control import ControlError

    if interval <= 0:
        raise UsageError("--watch: the interval must be positive")
    console = Console(width=max(120, Console().width))
    with Live(console=console, auto_refresh=False) as live:
        while True:
            try:
                rows = list(query_cluster(state)["processes"])
            except (ControlError, TimeoutError, OSError):
                live.update(f"cluster {state.cluster!r} is gone", refresh=True)
                return
            live.update(_table(rows, state), refresh=True)
            try:
                time.sleep(interval)  # the refresh period of a display, not a wait for state
            except KeyboardInterrupt:
                return


_RATES = {
    "edge": (("req_per_s", "req/s", "{:.1f}"), ("hit_ratio", "hit", "{:.0%}")),
    "dns": (("queries_per_s", "q/s", "{:.1f}"),),
    "peer": (("peers", "peers", "{}"), ("bytes_up", "up", "size"), ("bytes_down", "down", "size")),
    "viewer": (
        ("peers", "peers", "{}"),
        ("bytes_up", "up", "size"),
        ("bytes_down", "down", "size"),
    ),
}


def format_rates(role: str, statistics: Mapping[str, Any]) -> str:
    parts = []
    known = _RATES.get(role)
    if known:
        for key, label, style in known:
            value = statistics.get(key)
            if value is None:
                continue
            with contextlib.suppress(TypeError, ValueError):
                shown = format_size(int(value)) if style == "size" else style.format(value)
                parts.append(f"{label} {shown}")
    else:
        for key, value in list(statistics.items())[:3]:
            parts.append(f"{key} {value}")
    return "  ".join(parts)


def _uptime(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or seconds <= 0:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def _print_table(rows: Sequence[Mapping[str, Any]], state: ClusterState) -> None:
    from rich.console import Console

    console = Console(width=max(120, Console().width))
    console.print(_table(rows, state))
    for row in rows:
        if row.get("state") == "failed" and row.get("error"):
            console.print(f"[red]{row['name']}: {row['error']}[/] (log: {row.get('log')})")


def _table(rows: Sequence[Mapping[str, Any]], state: ClusterState) -> Any:
    from rich.table import Table

    table = Table(title=f"cluster {state.cluster!r} ({state.run_dir})")
    for column in ("role", "name", "pid", "address", "state", "uptime", "restarts", "RSS", "rates"):
        table.add_column(
            column, justify="right" if column in ("pid", "restarts", "RSS") else "left"
        )
    styles = {
        "ready": "green",
        "starting": "yellow",
        "restarting": "yellow",
        "failed": "bold red",
        "stopped": "dim",
    }
    for row in rows:
        state_text = str(row.get("state"))
        rss = row.get("rss_bytes")
        table.add_row(
            str(row.get("role")),
            str(row.get("name")),
            str(row.get("pid") or "-"),
            str(row.get("address")),
            f"[{styles.get(state_text, 'white')}]{state_text}[/]",
            _uptime(row.get("uptime")),
            str(row.get("restarts", 0)),
            format_size(rss) if isinstance(rss, int) else "-",
            format_rates(str(row.get("role")), row.get("statistics") or {}),
        )
    return table


# --- seedcast down -------------------------------------------------------------


def configure_down(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=SHUTDOWN_SECONDS,
        metavar="S",
        help=f"seconds to wait for a graceful stop before killing (default {SHUTDOWN_SECONDS:g})",
    )


def stop_cluster(state: ClusterState, timeout: float) -> str:
    """Stop the recorded cluster: ask its launcher, else kill what is left. Returns a summary."""
    import trio
    from seedcast.control import ControlError, connect_control

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
        if _wait_pids_gone([state.launcher_pid], 5.0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.launcher_pid, signal.SIGKILL)
            _wait_pids_gone([state.launcher_pid], 2.0)
            stopped_by = "launcher did not stop; killed it"
        else:
            stopped_by = "stopped gracefully"
    leftovers = _stop_leftovers(state.cluster_id, state.pids())
    remove_state(Path(state.run_dir), state)
    if leftovers:
        stopped_by += f"; killed {leftovers} leftover process(es)"
    network = _remove_network(Path(state.run_dir))
    if network:
        stopped_by += f"; {network}"
    return stopped_by


def _remove_network(run_dir: Path) -> str | None:
    """Remove a ``--netns`` network left in ``run_dir`` (its launcher normally does)."""
    if not (run_dir / "netns.json").exists():
        return None
    from seedcast.launcher import netns

    return netns.teardown_recorded(run_dir)


def run_down(args: argparse.Namespace, config: ClusterConfig) -> int:
    run_dir = _absolute(config).run_dir
    state = read_state(run_dir)
    if state is None:
        network = _remove_network(run_dir)
        if network:
            print(f"no cluster is running in {run_dir} ({network})")
            return 0
        raise ClusterNotRunning(f"no cluster is running in {run_dir}: nothing to stop")
    how = stop_cluster(state, args.timeout)
    print(f"cluster {state.cluster!r} stopped ({len(state.processes)} processes; {how})")
    return 0


__all__ = [
    "configure_down",
    "configure_status",
    "configure_up",
    "run_down",
    "run_status",
    "run_up",
]
