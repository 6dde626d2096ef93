"""Prometheus configuration for a running cluster: a config file and file_sd targets.

The launcher writes ``<run_dir>/prometheus/prometheus.yml`` from the template
(``deploy/prometheus/prometheus.yml.template``; :data:`TEMPLATE` is the same
text, checked by a test, for installs without the source tree) and rewrites
``targets.json`` atomically whenever a process becomes ready or goes away.
Prometheus watches that file and picks up changes without a reload.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = """\
# Seedcast: the Prometheus configuration `seedcast up` writes into
# <run_dir>/prometheus/prometheus.yml. The launcher fills in the placeholders
# and keeps the file_sd targets file current as processes start, restart and
# stop: one target per process (its /metrics address), labelled with its role
# and name. Prometheus re-reads the targets file by itself (no reload needed).
global:
  scrape_interval: ${scrape_interval}
  scrape_timeout: ${scrape_timeout}
  evaluation_interval: ${scrape_interval}
  external_labels:
    cluster: "${cluster}"

scrape_configs:
  - job_name: seedcast
    metrics_path: /metrics
    file_sd_configs:
      - files:
          - "${targets_file}"
        refresh_interval: 30s
"""

TEMPLATE_FILE = (
    Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "prometheus.yml.template"
)


@dataclass(frozen=True, slots=True)
class Target:
    address: str
    role: str
    name: str
    region: str = ""

    def to_json(self) -> dict[str, object]:
        labels = {"role": self.role, "name": self.name}
        if self.region:
            labels["region"] = self.region
        return {"targets": [self.address], "labels": labels}


def _duration(seconds: float) -> str:
    milliseconds = max(1, round(seconds * 1000))
    return f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"


def template_text() -> str:
    try:
        return TEMPLATE_FILE.read_text(encoding="utf-8")
    except OSError:
        return TEMPLATE


def render_config(*, cluster: str, targets_file: Path, scrape_interval: float) -> str:
    timeout = min(scrape_interval, max(0.5, scrape_interval * 0.8))
    values: Mapping[str, str] = {
        "scrape_interval": _duration(scrape_interval),
        "scrape_timeout": _duration(timeout),
        "cluster": cluster.replace('"', ""),
        "targets_file": str(targets_file),
    }
    return string.Template(template_text()).substitute(values)


def render_targets(targets: Iterable[Target]) -> str:
    return json.dumps([target.to_json() for target in targets], indent=1) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
