"""deploy/k8s: the overlay renders (like kubectl kustomize), every manifest
validates against the Kubernetes schemas, and the roles can find each other
through the Services that cluster.toml names."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kustomize_render import render
from seedcast.cli import COMMANDS
from seedcast.config import ClusterConfig, config_from_mapping, to_toml
from seedcast.units import parse_host_port

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "deploy" / "k8s"
KUSTOMIZATIONS = ["base", "overlays/example"]
# The oldest Kubernetes we claim to support, and the newest the validator knows.
VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]
CONFIG_PATH = "/etc/seedcast/cluster.toml"
LOOPBACK = re.compile(r"\b127\.\d{1,3}\.\d{1,3}\.\d{1,3}\b|\blocalhost\b")

Resource = dict[str, Any]

# The part of the Prometheus Operator's ServiceMonitor CRD these manifests use
# (its schema is not in kubernetes-validate, which knows only built-in kinds).
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "relabelings": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "sourceLabels": {
                                            "type": "array",
                                            "items": {
                                                "type": "string",
                                                "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$",
                                            },
                                        },
                                        "targetLabel": {"type": "string"},
                                        "action": {"type": "string"},
                                        "regex": {"type": "string"},
                                        "replacement": {"type": "string"},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def rendered(kustomization: str) -> list[Resource]:
    return render(K8S / kustomization)


def named(resources: list[Resource], kind: str, name: str) -> Resource:
    matches = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def workloads(resources: list[Resource]) -> Iterator[Resource]:
    for resource in resources:
        if resource["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"):
            yield resource


def pod_template(workload: Resource) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]  # type: ignore[no-any-return]
    return workload["spec"]["template"]  # type: ignore[no-any-return]


def pod_spec(workload: Resource) -> dict[str, Any]:
    return pod_template(workload)["spec"]  # type: ignore[no-any-return]


def all_containers(workload: Resource) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def cluster_config(resources: list[Resource]) -> ClusterConfig:
    (config_map,) = [r for r in resources if r["kind"] == "ConfigMap"]
    text = config_map["data"]["cluster.toml"]
    return config_from_mapping(tomllib.loads(text), source=config_map["metadata"]["name"])


def selected(resources: list[Resource], service: Resource) -> list[Resource]:
    selector = service["spec"]["selector"]
    return [
        workload
        for workload in workloads(resources)
        if selector.items() <= pod_template(workload)["metadata"]["labels"].items()
    ]


def seedcast_args(container: dict[str, Any]) -> list[str]:
    """The seedcast command line of a container that runs the image's entrypoint."""
    assert "command" not in container, container["name"]
    return list(container["args"])


# --- rendering ---------------------------------------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renders_with_unique_names(kustomization: str) -> None:
    resources = rendered(kustomization)
    keys = [(r["kind"], r["metadata"]["name"]) for r in resources]
    assert len(keys) == len(set(keys))
    kinds = {kind for kind, _ in keys}
    assert {"ConfigMap", "StatefulSet", "Deployment", "Service", "CronJob"} <= kinds


@pytest.mark.slow
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_python_render_matches_kubectl_kustomize(kustomization: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the Python render is checked on its own")
    output = subprocess.run(
        [kubectl, "kustomize", str(K8S / kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    theirs = [document for document in yaml.safe_load_all(output) if document]

    def key(resource: Resource) -> tuple[str, str, str]:
        metadata = resource["metadata"]
        return resource["kind"], metadata.get("namespace", ""), metadata["name"]

    mine = sorted(rendered(kustomization), key=key)
    theirs.sort(key=key)
    assert [key(r) for r in mine] == [key(r) for r in theirs]
    for ours, kubectls in zip(mine, theirs, strict=True):
        assert ours == kubectls, key(ours)


def test_overlay_applies_its_changes() -> None:
    base, overlay = rendered("base"), rendered("overlays/example")
    assert all(
        r["metadata"].get("namespace") == "seedcast" for r in overlay if r["kind"] != "Namespace"
    )
    assert named(overlay, "Namespace", "seedcast")
    assert named(overlay, "Deployment", "edge-eu")["spec"]["replicas"] == 2
    assert named(overlay, "Deployment", "viewer")["spec"]["replicas"] == 10
    for workload in workloads(overlay):
        for container in all_containers(workload):
            assert container["image"] == "registry.example.com/seedcast:0.1.0"
    for workload in workloads(base):
        for container in all_containers(workload):
            assert container["image"] == "seedcast:0.1.0"
    edge = named(overlay, "Deployment", "edge-eu")
    (container,) = pod_spec(edge)["containers"]
    assert container["resources"]["limits"]["memory"] == "1Gi"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"  # kept by the merge
    assert pod_spec(edge)["affinity"]["nodeAffinity"]
    (claim,) = named(overlay, "StatefulSet", "origin")["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert (
        named(overlay, "CronJob", "load-test")["spec"]["jobTemplate"]["spec"]["parallelism"] == 20
    )
    assert cluster_config(overlay).edge("edge-eu").cache_memory == 512 * 1024 * 1024
    # The generated ConfigMap's name changed with its content, and pods follow it.
    (base_map,) = [r for r in base if r["kind"] == "ConfigMap"]
    (overlay_map,) = [r for r in overlay if r["kind"] == "ConfigMap"]
    assert base_map["metadata"]["name"] != overlay_map["metadata"]["name"]
    for workload in workloads(overlay):
        names = {v["configMap"]["name"] for v in pod_spec(workload)["volumes"] if "configMap" in v}
        assert names == {overlay_map["metadata"]["name"]}


# --- schema validation -------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_manifest_validates(kustomization: str, version: str) -> None:
    for resource in rendered(kustomization):
        if resource["apiVersion"] == "monitoring.coreos.com/v1":
            jsonschema.validate(resource, SERVICE_MONITOR_SCHEMA)
            continue
        kubernetes_validate.validate(resource, version, strict=True)


def test_validator_catches_a_misspelt_field() -> None:
    edge = copy.deepcopy(named(rendered("base"), "Deployment", "edge-eu"))
    container = pod_spec(edge)["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(edge, VERSIONS[-1], strict=True)


def test_service_monitor_schema_catches_a_misspelt_field() -> None:
    monitor = copy.deepcopy(named(rendered("overlays/example"), "ServiceMonitor", "seedcast"))
    monitor["spec"]["endpoint"] = monitor["spec"].pop("endpoints")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)


# --- what every workload must have --------------------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_workloads_run_seedcast_with_the_config(kustomization: str) -> None:
    resources = rendered(kustomization)
    (config_map,) = [r for r in resources if r["kind"] == "ConfigMap"]
    for workload in workloads(resources):
        spec = pod_spec(workload)
        config_volumes = [v["name"] for v in spec["volumes"] if "configMap" in v]
        assert config_volumes == ["config"]
        assert spec["volumes"][0]["configMap"]["name"] == config_map["metadata"]["name"]
        for container in all_containers(workload):
            environment = {e["name"]: e.get("value") for e in container["env"]}
            assert environment["SEEDCAST_CONFIG"] == CONFIG_PATH
            mounts = {m["name"]: m for m in container["volumeMounts"]}
            assert mounts["config"]["mountPath"] == str(Path(CONFIG_PATH).parent)
            assert mounts["config"]["readOnly"] is True
            if "command" in container:  # a shell step (publishing the sample)
                assert container["command"] == ["sh", "-c"]
                assert "seedcast publish" in container["args"][0]
            else:
                assert seedcast_args(container)[0] in COMMANDS


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_workloads_have_resources_and_run_unprivileged(kustomization: str) -> None:
    for workload in workloads(rendered(kustomization)):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001  # the image's USER
        for container in all_containers(workload):
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), container["name"]
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert security["readOnlyRootFilesystem"] is True
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_servers_have_healthz_probes_and_scrape_annotations(kustomization: str) -> None:
    for workload in workloads(rendered(kustomization)):
        if workload["kind"] in ("Job", "CronJob"):
            continue
        (container,) = pod_spec(workload)["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        probes = ["readinessProbe"]
        if seedcast_args(container)[0] != "peer":  # viewers are clients: readiness only
            probes.append("livenessProbe")
        for probe in probes:
            check = container[probe]["httpGet"]
            assert check["path"] == "/healthz"
            assert check["port"] in ports
        annotations = pod_template(workload)["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert int(annotations["prometheus.io/port"]) in ports.values()


def test_origin_keeps_its_library_on_a_volume() -> None:
    origin = named(rendered("base"), "StatefulSet", "origin")
    (claim,) = origin["spec"]["volumeClaimTemplates"]
    assert origin["spec"]["serviceName"] == "origin"
    config = cluster_config(rendered("base"))
    for container in all_containers(origin):
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts[claim["metadata"]["name"]] == str(config.data_dir)


def test_dns_service_answers_on_udp_and_tcp() -> None:
    service = named(rendered("base"), "Service", "dns")
    protocols = {p["protocol"] for p in service["spec"]["ports"] if p["port"] == 53}
    assert protocols == {"UDP", "TCP"}


def test_load_test_is_a_template_that_never_runs_by_itself() -> None:
    template = named(rendered("overlays/example"), "CronJob", "load-test")
    assert template["spec"]["suspend"] is True
    job = template["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] > 0
    assert pod_spec(template)["restartPolicy"] == "Never"
    (container,) = pod_spec(template)["containers"]
    assert seedcast_args(container)[:2] == [
        "play",
        "http://video.netcinema.test/sample/manifest.mpd",
    ]


def test_service_monitor_covers_every_service() -> None:
    resources = rendered("overlays/example")
    monitor = named(resources, "ServiceMonitor", "seedcast")
    selector = monitor["spec"]["selector"]["matchLabels"]
    ports = {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]}
    for service in (r for r in resources if r["kind"] == "Service"):
        assert selector.items() <= service["metadata"]["labels"].items()
        assert ports & {p["name"] for p in service["spec"]["ports"]}, service["metadata"]["name"]


# --- how the roles find each other ---------------------------------------------


def resolve(
    resources: list[Resource], host: str, port: int, protocol: str = "TCP"
) -> tuple[dict[str, Any], int]:
    """The container a Service name + port leads to, and the container port it reaches."""
    service = named(resources, "Service", host)
    (service_port,) = [
        p for p in service["spec"]["ports"] if p["port"] == port and p["protocol"] == protocol
    ]
    (workload,) = selected(resources, service)
    (container,) = pod_spec(workload)["containers"]
    container_ports = {
        p["name"]: p for p in container["ports"] if p.get("protocol", "TCP") == protocol
    }
    target = container_ports[service_port["targetPort"]]
    return container, int(target["containerPort"])


def listen_port(address: str) -> int:
    return int(parse_host_port(address)[1])


def url_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.scheme == "http", url
    assert parts.path in ("", "/announce"), url
    assert parts.hostname, url
    return parts.hostname, parts.port or 80


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_roles_find_each_other_through_services(kustomization: str) -> None:
    resources = rendered(kustomization)
    config = cluster_config(resources)

    host, port = url_host_port(config.origin.url)
    origin, target_port = resolve(resources, host, port)
    assert seedcast_args(origin) == ["origin"]
    assert target_port == listen_port(config.origin.listen)

    host, port = url_host_port(config.tracker.announce_url)
    tracker, target_port = resolve(resources, host, port)
    assert seedcast_args(tracker) == ["tracker"]
    assert target_port == listen_port(config.tracker.listen)

    assert len(config.edges) >= 2
    for edge in config.edges:
        host, port = url_host_port(edge.url)
        container, target_port = resolve(resources, host, port)
        assert seedcast_args(container) == ["edge", "--name", edge.name]
        assert target_port == listen_port(edge.listen)

    host, port = parse_host_port(config.dns.server)
    for protocol in ("UDP", "TCP"):
        dns, target_port = resolve(resources, host, port, protocol)
        assert seedcast_args(dns) == ["dns"]
        assert target_port == listen_port(config.dns.listen)

    viewers = named(resources, "Deployment", "viewer")
    (peer,) = pod_spec(viewers)["containers"]
    args = seedcast_args(peer)
    assert args[0] == "peer"
    bittorrent = {p["name"]: p["containerPort"] for p in peer["ports"]}
    assert "--agent" in args
    assert listen_port(args[args.index("--listen") + 1]) == bittorrent["bittorrent"]
    assert listen_port(args[args.index("--agent-listen") + 1]) == bittorrent["http"]
    assert bittorrent["bittorrent"] == config.peers.port
    assert bittorrent["http"] == config.peers.agent_port


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_roles_listen_on_every_interface(kustomization: str) -> None:
    config = cluster_config(rendered(kustomization))
    listens = [
        config.origin.listen,
        config.tracker.listen,
        config.dns.listen,
        config.dns.metrics_listen,
        *(edge.listen for edge in config.edges),
    ]
    assert all(parse_host_port(address)[0] == "0.0.0.0" for address in listens)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_nothing_points_at_loopback(kustomization: str) -> None:
    resources = rendered(kustomization)
    text = yaml.safe_dump_all(resources) + to_toml(cluster_config(resources))
    assert not LOOPBACK.findall(text)
