"""Read a kustomize base from k8s/ and apply its transforms in Python.

gpuctl does not shell out to kustomize (one binary fewer to install); it implements exactly
the transforms its bases use (namespace, labels, images, replicas) the way kustomize v5 does,
and refuses a kustomization with any other field rather than silently building something
else. tests/test_gke_manifests.py compares the result with a real `kustomize build`.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from ..errors import GpuctlError

SUPPORTED_FIELDS = {"apiVersion", "kind", "namespace", "labels", "resources", "images", "replicas"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "PriorityClass", "Node"}
# kustomize's "legacy" output order (what `kustomize build` prints by default).
ORDER_FIRST = ["Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition",
               "ServiceAccount", "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding",
               "ClusterRoleBinding", "ConfigMap", "Secret", "Endpoints", "Service", "LimitRange",
               "PriorityClass", "PersistentVolume", "PersistentVolumeClaim", "Deployment",
               "StatefulSet", "CronJob", "PodDisruptionBudget"]
ORDER_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]


class KustomizeError(GpuctlError):
    pass


def k8s_dir() -> Path:
    """The k8s/ tree: $GPUCTL_K8S_DIR, else the package data `gpuctl_k8s` (the repository's
    k8s/ folder, installed with gpuctl, in a checkout and in a wheel alike)."""
    env = os.environ.get("GPUCTL_K8S_DIR")
    if env:
        return Path(env).expanduser()
    from importlib.resources import files

    return Path(str(files("gpuctl_k8s")))


def load_kustomization(base: Path) -> tuple[dict, list[dict]]:
    """The kustomization and its resources, in file order."""
    import yaml

    path = base / "kustomization.yaml"
    try:
        kustomization = yaml.safe_load(path.read_text()) or {}
    except OSError:
        raise KustomizeError(f"no kustomize base at {base}",
                             "set GPUCTL_K8S_DIR to the k8s/ folder of a gpuctl checkout") from None
    unknown = set(kustomization) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{path} uses {', '.join(sorted(unknown))}, which gpuctl does not "
                             "implement", f"gpuctl implements: {', '.join(sorted(SUPPORTED_FIELDS))}")
    resources: list[dict] = []
    for name in kustomization.get("resources") or []:
        file = base / name
        try:
            docs = [d for d in yaml.safe_load_all(file.read_text()) if d]
        except OSError:
            raise KustomizeError(f"{path} lists {name}, which is missing",
                                 "restore it from the repository") from None
        resources.extend(docs)
    return kustomization, resources


def build(base: Path, *, namespace: str | None = None, labels: dict[str, str] | None = None,
          images: dict[str, dict] | None = None, replicas: dict[str, int] | None = None) -> list[dict]:
    """`kustomize build base`, with gpuctl's overrides layered on the kustomization's own:
    `namespace` replaces its namespace, `labels` are added (on templates too), `images` and
    `replicas` override entries by name."""
    kustomization, resources = load_kustomization(base)
    resources = copy.deepcopy(resources)
    ns = namespace or kustomization.get("namespace")
    label_sets = [(dict(entry.get("pairs") or {}), bool(entry.get("includeTemplates")),
                   bool(entry.get("includeSelectors"))) for entry in kustomization.get("labels") or []]
    if labels:
        label_sets.append((dict(labels), True, False))
    image_rules = {entry["name"]: entry for entry in kustomization.get("images") or []}
    for name, rule in (images or {}).items():
        image_rules[name] = {"name": name, **rule}
    replica_rules = {entry["name"]: entry["count"] for entry in kustomization.get("replicas") or []}
    replica_rules.update(replicas or {})

    sa_names = {r["metadata"]["name"] for r in resources if r.get("kind") == "ServiceAccount"}
    for resource in resources:
        if ns and resource.get("kind") not in CLUSTER_SCOPED:
            resource["metadata"]["namespace"] = ns
            if resource.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
                for subject in resource.get("subjects") or []:
                    if subject.get("kind") == "ServiceAccount" and subject.get("name") in sa_names:
                        subject["namespace"] = ns
        for pairs, templates, selectors in label_sets:
            if selectors:
                raise KustomizeError("labels with includeSelectors are not implemented",
                                     "selectors must not change under gpuctl")
            _add_labels(resource["metadata"], pairs)
            if templates:
                for meta in _template_metadata(resource):
                    _add_labels(meta, pairs)
        for pod_spec in _pod_specs(resource):
            for container in (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or []):
                container["image"] = _retag(container["image"], image_rules)
        if resource.get("kind") in ("Deployment", "ReplicaSet", "StatefulSet") \
                and resource["metadata"]["name"] in replica_rules:
            resource.setdefault("spec", {})["replicas"] = int(replica_rules[resource["metadata"]["name"]])
    return sort_legacy(resources)


def sort_legacy(resources: list[dict]) -> list[dict]:
    def key(resource: dict):
        kind = resource.get("kind", "")
        if kind in ORDER_FIRST:
            rank = (0, ORDER_FIRST.index(kind), "")
        elif kind in ORDER_LAST:
            rank = (2, ORDER_LAST.index(kind), "")
        else:
            rank = (1, 0, f"{resource.get('apiVersion', '')}/{kind}")
        meta = resource.get("metadata", {})
        return rank + (meta.get("namespace", ""), meta.get("name", ""))

    return sorted(resources, key=key)


def pod_specs(resource: dict) -> list[dict]:
    return _pod_specs(resource)


def _add_labels(meta: dict, pairs: dict[str, str]) -> None:
    meta.setdefault("labels", {}).update(pairs)


def _template_metadata(resource: dict) -> list[dict]:
    kind, spec = resource.get("kind"), resource.get("spec") or {}
    if kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"):
        return [spec.setdefault("template", {}).setdefault("metadata", {})]
    if kind == "CronJob":
        job = spec.setdefault("jobTemplate", {})
        return [job.setdefault("metadata", {}),
                job.setdefault("spec", {}).setdefault("template", {}).setdefault("metadata", {})]
    return []


def _pod_specs(resource: dict) -> list[dict]:
    kind, spec = resource.get("kind"), resource.get("spec") or {}
    if kind == "Pod":
        return [spec]
    if kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"):
        return [spec.get("template", {}).get("spec", {})]
    if kind == "CronJob":
        return [spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})]
    return []


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """'repo/name:tag@sha256:..' -> ('repo/name', 'tag', 'sha256:..')."""
    name, _, digest = image.partition("@")
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:  # a colon after the last slash is a tag, not a registry port
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest or None


def _retag(image: str, rules: dict[str, dict]) -> str:
    name, tag, digest = split_image(image)
    rule = rules.get(name)
    if rule is None:
        return image
    name = rule.get("newName") or name
    if rule.get("digest"):
        return f"{name}@{rule['digest']}"
    if rule.get("newTag"):
        return f"{name}:{rule['newTag']}"
    if digest:
        return f"{name}@{digest}"
    return f"{name}:{tag}" if tag else name
