"""The Prometheus files the launcher writes, and the dashboard's queries, checked by promtool."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from seedcast.launcher.prometheus import Target, render_config, render_targets

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "seedcast.json"

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="needs promtool (Debian: prometheus)")


@needs_promtool
def test_rendered_config_passes_promtool(tmp_path: Path) -> None:
    targets = tmp_path / "targets.json"
    targets.write_text(render_targets([Target("127.0.20.1:8080", "edge", "edge-1", "eu")]))
    config = tmp_path / "prometheus.yml"
    config.write_text(render_config(cluster="local", targets_file=targets, scrape_interval=5.0))
    assert promtool is not None
    completed = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    rules = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "1m")
            rules.append(
                f"      - record: seedcast:panel_{panel['id']}_{target['refId']}\n"
                f"        expr: {json.dumps(expr)}\n"
            )
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text("groups:\n  - name: dashboard\n    rules:\n" + "".join(rules))
    assert promtool is not None
    completed = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
