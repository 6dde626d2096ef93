"""The container cluster.toml files load, and the settings roles use to find
each other across hosts (public URLs and addresses, SEEDCAST_CONFIG) work."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from seedcast.cli import main
from seedcast.config import EdgeConfig, default_config, load_config

REPO = Path(__file__).resolve().parents[3]
CONTAINER_CONFIGS = {
    "compose": REPO / "deploy" / "cluster.toml",
    "kubernetes": REPO / "deploy" / "k8s" / "base" / "cluster.toml",
    "example": REPO / "deploy" / "k8s" / "overlays" / "example" / "cluster.toml",
}


@pytest.mark.parametrize("name", sorted(CONTAINER_CONFIGS))
def test_container_config_loads(name: str) -> None:
    config = load_config(CONTAINER_CONFIGS[name])
    assert config.cluster.name == name
    assert str(config.data_dir) == "/data"
    # Every role is reachable under a name, not under the address it listens on.
    assert config.origin.public_url
    assert config.tracker.public_url
    assert config.dns.public_address
    assert all(edge.public_url for edge in config.edges)
    assert {edge.region for edge in config.edges} <= {region.name for region in config.regions}


def test_public_settings_default_to_the_listen_address() -> None:
    config = default_config()
    assert config.tracker.announce_url == f"http://{config.tracker.listen}/announce"
    assert config.dns.server == config.dns.listen
    for edge in config.edges:
        assert edge.url == f"http://{edge.listen}"


def test_public_settings_win_when_set() -> None:
    config = default_config()
    tracker = dataclasses.replace(config.tracker, public_url="http://tracker:6969")
    assert tracker.announce_url == "http://tracker:6969/announce"
    dns = dataclasses.replace(config.dns, public_address="dns:53")
    assert dns.server == "dns:53"
    edge = EdgeConfig(name="edge-eu", region="eu", public_url="http://edge-eu")
    assert edge.url == "http://edge-eu"


def test_seedcast_config_environment_variable_names_the_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEEDCAST_CONFIG", str(CONTAINER_CONFIGS["compose"]))
    assert main(["config", "show"]) == 0
    output = capsys.readouterr().out
    assert 'name = "compose"' in output
    assert 'public_url = "http://edge-1:8080"' in output


def test_config_option_beats_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEEDCAST_CONFIG", str(CONTAINER_CONFIGS["compose"]))
    assert main(["--config", str(CONTAINER_CONFIGS["kubernetes"]), "config", "show"]) == 0
    assert 'name = "kubernetes"' in capsys.readouterr().out


def test_a_bad_config_in_the_environment_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = tmp_path / "cluster.toml"
    broken.write_text('[origin]\nlisten = "origin:8080"\n', encoding="utf-8")
    monkeypatch.setenv("SEEDCAST_CONFIG", str(broken))
    assert main(["config", "show"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "origin.listen" in error
