"""What the launcher writes: Prometheus config and targets, the state file, the plan."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from seedcast.config import ClusterConfig
from seedcast.launcher import plan as plan_module
from seedcast.launcher.plan import Tier, plan_cluster
from seedcast.launcher.prometheus import (
    TEMPLATE,
    TEMPLATE_FILE,
    Target,
    render_config,
    render_targets,
)
from seedcast.launcher.state import ClusterState, read_state, remove_state, write_state


def test_built_in_template_matches_the_deploy_file() -> None:
    assert TEMPLATE_FILE.read_text(encoding="utf-8") == TEMPLATE


def test_rendered_config_is_yaml_with_file_sd(tmp_path: Path) -> None:
    text = render_config(cluster="local", targets_file=tmp_path / "t.json", scrape_interval=1.0)
    data = yaml.safe_load(text)
    assert data["global"]["scrape_interval"] == "1s"
    assert data["global"]["external_labels"] == {"cluster": "local"}
    (job,) = data["scrape_configs"]
    assert job["file_sd_configs"][0]["files"] == [str(tmp_path / "t.json")]


def test_sub_second_intervals_are_written_in_milliseconds(tmp_path: Path) -> None:
    text = render_config(cluster="c", targets_file=tmp_path / "t.json", scrape_interval=0.5)
    assert "scrape_interval: 500ms" in text


def test_targets_are_file_sd_json() -> None:
    text = render_targets([Target("127.0.20.1:8080", "edge", "edge-1", "eu")])
    assert json.loads(text) == [
        {
            "targets": ["127.0.20.1:8080"],
            "labels": {"role": "edge", "name": "edge-1", "region": "eu"},
        }
    ]


def test_state_file_round_trip(tmp_path: Path) -> None:
    state = ClusterState(
        cluster="local",
        cluster_id="abc",
        launcher_pid=1234,
        control=str(tmp_path / "c.sock"),
        run_dir=str(tmp_path),
        config=str(tmp_path / "cluster.toml"),
        detached=True,
        started_at=1.5,
        processes=({"role": "edge", "name": "edge-1", "pid": 55},),
        extra={"prometheus": None},
    )
    write_state(tmp_path, state)
    assert read_state(tmp_path) == state
    assert state.pids() == [55]
    remove_state(tmp_path, state)
    assert read_state(tmp_path) is None


@pytest.mark.parametrize("junk", ["", "{", "[]", '{"format": 99}', '{"format": 1}'])
def test_junk_state_reads_as_none(tmp_path: Path, junk: str) -> None:
    (tmp_path / "state.json").write_text(junk)
    assert read_state(tmp_path) is None


TORRENT = Path("/data/library/sample/sample.torrent")


def _plan(
    monkeypatch: pytest.MonkeyPatch,
    config: ClusterConfig,
    *,
    torrent: Path | None = TORRENT,
    prometheus: bool = False,
) -> plan_module.ClusterPlan:
    monkeypatch.setattr(plan_module, "published_torrent", lambda config: torrent)
    return plan_cluster(config, Path("/run/cluster.toml"), prometheus=prometheus)


def test_plan_of_a_full_cluster(monkeypatch: pytest.MonkeyPatch, config: ClusterConfig) -> None:
    plan = _plan(monkeypatch, config)
    names = [spec.name for spec in plan.processes]
    assert names == [
        "origin",
        "tracker",
        "dns",
        "edge-1",
        "edge-2",
        "seed",
        "viewer-1",
        "viewer-2",
        "viewer-3",
        "viewer-4",
    ]
    assert plan.skipped == ()
    by_name = {spec.name: spec for spec in plan.processes}
    edge = by_name["edge-2"]
    assert edge.argv[-4:] == ("--name", "edge-2", "--listen", "127.0.20.2:8080")
    assert edge.argv[3:6] == ("edge", "--config", "/run/cluster.toml")
    assert edge.tier is Tier.EDGES
    assert edge.region == "us"
    viewer = by_name["viewer-1"]
    assert viewer.role == "viewer"
    assert viewer.address == "127.0.40.2:8081"
    assert "--agent" in viewer.argv
    seed = by_name["seed"].argv
    assert "--seed" in seed
    assert seed[seed.index("--torrent") + 1] == str(TORRENT)
    assert seed[seed.index("--data") + 1] == "/data/library"  # the library holds the files
    assert seed[seed.index("--tracker") + 1] == "http://127.0.30.1:6969/announce"
    assert seed[seed.index("--metrics") + 1] == "127.0.40.1:8081"
    assert by_name["dns"].metrics == "127.0.53.1:9153"


def test_every_planned_command_line_parses(
    monkeypatch: pytest.MonkeyPatch, config: ClusterConfig
) -> None:
    """The plan names options without asking the roles: the real CLI must accept them all."""
    from seedcast.cli import build_parser

    plan = _plan(monkeypatch, config)
    for spec in plan.processes:
        assert spec.argv[:3] == (sys.executable, "-m", "seedcast")
        arguments = list(spec.argv[3:])
        parser, runners = build_parser(arguments)
        args = parser.parse_args(arguments)  # a wrong option exits 2 here
        assert args.command == arguments[0]
        assert runners[args.command] is not None, spec.name
        assert args.name == spec.name


def test_plan_without_a_published_video_has_no_seeder(
    monkeypatch: pytest.MonkeyPatch, config: ClusterConfig
) -> None:
    plan = _plan(monkeypatch, config, torrent=None)
    assert "seed" not in [spec.name for spec in plan.processes]
    assert any("no published video" in line for line in plan.skipped)
    viewer = next(spec for spec in plan.processes if spec.role == "viewer")
    assert "--torrent" not in viewer.argv  # viewers then fetch from the CDN only


def test_plan_says_when_prometheus_is_missing(
    monkeypatch: pytest.MonkeyPatch, config: ClusterConfig
) -> None:
    config = dataclasses.replace(
        config, prometheus=dataclasses.replace(config.prometheus, binary="no-such-prometheus")
    )
    plan = _plan(monkeypatch, config, prometheus=True)
    assert "prometheus" not in [spec.role for spec in plan.processes]
    assert any(re.search(r"prometheus: skipped .*not installed", line) for line in plan.skipped)


def test_up_validates_counts(config: ClusterConfig) -> None:
    from seedcast.errors import UsageError
    from seedcast.launcher.up import prepare_config

    args = argparse.Namespace(edges=-1, peers=None)
    with pytest.raises(UsageError, match="--edges"):
        prepare_config(args, config)
    args = argparse.Namespace(edges=3, peers=0)
    prepared = prepare_config(args, config)
    assert [edge.name for edge in prepared.edges] == ["edge-1", "edge-2", "edge-3"]
    assert prepared.peers.count == 0
    assert Path(prepared.cluster.run_dir).is_absolute()
