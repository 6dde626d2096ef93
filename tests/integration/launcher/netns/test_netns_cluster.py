"""``seedcast up --netns`` for real (root): a whole cluster, each node in its own namespace.

Origin, DNS, tracker, 2 edges, the seeding peer and 3 viewer agents run in
namespaces on one bridge. Each viewer streams the sample through its agent
with a headless ``seedcast play`` run inside its namespace (``ip netns
exec``), with no stalls; ``curl`` inside a viewer's namespace resolves
``video.netcinema.test`` through the Seedcast DNS (its resolv.conf) and gets
the edge of the viewer's region. SIGKILLing the launcher leaves the network
behind; the next ``up`` cleans it and starts afresh; ``down`` leaves no
process, namespace, link, qdisc or resolv.conf behind. Whatever happens, the
fixture's ``finally`` removes everything the test made.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from seedcast.launcher.cluster import wait_pids_gone
from seedcast.launcher.netns import leftovers, prefix_for, sweep
from seedcast.launcher.state import processes_of, read_state
from seedcast.testing.origin import publish_sample

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("netns_ready")]

SEEDCAST = [sys.executable, "-m", "seedcast"]
EDGE_PORT = 18080


def seedcast(*arguments: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [*SEEDCAST, *arguments], capture_output=True, text=True, timeout=timeout, check=False
    )
    if completed.returncode != 0:
        raise AssertionError(
            f"seedcast {' '.join(arguments)} exited {completed.returncode}:\n"
            f"{completed.stdout}\n{completed.stderr}"
        )
    return completed


@pytest.fixture(scope="module")
def tiny_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s, 320x180 sample published as ``sample`` (one 360p rendition)."""
    data_dir = tmp_path_factory.mktemp("netns-library")
    publish_sample(data_dir, source=data_dir / "tiny.mp4")
    return data_dir


@pytest.fixture
def netns_cluster(tmp_path: Path, tiny_library: Path) -> Iterator[Path]:
    """A cluster.toml (3 viewers) whose ``--netns`` run is torn down whatever happens."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (apt-get install curl)")
    data_dir = tmp_path / "data"
    shutil.copytree(tiny_library, data_dir)
    run_dir = tmp_path / "run"
    config_file = tmp_path / "cluster.toml"
    config_file.write_text(
        f"""
[cluster]
name = "netns-test"
data_dir = "{data_dir}"
run_dir = "{run_dir}"

[[edges]]
name = "edge-1"
region = "eu"
listen = "127.0.20.1:{EDGE_PORT}"

[[edges]]
name = "edge-2"
region = "us"
listen = "127.0.20.2:{EDGE_PORT}"

[peers]
count = 3

[dns]
# Three players stream while curl asks: on a loaded 2-core machine a probe can
# take longer than the 1 s default, and a slow edge leaves the geo answer.
health_timeout = "3s"
""",
        encoding="utf-8",
    )
    cluster_ids: set[str] = set()
    try:
        yield config_file
    finally:
        state = read_state(run_dir)
        if state is not None:
            cluster_ids.add(state.cluster_id)
        with contextlib.suppress(Exception):
            subprocess.run(
                [*SEEDCAST, "--config", str(config_file), "down", "--timeout", "10"],
                capture_output=True,
                timeout=30,
            )
        for cluster_id in cluster_ids:
            for pid in processes_of(cluster_id):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        sweep(prefix_for(run_dir))


def status(config_file: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        seedcast("--config", str(config_file), "status", "--json").stdout
    )
    return rows


def in_namespace(namespace: str, *argv: str) -> list[str]:
    return [shutil.which("ip") or "ip", "netns", "exec", namespace, *argv]


def curl_edge(namespace: str) -> str:
    """``<status> <address>`` of the edge curl reached by name from inside ``namespace``."""
    url = f"http://video.netcinema.test:{EDGE_PORT}/sample/manifest.mpd"
    completed = subprocess.run(
        in_namespace(
            namespace,
            "curl",
            "-sS",
            "-m",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{remote_ip}",
            url,
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def test_netns_cluster_streams_resolves_recovers_and_cleans_up(netns_cluster: Path) -> None:
    config_file = netns_cluster
    run_dir = config_file.parent / "run"
    prefix = prefix_for(run_dir)
    up = seedcast("--config", str(config_file), "up", "--detach", "--netns", "--no-publish")
    assert f"namespaces {prefix}-*" in up.stdout

    rows = status(config_file)
    by_name = {row["name"]: row for row in rows}
    assert sorted(by_name) == sorted(
        ["origin", "dns", "tracker", "edge-1", "edge-2", "seed", "viewer-1", "viewer-2", "viewer-3"]
    )
    assert all(row["state"] == "ready" for row in rows), rows
    assert all(row["address"].startswith("10.77.") for row in rows), rows
    assert by_name["dns"]["address"] == "10.77.53.1:53"

    # Every viewer streams the sample through its own agent, inside its namespace.
    players = {
        name: subprocess.Popen(
            in_namespace(
                f"{prefix}-{name}",
                *SEEDCAST,
                "--config",
                str(run_dir / "cluster.toml"),
                "play",
                f"http://{by_name[name]['address']}/sample/manifest.mpd",
                "--json",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("viewer-1", "viewer-2", "viewer-3")
    }
    reports = {}
    try:
        for name, player in players.items():
            output, errors = player.communicate(timeout=60)
            assert player.returncode == 0, errors
            reports[name] = json.loads(output)
    finally:
        for player in players.values():
            if player.poll() is None:
                player.kill()
                player.wait()
    for name, report in reports.items():
        assert report["error"] is None, (name, report)
        assert report["stall_count"] == 0, (name, report)
        assert report["played_seconds"] >= 3.9, (name, report)

    # curl (libc resolver, /etc/netns/<ns>/resolv.conf) asks the Seedcast DNS: eu -> edge-1.
    assert curl_edge(f"{prefix}-viewer-1") == "200 10.77.20.1"
    assert curl_edge(f"{prefix}-viewer-2") == "200 10.77.20.2"

    # The launcher dies: its children follow, the network stays until the next up.
    state = read_state(run_dir)
    assert state is not None
    os.kill(state.launcher_pid, signal.SIGKILL)
    assert wait_pids_gone([state.launcher_pid, *state.pids()], 5.0) == []
    assert leftovers(prefix)["namespace"]
    again = seedcast("--config", str(config_file), "up", "--detach", "--netns", "--no-publish")
    assert "cleaned up a stale run" in again.stdout
    assert all(row["state"] == "ready" for row in status(config_file))
    assert curl_edge(f"{prefix}-viewer-3") == "200 10.77.20.1"

    second = read_state(run_dir)
    assert second is not None
    seedcast("--config", str(config_file), "down")
    assert wait_pids_gone([second.launcher_pid, *second.pids()], 5.0) == []
    assert processes_of(second.cluster_id) == []
    assert leftovers(prefix) == {
        "namespace": [],
        "link": [],
        "qdisc": [],
        "resolv.conf folder": [],
    }
    assert not (run_dir / "netns.json").exists()
