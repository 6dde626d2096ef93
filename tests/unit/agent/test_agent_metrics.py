"""The agent's Prometheus figures, from a statistics snapshot (no sockets)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from seedcast.agent.metrics import agent_metric_families
from seedcast.agent.server import WASTE_REASONS, AgentStatistics
from seedcast.metrics import StatisticsCollector


def _snapshot() -> AgentStatistics:
    return AgentStatistics(
        name="viewer-1",
        videos=1,
        peers=3,
        bytes_up=10,
        bytes_down=900,
        served_bytes={"peer": 800, "edge": 200, "origin": 0, "cache": 0},
        fetched_bytes={"peer": 800, "edge": 200, "origin": 0, "cache": 0},
        requests={"local": 1, "waited": 4, "error": 0, "relay": 1},
        wait_seconds_total=0.5,
        waits=4,
        edge_runs=2,
        edge_failures=0,
        edge_hash_failures=0,
        peer_hash_failures=0,
        bans=0,
        waiting_requests=0,
        last_edge="edge-1",
        downloaded_bytes=1030,
        played_bytes=1000,
        wasted_bytes={"duplicate": 30, "hash": 0, "skipped": 0},
    )


def test_wasted_downloaded_and_played_bytes_are_exported() -> None:
    registry = CollectorRegistry()
    StatisticsCollector(registry, lambda: agent_metric_families(_snapshot()))
    text = generate_latest(registry).decode()
    assert 'seedcast_agent_wasted_bytes_total{reason="duplicate"} 30.0' in text
    for reason in WASTE_REASONS:
        assert f'seedcast_agent_wasted_bytes_total{{reason="{reason}"}}' in text
    assert "seedcast_agent_downloaded_bytes_total 1030.0" in text
    assert "seedcast_agent_played_bytes_total 1000.0" in text


def test_the_status_carries_the_download_ratio() -> None:
    snapshot = _snapshot()
    assert snapshot.download_ratio == 1.03
    status = snapshot.as_status()
    assert status["download_ratio"] == 1.03
    assert status["wasted_bytes"] == 30
