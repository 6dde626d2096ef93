"""``seedcast bench launch``: how long ``up --detach`` takes to a ready cluster, and RSS.

Each run starts the cluster (built-in config by default: origin, DNS,
tracker, 2 edges, the seeding peer and the viewers that exist) with ``up
--detach`` in a fresh temporary data and run directory, with a tiny
published sample, and times it until ``up`` returns, which is exactly when
every process has reported ready. Then it reads ``status --json`` (RSS per
process) and times ``down``.

Baseline, measured in the same run: the same number of bare Python
processes that import trio, started at once, each writing one byte to a
pipe when its imports are done -- the interpreter start-up floor that any
multi-process Python launcher pays. RSS baseline: one such bare process.
Goals from the issue: ready in under 3 s, under 60 MB RSS per process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from seedcast.config import ClusterConfig, to_toml
from seedcast.errors import SeedcastError
from seedcast.launcher.state import rss_bytes
from seedcast.testing.origin import publish_sample
from seedcast.testing.processes import check_seedcast
from seedcast.units import MiB, format_size

BARE = "import os, sys, trio; os.write(int(sys.argv[1]), b'x'); sys.stdin.read()"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=3, help="clusters to start (default 3)")
    parser.add_argument("--edges", type=int, default=2)
    parser.add_argument("--peers", type=int, default=4, help="viewers (default 4)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def bare_processes(count: int) -> tuple[float, int]:
    """Seconds until ``count`` bare python+trio processes are all up; RSS of one (bytes)."""
    read_fd, write_fd = os.pipe()
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", BARE, str(write_fd)],
            pass_fds=[write_fd],
            stdin=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    os.close(write_fd)
    got = 0
    try:
        while got < count:
            ready, _, _ = select.select([read_fd], [], [], 60)
            if not ready:
                raise SeedcastError("bare baseline processes did not start in 60 s")
            got += len(os.read(read_fd, count))
        elapsed = time.monotonic() - started

        rss = rss_bytes(processes[0].pid) or 0
    finally:
        os.close(read_fd)
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
            process.wait()
    return elapsed, rss


ROOT_PACKAGES = (
    "seedcast",
    "seedcast.origin",
    "seedcast.edge",
    "seedcast.nameserver",
    "seedcast.tracker",
    "seedcast.peer",
    "seedcast.agent",
)


def byte_compile_sources() -> None:
    """Write the .pyc files of Seedcast's own modules (pip does this for regular installs).

    An editable install run with PYTHONDONTWRITEBYTECODE never gets them, and
    then every child compiles its modules from source (~50 ms of CPU each).
    """
    import compileall
    import importlib

    # One package per source root (README "Layout"); a namespace path also holds the
    # editable install's finder hook, which is no folder.
    for package in ROOT_PACKAGES:
        for folder in importlib.import_module(package).__path__:
            if Path(folder).is_dir():
                compileall.compile_dir(folder, quiet=1)


def one_run(
    config: ClusterConfig, workdir: Path, library: Path, args: argparse.Namespace
) -> dict[str, Any]:
    import shutil

    data_dir = workdir / "data"
    shutil.copytree(library, data_dir)
    config = dataclasses.replace(
        config,
        cluster=dataclasses.replace(
            config.cluster, data_dir=str(data_dir), run_dir=str(workdir / "run")
        ),
    )
    config_file = workdir / "cluster.toml"
    config_file.write_text(to_toml(config), encoding="utf-8")
    base = ["--config", str(config_file)]
    started = time.monotonic()
    check_seedcast(
        *base,
        "up",
        "--detach",
        "--no-publish",
        "--edges",
        str(args.edges),
        "--peers",
        str(args.peers),
    )
    up_seconds = time.monotonic() - started
    try:
        rows = json.loads(check_seedcast(*base, "status", "--json").stdout)
    finally:
        started = time.monotonic()
        check_seedcast(*base, "down")
        down_seconds = time.monotonic() - started
    state_file = workdir / "run" / "state.json"
    return {
        "up_seconds": up_seconds,
        "down_seconds": down_seconds,
        "processes": [
            {
                "name": row["name"],
                "role": row["role"],
                "state": row["state"],
                "rss_bytes": row.get("rss_bytes"),
            }
            for row in rows
        ],
        "state_left": state_file.exists(),
    }


def run(args: argparse.Namespace, config: ClusterConfig) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    results = []
    with tempfile.TemporaryDirectory(prefix="seedcast-bench-launch-") as temporary:
        root = Path(temporary)
        library = root / "library"
        console.print("byte-compiling the sources and publishing a tiny sample (not timed)")
        byte_compile_sources()
        publish_sample(library, video_id=config.origin.sample_id, source=root / "tiny.mp4")
        for index in range(args.runs):
            result = one_run(config, root / f"run-{index}", library, args)
            count = len(result["processes"])
            baseline_seconds, baseline_rss = bare_processes(count)
            result["baseline_seconds"] = baseline_seconds
            result["baseline_rss_bytes"] = baseline_rss
            results.append(result)
            console.print(
                f"run {index + 1}: {count} processes ready in {result['up_seconds']:.2f} s "
                f"(bare python+trio x{count}: {baseline_seconds:.2f} s), "
                f"down in {result['down_seconds']:.2f} s"
            )
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    up = statistics.median(result["up_seconds"] for result in results)
    floor = statistics.median(result["baseline_seconds"] for result in results)
    down = statistics.median(result["down_seconds"] for result in results)
    table = Table(title=f"seedcast up --detach to ready (median of {len(results)} runs)")
    for column in ("measure", "seedcast", "baseline", "ratio", "goal"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    table.add_row("ready (s)", f"{up:.2f}", f"{floor:.2f}", f"{up / floor:.2f}x", "< 3 s")
    table.add_row("down (s)", f"{down:.2f}", "-", "-", "-")
    last = results[-1]
    for row in last["processes"]:
        rss = row["rss_bytes"] or 0
        table.add_row(
            f"RSS {row['name']} ({row['role']}, {row['state']})",
            format_size(rss),
            format_size(last["baseline_rss_bytes"]),
            f"{rss / max(1, last['baseline_rss_bytes']):.2f}x",
            "< 60 MB" if rss < 60 * 1_000_000 else "[red]over 60 MB",
        )
    console.print(table)
    console.print(
        f"baseline: {len(last['processes'])} bare `python -c 'import trio'` processes started "
        f"at once (interpreter floor); RSS baseline: one of them. Load average: "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs."
    )
    worst = max((row["rss_bytes"] or 0) for row in last["processes"])
    console.print(f"largest RSS {worst / MiB:.1f} MiB")
    return 0
