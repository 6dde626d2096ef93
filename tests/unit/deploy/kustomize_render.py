"""A small kustomize renderer for the features deploy/k8s uses, in Python.

The tests must render the overlay without network or a kustomize binary, so
this module implements the subset of kustomize the manifests rely on, with
kustomize's semantics:

- ``resources``: YAML files (several documents each) and directories holding
  a kustomization (rendered first, recursively);
- ``configMapGenerator`` with ``files`` / ``literals`` and ``behavior``
  create | replace | merge; generated names get kustomize's content hash
  suffix at the end of the top-level build, and every reference from a pod
  template (volumes, envFrom, env valueFrom; CronJobs' job templates too)
  follows the new name;
- ``patches`` with ``path`` or inline ``patch``: strategic merge patches that
  name their target by kind and metadata.name. Lists merge by key the way the
  Kubernetes API declares it for the fields used here (containers,
  initContainers, volumes, env by name; volumeMounts by mountPath); other
  lists are replaced, maps are merged, ``null`` deletes a key;
- ``namespace``, ``images`` (newName/newTag/digest) and ``replicas``.

Anything else in a kustomization raises ``UnsupportedFeature``, so the
renderer never silently renders something different from kustomize. The
tests compare its output with ``kubectl kustomize`` when kubectl is present.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

SUPPORTED_KEYS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "configMapGenerator",
        "patches",
        "namespace",
        "images",
        "replicas",
    }
)

# Kinds that have no namespace (the ones a Seedcast deployment could contain).
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
    }
)

# Strategic merge patch: list fields merged by key (as in the Kubernetes API).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
}

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
SCALABLE_KINDS = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})


class UnsupportedFeature(Exception):
    """The kustomization uses something this renderer does not implement."""


@dataclass
class _Generated:
    """A generated ConfigMap: its name before the hash suffix, and whether it gets one."""

    base_name: str
    hashed: bool


@dataclass
class _Build:
    resources: list[Resource] = field(default_factory=list)
    generated: dict[int, _Generated] = field(default_factory=dict)  # id(resource) -> info


def render(directory: str | Path) -> list[Resource]:
    """Render the kustomization in ``directory``; returns the resources."""
    build = _build(Path(directory))
    _apply_name_suffixes(build)
    return build.resources


def _load_documents(path: Path) -> Iterator[Resource]:
    for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if document is None:
            continue
        if not isinstance(document, dict) or "kind" not in document:
            raise ValueError(f"{path}: not a Kubernetes resource: {document!r}")
        yield document


def _build(directory: Path) -> _Build:
    kustomization_path = directory / "kustomization.yaml"
    kustomization = yaml.safe_load(kustomization_path.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(kustomization) - SUPPORTED_KEYS)
    if unknown:
        raise UnsupportedFeature(f"{kustomization_path}: {', '.join(unknown)}")
    build = _Build()
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            inner = _build(path)
            build.resources.extend(inner.resources)
            build.generated.update(inner.generated)
        else:
            build.resources.extend(_load_documents(path))
    for generator in kustomization.get("configMapGenerator", []):
        _generate_config_map(build, directory, generator)
    for patch in kustomization.get("patches", []):
        _apply_patch(build, directory, patch)
    if "namespace" in kustomization:
        for resource in build.resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        for resource in build.resources:
            for container in _containers(resource):
                container["image"] = _retag(container["image"], image)
    for replica in kustomization.get("replicas", []):
        matches = [
            resource
            for resource in build.resources
            if resource["metadata"]["name"] == replica["name"]
            and resource["kind"] in SCALABLE_KINDS
        ]
        if not matches:
            raise ValueError(f"{kustomization_path}: replicas: no workload {replica['name']!r}")
        for resource in matches:
            resource["spec"]["replicas"] = replica["count"]
    return build


def _generate_config_map(build: _Build, directory: Path, generator: dict[str, Any]) -> None:
    allowed = {"name", "files", "literals", "behavior", "options"}
    if set(generator) - allowed:
        raise UnsupportedFeature(f"configMapGenerator: {sorted(set(generator) - allowed)}")
    options = generator.get("options", {})
    if set(options) - {"disableNameSuffixHash"}:
        raise UnsupportedFeature(f"configMapGenerator options: {sorted(options)}")
    data: dict[str, str] = {}
    for entry in generator.get("files", []):
        key, _, file_name = entry.rpartition("=")
        path = directory / file_name
        data[key or path.name] = path.read_text(encoding="utf-8")
    for literal in generator.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    name = generator["name"]
    behavior = generator.get("behavior", "create")
    existing = [
        resource
        for resource in build.resources
        if id(resource) in build.generated and build.generated[id(resource)].base_name == name
    ]
    if behavior == "create":
        if existing:
            raise ValueError(f"configMapGenerator {name!r} already exists (use behavior)")
        resource: Resource = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": data,
        }
        build.resources.append(resource)
        build.generated[id(resource)] = _Generated(name, not options.get("disableNameSuffixHash"))
        return
    if len(existing) != 1:
        raise ValueError(f"configMapGenerator {name!r}: behavior {behavior} needs one to change")
    (target,) = existing
    if behavior == "replace":
        target["data"] = data
    elif behavior == "merge":
        target.setdefault("data", {}).update(data)
    else:
        raise UnsupportedFeature(f"configMapGenerator behavior {behavior!r}")


def _apply_patch(build: _Build, directory: Path, patch: dict[str, Any]) -> None:
    if set(patch) - {"path", "patch"}:
        raise UnsupportedFeature(f"patches: {sorted(set(patch) - {'path', 'patch'})}")
    if "path" in patch:
        documents = list(_load_documents(directory / patch["path"]))
    else:
        documents = [document for document in yaml.safe_load_all(patch["patch"]) if document]
    for document in documents:
        kind, name = document["kind"], document["metadata"]["name"]
        targets = [
            resource
            for resource in build.resources
            if resource["kind"] == kind and resource["metadata"]["name"] == name
        ]
        if len(targets) != 1:
            raise ValueError(f"patch for {kind}/{name}: found {len(targets)} targets")
        merged = strategic_merge(targets[0], document)
        targets[0].clear()
        targets[0].update(merged)


def strategic_merge(original: Any, patch: Any, field_name: str = "") -> Any:
    """Strategic merge patch of ``patch`` onto ``original`` (a new object)."""
    if isinstance(patch, dict) and isinstance(original, dict):
        if any(key.startswith("$") for key in patch):
            raise UnsupportedFeature(f"patch directive in {field_name}: {sorted(patch)}")
        result = copy.deepcopy(original)
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            elif key in result:
                result[key] = strategic_merge(result[key], value, key)
            else:
                result[key] = copy.deepcopy(value)
        return result
    if isinstance(patch, list) and isinstance(original, list) and field_name in MERGE_KEYS:
        key = MERGE_KEYS[field_name]
        merged = copy.deepcopy(original)
        for item in patch:
            for index, current in enumerate(merged):
                if current.get(key) == item.get(key):
                    merged[index] = strategic_merge(current, item, field_name)
                    break
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def _pod_spec(resource: Resource) -> dict[str, Any] | None:
    if resource["kind"] in WORKLOAD_KINDS:
        return resource["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    if resource["kind"] == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    if resource["kind"] == "Pod":
        return resource["spec"]  # type: ignore[no-any-return]
    return None


def _containers(resource: Resource) -> Iterator[dict[str, Any]]:
    spec = _pod_spec(resource)
    if spec is not None:
        yield from spec.get("initContainers", [])
        yield from spec.get("containers", [])


def _retag(image: str, rule: dict[str, Any]) -> str:
    name, tag, digest = image, "", ""
    if "@" in name:
        name, digest = name.split("@", 1)
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    if name != rule["name"]:
        return image
    name = rule.get("newName", name)
    if "digest" in rule:
        return f"{name}@{rule['digest']}"
    if "newTag" in rule:
        return f"{name}:{rule['newTag']}"
    return f"{name}:{tag}" if tag else (f"{name}@{digest}" if digest else name)


def config_map_hash(data: dict[str, str]) -> str:
    """kustomize's name suffix for a ConfigMap with ``data``.

    kustomize hashes the JSON of {"data", "kind", "name"} with Go's encoder
    (sorted keys, HTML characters escaped) and -- as kustomize v5 does -- an
    empty name; the first 10 hex digits of its SHA-256, with 0 1 3 a e
    mapped to g h k m t so the suffix never spells words.
    """
    encoded = json.dumps(
        {"data": data, "kind": "ConfigMap", "name": ""},
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
    )
    for character, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        encoded = encoded.replace(character, escape)
    for character, escape in (("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        encoded = encoded.replace(character, escape)
    digest = hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _apply_name_suffixes(build: _Build) -> None:
    renamed: dict[str, str] = {}
    for resource in build.resources:
        info = build.generated.get(id(resource))
        if info is None or not info.hashed:
            continue
        new_name = f"{info.base_name}-{config_map_hash(resource.get('data', {}))}"
        resource["metadata"]["name"] = new_name
        renamed[info.base_name] = new_name
    for resource in build.resources:
        spec = _pod_spec(resource)
        if spec is None:
            continue
        for volume in spec.get("volumes", []):
            if "configMap" in volume and volume["configMap"]["name"] in renamed:
                volume["configMap"]["name"] = renamed[volume["configMap"]["name"]]
        for container in _containers(resource):
            for source in container.get("envFrom", []):
                reference = source.get("configMapRef")
                if reference and reference["name"] in renamed:
                    reference["name"] = renamed[reference["name"]]
            for variable in container.get("env", []):
                reference = variable.get("valueFrom", {}).get("configMapKeyRef")
                if reference and reference["name"] in renamed:
                    reference["name"] = renamed[reference["name"]]
