"""A cluster under emulated latency: ``up --netem``, the DNS answers relays, streaming has no stalls.

The regions have a 20 ms last mile (40 ms RTT to an edge of one's own region)
and 40 ms between them; the DNS uses the latency policy. A headless player in
eu resolves the video name through the Seedcast DNS, gets the eu edge's relay
and streams the tiny sample without a stall; one through a viewer's agent
does too; the relay's metrics show the connections it carried.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from test_cluster import (
    cluster,
    cluster_file,
    http_status,
    seedcast,
    status_rows,
    tiny_library,
)

pytestmark = pytest.mark.slow
__all__ = ["tiny_library"]  # the shared fixture, imported for this module

BLOCK = 220


def netem_cluster_file(tmp_path: Path, library: Path) -> Path:
    path = cluster_file(tmp_path, library, BLOCK, viewers=1)
    text = path.read_text(encoding="utf-8")
    for region in ("eu", "us"):
        text = text.replace(
            f'name = "{region}"\n',
            f'name = "{region}"\nlast_mile_ms = 20\n'
            + (f"latency_ms = {{ {'us' if region == 'eu' else 'eu'} = 40 }}\n"),
            1,
        )
    text += f"""
[netem]
enabled = true
relay_prefix = "127.0.{BLOCK + 9}.0/24"
listen = "127.0.{BLOCK + 9}.254:19120"
probe_interval = "500ms"
"""
    text = text.replace(
        "[dns]\n",
        '[dns]\nnames = [{ name = "video.kingcdn.test", policy = "latency" }]\n',
    )
    path.write_text(text, encoding="utf-8")
    return path


def play(config_file: Path, url: str, source: str) -> dict[str, object]:
    completed = seedcast(
        "--config",
        str(config_file),
        "play",
        url,
        "--json",
        "--local-address",
        source,
        timeout=90,
    )
    result: dict[str, object] = json.loads(completed.stdout)
    return result


def wait_edges_healthy(config_file: Path, timeout: float = 20.0) -> None:
    """Until the DNS's health checks have seen every edge up (``up`` is ready before that:
    a play started at once may be sent to whichever edge was checked first)."""
    from seedcast.config import load_config

    config = load_config(config_file)
    wanted = [f'seedcast_dns_edge_healthy{{edge="{edge.name}"}} 1.0' for edge in config.edges]
    deadline = time.monotonic() + timeout
    metrics = ""
    while time.monotonic() < deadline:
        url = f"http://{config.dns.metrics_listen}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            metrics = response.read().decode()
        if all(line in metrics.splitlines() for line in wanted):
            return
        time.sleep(0.1)  # polling the DNS's own health state: no event to wait on from outside
    raise AssertionError(f"the DNS did not see every edge up within {timeout} s: {wanted}")


def test_cluster_under_latency_streams_without_stalls(tmp_path: Path, tiny_library: Path) -> None:
    config_file = netem_cluster_file(tmp_path, tiny_library)
    with cluster(config_file):
        seedcast("--config", str(config_file), "up", "--detach", timeout=90)
        names = {row["name"]: row for row in status_rows(config_file)}
        assert names["netem"]["state"] == "ready"
        wait_edges_healthy(config_file)

        direct = play(
            config_file,
            "http://video.netcinema.test:18080/sample/manifest.mpd",
            f"127.0.{BLOCK + 7}.5",
        )
        assert direct["stall_count"] == 0, direct
        assert direct["served_by"] == {"edge-1": direct["bytes_from_edges"]}
        # At least a fresh connection's handshake and first request: 2 RTT of 40 ms.
        assert float(direct["startup_delay_s"]) >= 0.08  # type: ignore[arg-type]
        viewer_agent = names["viewer-1"]["address"]
        through_agent = play(
            config_file, f"http://{viewer_agent}/sample/manifest.mpd", f"127.0.{BLOCK + 7}.6"
        )
        assert through_agent["stall_count"] == 0, through_agent

        assert http_status(f"127.0.{BLOCK + 9}.254:19120", "/healthz") == 200
        with urllib.request.urlopen(f"http://127.0.{BLOCK + 9}.254:19120/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'seedcast_netem_connections_total{relay="edge-1"}' in metrics
        line = next(
            entry
            for entry in metrics.splitlines()
            if entry.startswith('seedcast_netem_connections_total{relay="edge-1"}')
        )
        assert float(line.split()[-1]) >= 1
