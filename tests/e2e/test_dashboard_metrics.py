"""The Grafana dashboard against real metrics: every name it queries is exported by a process.

A small cluster comes up, a viewer plays a few seconds through its agent (so
the player and agent metrics exist), every process's /metrics is scraped and
parsed with prometheus_client's parser, and each metric name in
deploy/grafana/seedcast.json must be among the exported ones. promtool (Debian
package ``prometheus``), where installed, checks that every expression parses.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_cluster import cluster, cluster_file, publish_tiny_library, seedcast, status_rows

pytestmark = pytest.mark.slow

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "seedcast.json"
METRIC = re.compile(r"\b(seedcast_[a-z0-9_]+)\b")
BLOCK = 220
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def expressions() -> list[str]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        target["expr"]
        for panel in data["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def exported_names(text: str) -> set[str]:
    """Every series name a scrape can hold (families with no samples yet included)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def for_promtool(expression: str) -> str:
    """Grafana's variables replaced by values PromQL accepts."""
    expression = re.sub(r"\$__\w+", "1m", expression)
    return re.sub(r"\$\{?\w+\}?", ".*", expression)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    library = tmp_path_factory.mktemp("library")
    publish_tiny_library(library)
    tmp_path = tmp_path_factory.mktemp("dashboard")
    config_file = cluster_file(tmp_path, library, BLOCK, viewers=1)
    names: set[str] = set()
    with cluster(config_file):
        seedcast("--config", str(config_file), "up", "--detach")
        rows = status_rows(config_file)
        viewer = next(row for row in rows if row["role"] == "viewer")
        seedcast(
            "--config",
            str(config_file),
            "play",
            "--seconds",
            "2",
            f"http://{viewer['address']}/sample/manifest.mpd",
        )
        for row in rows:
            with urllib.request.urlopen(f"http://{row['metrics']}/metrics", timeout=10) as reply:
                names |= exported_names(reply.read().decode())
    return names


def test_every_dashboard_metric_is_exported(scraped: set[str]) -> None:
    wanted = {name for expression in expressions() for name in METRIC.findall(expression)}
    assert wanted, "the dashboard queries no seedcast metric"
    missing = sorted(wanted - scraped)
    assert missing == [], f"queried by the dashboard, exported by no process: {missing}"


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="needs promtool (Debian package prometheus)"
)
def test_promtool_accepts_every_expression(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expression_{index}", "expr": for_promtool(expression)}
                    for index, expression in enumerate(expressions())
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules), encoding="utf-8")  # JSON is YAML
    completed = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
