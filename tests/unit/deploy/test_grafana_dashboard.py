"""The Grafana dashboard: valid JSON, every panel queries, metric names follow the convention."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "seedcast.json"
METRIC = re.compile(r"\b(seedcast_[a-z0-9_]+)\b")
NAME = re.compile(r"^seedcast_(origin|edge|dns|tracker|peer|player|agent)_[a-z0-9_]+$")


def panels() -> list[dict[str, Any]]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [panel for panel in data["panels"] if panel["type"] != "row"]


def expressions() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def test_dashboard_is_well_formed() -> None:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert data["uid"] == "seedcast"
    ids = [panel["id"] for panel in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


def test_dashboard_covers_what_the_issue_asks_for() -> None:
    titles = " | ".join(panel["title"].lower() for panel in panels())
    for topic in (
        "hit ratio",
        "p2p share",
        "egress per tier",
        "dns answers per edge",
        "swarm",
        "stall",
        "startup delay",
    ):
        assert topic in titles, topic


def test_metric_names_follow_the_convention() -> None:
    names = {name for expr in expressions() for name in METRIC.findall(expr)}
    assert names
    for name in names:
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert NAME.match(base), name
