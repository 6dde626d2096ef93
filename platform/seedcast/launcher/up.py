"""``seedcast up``: start a local cluster and supervise it.

``up`` resolves the config (``--edges``, ``--peers``), writes it to the run
directory, cleans up after a crashed run, publishes the sample video when the
library is empty (``seedcast sample`` and ``seedcast publish`` run as
subprocesses so their progress bars show), and then either supervises the
cluster in the foreground (children's log lines stream with a coloured
prefix; Ctrl-C stops everything, a second Ctrl-C kills) or, with
``--detach``, hands it to a background launcher
(:mod:`seedcast.launcher.daemon`) and returns once every process is ready.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from seedcast.config import ClusterConfig, to_toml
from seedcast.errors import SeedcastError, UsageError
from seedcast.launcher import netns
from seedcast.launcher.cluster import absolute_dirs, clean_stale, command_hint
from seedcast.launcher.demo import run_demo
from seedcast.launcher.output import ColourLines, LauncherLogHandler
from seedcast.launcher.plan import ClusterPlan, plan_cluster, prometheus_binary
from seedcast.launcher.state import CLUSTER_ID_ENV, is_launcher, read_state, secure_run_dir
from seedcast.launcher.supervisor import Supervisor
from seedcast.logs import setup_logging
from seedcast.origin.library import Library
from seedcast.units import parse_host_port


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
        "--netem",
        action="store_true",
        help="emulated paths: the regions' delay, jitter and loss on every viewer-to-edge "
        "connection, through relays the DNS answers (same as [netem] enabled = true)",
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
    if getattr(args, "netem", False):
        config = dataclasses.replace(config, netem=dataclasses.replace(config.netem, enabled=True))
    return absolute_dirs(config)


def run_up(args: argparse.Namespace, config: ClusterConfig) -> int:
    config = prepare_config(args, config)
    secure_run_dir(config.run_dir)
    if getattr(args, "demo", False):
        return run_demo(args, config)
    run_dir = config.run_dir
    note = clean_stale(run_dir)
    if note:
        print(note)
    with_prometheus = bool(args.prometheus or config.prometheus.enabled)
    layout = None
    if getattr(args, "netns", False):
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
    return {"status": command_hint(args, "status"), "down": command_hint(args, "down")}


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

    return netns.summary(config)


def _video_to_watch(config: ClusterConfig) -> str:
    with contextlib.suppress(Exception):
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


__all__ = ["configure_up", "run_up"]
