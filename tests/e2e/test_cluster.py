"""The whole cluster as real processes: up, status, supervision, down, Prometheus.

Every test publishes nothing itself: a tiny library (4 s, 320x180) is made
once per session and copied; each test has its own run directory and its own
loopback addresses (127.0.1<block>.x), so tests never meet each other or a
demo cluster on the default addresses. Every cluster is brought down at the
end, and the test fails if any process of it is left.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from seedcast.control import connect_control
from seedcast.launcher.cluster import wait_pids_gone
from seedcast.launcher.state import ClusterState, pid_alive, processes_of, read_state
from seedcast.testing.origin import publish_sample

pytestmark = pytest.mark.slow

SEEDCAST = [sys.executable, "-m", "seedcast"]


def seedcast(
    *arguments: str, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [*SEEDCAST, *arguments], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"seedcast {' '.join(arguments)} exited {completed.returncode}:\n"
            f"{completed.stdout}\n{completed.stderr}"
        )
    return completed


def publish_tiny_library(data_dir: Path) -> None:
    """A 4 s, 320x180 sample published as ``sample`` (a second or two of ffmpeg)."""
    publish_sample(data_dir, source=data_dir / "tiny.mp4")


def cluster_file(tmp_path: Path, library: Path, block: int, *, viewers: int = 2) -> Path:
    """A cluster.toml for this test: own data copy, run dir and 127.0.<block+n>.x addresses."""
    data_dir = tmp_path / "data"
    shutil.copytree(library, data_dir)
    run_dir = tmp_path / "run"
    text = f"""
[cluster]
name = "e2e-{block}"
data_dir = "{data_dir}"
run_dir = "{run_dir}"

[[regions]]
name = "eu"
viewer_prefix = "127.0.{block + 7}.0/24"

[[regions]]
name = "us"
viewer_prefix = "127.0.{block + 8}.0/24"

[origin]
listen = "127.0.{block + 1}.1:18080"

[[edges]]
name = "edge-1"
region = "eu"
listen = "127.0.{block + 2}.1:18080"

[[edges]]
name = "edge-2"
region = "us"
listen = "127.0.{block + 2}.2:18080"

[dns]
listen = "127.0.{block + 3}.1:15353"
metrics_listen = "127.0.{block + 3}.1:19153"

[tracker]
listen = "127.0.{block + 4}.1:16969"

[peers]
count = {viewers}
listen_prefix = "127.0.{block + 5}.0/24"

[prometheus]
listen = "127.0.{block + 6}.1:19090"
scrape_interval = "1s"
"""
    path = tmp_path / "cluster.toml"
    path.write_text(text, encoding="utf-8")
    return path


def status_rows(config_file: Path) -> list[dict[str, Any]]:
    completed = seedcast("--config", str(config_file), "status", "--json")
    rows: list[dict[str, Any]] = json.loads(completed.stdout)
    return rows


@contextlib.contextmanager
def cluster(config_file: Path, *options: str) -> Iterator[Path]:
    """``up --detach`` (the caller checks the result); always brought down and checked."""
    run_dir = config_file.parent / "run"
    try:
        yield run_dir
    finally:
        state = read_state(run_dir)
        seedcast("--config", str(config_file), "down", check=False)
        if state is not None:
            leftovers = processes_of(state.cluster_id)
            for pid in leftovers:  # never leave a process behind, even when a test failed
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            assert leftovers == [], f"processes left behind: {leftovers}"


@pytest.fixture(scope="module")
def tiny_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("library")
    publish_tiny_library(data_dir)
    return data_dir


def wait_ready_again(
    state: ClusterState, name: str, after_pid: int, timeout: float
) -> dict[str, Any]:
    """Ask the launcher to answer once ``name`` is ready with a pid other than ``after_pid``."""

    async def ask() -> dict[str, Any]:
        channel = await connect_control(state.control)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(channel.run)
            with trio.fail_after(timeout):
                reply = await channel.request(
                    "wait-ready", {"name": name, "after_pid": after_pid}, timeout=timeout
                )
            nursery.cancel_scope.cancel()
        await channel.aclose()
        row: dict[str, Any] = reply.get("result")
        return row

    return trio.run(ask)


def http_status(address: str, path: str) -> int:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


CORE = {"origin", "dns", "tracker", "edge-1", "edge-2", "seed"}


def test_up_status_supervise_down(tmp_path: Path, tiny_library: Path) -> None:
    config_file = cluster_file(tmp_path, tiny_library, 180)
    with cluster(config_file) as run_dir:
        up = seedcast("--config", str(config_file), "up", "--detach")
        assert "is up" in up.stdout
        assert "http://127.0.181.1:18080/watch/sample" in up.stdout

        rows = status_rows(config_file)
        by_name = {row["name"]: row for row in rows}
        assert set(by_name) >= CORE
        for row in rows:
            assert {"role", "name", "pid", "address", "state", "restarts"} <= set(row)
            assert row["state"] == "ready", row
            assert row["restarts"] == 0
            assert pid_alive(row["pid"])
        assert by_name["edge-1"]["role"] == "edge"
        assert by_name["edge-1"]["address"] == "127.0.182.1:18080"
        assert by_name["dns"]["address"] == "127.0.183.1:15353"
        assert by_name["seed"]["role"] == "peer"
        for log in ("origin.log", "edge-1.log", "dns.log"):
            assert " ready addresses=" in (run_dir / "logs" / log).read_text()

        state = read_state(run_dir)
        assert state is not None
        recorded = {*state.pids(), state.launcher_pid}

        victim = by_name["edge-1"]["pid"]
        os.kill(victim, signal.SIGKILL)
        back = wait_ready_again(state, "edge-1", victim, timeout=5.0)
        assert back["pid"] != victim
        assert back["restarts"] == 1
        assert http_status(back["address"], "/healthz") == 200
        recorded.add(back["pid"])
        restarted = {row["name"]: row for row in status_rows(config_file)}["edge-1"]
        assert (restarted["state"], restarted["restarts"]) == ("ready", 1)

        down = seedcast("--config", str(config_file), "down")
        assert "stopped gracefully" in down.stdout
        assert wait_pids_gone(sorted(recorded), 0) == []
        assert read_state(run_dir) is None
        assert not os.path.exists(state.control)
        assert processes_of(state.cluster_id) == []


def test_children_die_with_the_launcher_and_up_cleans_up(
    tmp_path: Path, tiny_library: Path
) -> None:
    config_file = cluster_file(tmp_path, tiny_library, 190)
    with cluster(config_file) as run_dir:
        seedcast("--config", str(config_file), "up", "--detach")
        state = read_state(run_dir)
        assert state is not None
        children = state.pids()
        assert len(children) >= len(CORE)
        os.kill(state.launcher_pid, signal.SIGKILL)
        assert wait_pids_gone(children, 2.0) == []

        stale = seedcast("--config", str(config_file), "status", "--json", check=False)
        assert stale.returncode == 1
        assert "stale" in stale.stderr
        assert {row["state"] for row in json.loads(stale.stdout)} == {"stopped"}

        again = seedcast("--config", str(config_file), "up", "--detach")
        assert "cleaned up a stale run" in again.stdout
        assert {row["state"] for row in status_rows(config_file)} == {"ready"}


def test_bad_config_names_the_key_and_starts_nothing(tmp_path: Path) -> None:
    config_file = tmp_path / "bad.toml"
    config_file.write_text(
        f'[cluster]\ndata_dir = "{tmp_path / "data"}"\n'
        '[[regions]]\nname = "eu"\nviewer_prefix = "127.0.200.0/24"\n'
        '[[edges]]\nname = "edge-1"\nregion = "mars"\n'
    )
    completed = seedcast("--config", str(config_file), "up", "--detach", check=False)
    assert completed.returncode == 1
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "edges[0].region" in lines[0]
    assert "mars" in lines[0]
    assert not (tmp_path / "data").exists()


def test_foreground_up_streams_logs_and_stops_on_ctrl_c(tmp_path: Path, tiny_library: Path) -> None:
    config_file = cluster_file(tmp_path, tiny_library, 200, viewers=0)
    process = subprocess.Popen(
        [*SEEDCAST, "--config", str(config_file), "up", "--edges", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen: list[str] = []
    try:
        with cluster(config_file) as run_dir:
            for line in process.stdout:
                seen.append(line)
                if "is up" in line:
                    break
            state = read_state(run_dir)
            assert state is not None
            assert not state.detached
            assert {row["name"] for row in state.processes} == {
                "origin",
                "dns",
                "tracker",
                "edge-1",
                "seed",
            }
            process.send_signal(signal.SIGINT)
            rest, _ = process.communicate(timeout=20)
            seen.append(rest)
            assert process.returncode == 0
            assert wait_pids_gone(state.pids(), 0) == []
            assert read_state(run_dir) is None
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    output = "".join(seen)
    assert "edge-1   │" in output  # every child's lines, with its name as prefix
    assert "launcher │" in output
    assert "cluster stopped" in output


@pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="needs the prometheus binary (Debian: prometheus)"
)
def test_prometheus_scrapes_every_process(tmp_path: Path, tiny_library: Path) -> None:
    config_file = cluster_file(tmp_path, tiny_library, 210)
    with cluster(config_file) as run_dir:
        seedcast("--config", str(config_file), "up", "--detach", "--prometheus")
        rows = status_rows(config_file)
        assert {"prometheus"} | CORE <= {row["name"] for row in rows}
        prometheus = "127.0.216.1:19090"
        expected = {row["metrics"] for row in rows}
        targets = json.loads((run_dir / "prometheus" / "targets.json").read_text())
        assert {entry["targets"][0] for entry in targets} == expected

        # Prometheus scrapes on its own schedule (1 s here, after its 5 s discovery
        # throttle): ask until every target has been scraped once, within a bound.
        deadline = time.monotonic() + 30
        results: dict[str, str] = {}
        while time.monotonic() < deadline:
            results = prometheus_up(prometheus)
            if set(results) >= expected:
                break
            time.sleep(0.5)
        assert set(results) >= expected, f"not scraped: {expected - set(results)}"
        assert {instance: value for instance, value in results.items() if value != "1"} == {}


def prometheus_up(address: str) -> dict[str, str]:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", "/api/v1/query?query=up")
        body = json.loads(connection.getresponse().read())
    except (OSError, ValueError):
        return {}
    finally:
        connection.close()
    return {sample["metric"]["instance"]: sample["value"][1] for sample in body["data"]["result"]}
