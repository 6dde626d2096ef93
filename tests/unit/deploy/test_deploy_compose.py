"""deploy/compose.yaml: valid against the Compose Specification schema, and
its services find each other by the names deploy/cluster.toml gives them."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from seedcast.cli import COMMANDS
from seedcast.config import ClusterConfig, load_config, to_toml
from seedcast.units import parse_host_port

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
PROMETHEUS = DEPLOY / "compose" / "prometheus.yml"
SEEDCAST_SERVICES = {"publish", "origin", "tracker", "edge-1", "edge-2", "dns", "viewer"}
LOOPBACK = re.compile(r"\b127\.\d{1,3}\.\d{1,3}\.\d{1,3}\b|\blocalhost\b")


def compose_schema() -> dict[str, Any]:
    """The Compose Specification JSON schema as vendored by check-jsonschema."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def schema_errors(document: Any) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def cluster(compose: dict[str, Any]) -> ClusterConfig:
    return load_config(DEPLOY / compose["configs"]["cluster"]["file"])


def test_compose_file_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


def test_schema_catches_a_misspelt_key(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["origin"]["comand"] = broken["services"]["origin"].pop("command")
    assert any("comand" in error for error in schema_errors(broken))


def test_runs_every_role_and_the_observers(compose: dict[str, Any]) -> None:
    assert SEEDCAST_SERVICES | {"prometheus", "grafana", "load-test"} == set(compose["services"])
    roles = {
        name: service["command"][0]
        for name, service in compose["services"].items()
        if name in SEEDCAST_SERVICES - {"publish"}
    }
    assert sorted(roles.values()) == ["dns", "edge", "edge", "origin", "peer", "tracker"]


def test_seedcast_services_share_image_and_config(compose: dict[str, Any]) -> None:
    for name in SEEDCAST_SERVICES | {"load-test"}:
        service = compose["services"][name]
        assert service["image"].startswith("${SEEDCAST_IMAGE:-seedcast:")
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        (config,) = service["configs"]
        assert service["environment"]["SEEDCAST_CONFIG"] == config["target"]
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        if name != "publish":
            assert service["command"][0] in COMMANDS


def test_viewers_scale(compose: dict[str, Any]) -> None:
    viewer = compose["services"]["viewer"]
    # --scale needs replicas that don't collide: no fixed name, no host ports.
    assert "container_name" not in viewer
    assert "ports" not in viewer
    assert viewer["command"][:1] == ["peer"]


def test_library_is_published_before_the_origin_starts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["origin"]["depends_on"]["publish"] == {
        "condition": "service_completed_successfully"
    }
    assert services["publish"]["volumes"] == services["origin"]["volumes"]
    assert "seedcast publish" in services["publish"]["command"][0]


def test_bind_mounted_files_exist(compose: dict[str, Any]) -> None:
    sources = [DEPLOY / config["file"] for config in compose["configs"].values()]
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                sources.append(DEPLOY / source)
    assert DEPLOY / "grafana" / "seedcast.json" in sources
    missing = [str(path.relative_to(REPO)) for path in sources if not path.is_file()]
    assert missing == []


def test_health_checks_use_each_roles_port(compose: dict[str, Any], cluster: ClusterConfig) -> None:
    ports = {
        "origin": parse_host_port(cluster.origin.listen)[1],
        "tracker": parse_host_port(cluster.tracker.listen)[1],
        "dns": parse_host_port(cluster.dns.metrics_listen)[1],
        "viewer": cluster.peers.agent_port,
        **{edge.name: parse_host_port(edge.listen)[1] for edge in cluster.edges},
    }
    for name, port in ports.items():
        test = compose["services"][name]["healthcheck"]["test"]
        assert test == ["CMD", "seedcast-healthcheck", str(port)]


def host_and_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.scheme == "http", url
    assert parts.hostname, url
    return parts.hostname, parts.port or 80


def test_roles_find_each_other_by_service_name(
    compose: dict[str, Any], cluster: ClusterConfig
) -> None:
    services = compose["services"]

    def command(host: str) -> list[str]:
        assert host in services, f"{host} is not a compose service"
        return list(services[host]["command"])

    host, port = host_and_port(cluster.origin.url)
    assert command(host) == ["origin"]
    assert port == parse_host_port(cluster.origin.listen)[1]
    host, port = host_and_port(cluster.tracker.announce_url)
    assert command(host) == ["tracker"]
    assert port == parse_host_port(cluster.tracker.listen)[1]
    for edge in cluster.edges:
        host, port = host_and_port(edge.url)
        assert command(host) == ["edge", "--name", edge.name]
        assert port == parse_host_port(edge.listen)[1]
    host, port = parse_host_port(cluster.dns.server)
    assert command(host) == ["dns"]
    assert port == parse_host_port(cluster.dns.listen)[1]
    viewer = command("viewer")
    assert "--agent" in viewer
    listen = parse_host_port(viewer[viewer.index("--listen") + 1])
    assert listen == ("0.0.0.0", cluster.peers.port)
    agent = parse_host_port(viewer[viewer.index("--agent-listen") + 1])
    assert agent == ("0.0.0.0", cluster.peers.agent_port)


def test_viewer_prefix_is_the_compose_network(
    compose: dict[str, Any], cluster: ClusterConfig
) -> None:
    (subnet,) = compose["networks"]["seedcast"]["ipam"]["config"]
    assert [region.viewer_prefix for region in cluster.regions] == [subnet["subnet"]]
    assert cluster.peers.listen_prefix == subnet["subnet"]


def test_load_test_url_reaches_an_edge(compose: dict[str, Any], cluster: ClusterConfig) -> None:
    url = compose["services"]["load-test"]["command"][1]
    host, port = host_and_port(url)
    assert host == "video.netcinema.test"
    assert {parse_host_port(edge.listen)[1] for edge in cluster.edges} == {port}


def test_nothing_points_at_loopback(cluster: ClusterConfig) -> None:
    for path in (COMPOSE, PROMETHEUS, *sorted((DEPLOY / "compose").rglob("*.yaml"))):
        assert not LOOPBACK.findall(path.read_text(encoding="utf-8")), path
    assert not LOOPBACK.findall(to_toml(cluster))


# --- Prometheus and Grafana ----------------------------------------------------


def test_prometheus_scrapes_every_role(compose: dict[str, Any], cluster: ClusterConfig) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"origin", "edge", "dns", "tracker", "peer"}
    expected = {
        "origin": ({"origin"}, parse_host_port(cluster.origin.listen)[1]),
        "edge": ({edge.name for edge in cluster.edges}, 8080),
        "dns": ({"dns"}, parse_host_port(cluster.dns.metrics_listen)[1]),
        "tracker": ({"tracker"}, parse_host_port(cluster.tracker.listen)[1]),
        "peer": ({"viewer"}, cluster.peers.agent_port),
    }
    assert {parse_host_port(edge.listen)[1] for edge in cluster.edges} == {8080}
    for name, (hosts, port) in expected.items():
        (discovery,) = jobs[name]["dns_sd_configs"]
        assert set(discovery["names"]) == hosts
        assert hosts <= set(compose["services"])
        assert discovery["port"] == port
        assert {"role", "name"} <= {rule["target_label"] for rule in jobs[name]["relabel_configs"]}


@pytest.mark.slow
def test_prometheus_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(PROMETHEUS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_is_provisioned(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    targets = {volume.split(":")[1]: DEPLOY / volume.split(":")[0] for volume in grafana["volumes"]}
    datasources = yaml.safe_load(
        targets["/etc/grafana/provisioning/datasources/seedcast.yaml"].read_text(encoding="utf-8")
    )
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert host_and_port(source["url"]) == ("prometheus", 9090)
    dashboards = yaml.safe_load(
        targets["/etc/grafana/provisioning/dashboards/seedcast.yaml"].read_text(encoding="utf-8")
    )
    (provider,) = dashboards["providers"]
    folder = provider["options"]["path"]
    dashboard = targets[f"{folder}/seedcast.json"]
    assert dashboard == DEPLOY / "grafana" / "seedcast.json"
    # File provisioning fills no export inputs: ${DS_...} would leave panels without data.
    assert "${DS_" not in dashboard.read_text(encoding="utf-8")
