"""The namespace gpuctl's workloads live in, made on first use.

It carries `app.kubernetes.io/managed-by=gpuctl` but not `gpuctl-managed`: the namespace
holds every owner's jobs and the Web UI, so neither `webui down` nor a job's cleanup may
remove it; `gpuctl gke down` removes it with the cluster.
"""

from __future__ import annotations

from ..adapters.kube import Kube, KubeConflict


def ensure_namespace(kube: Kube, namespace: str) -> bool:
    """True when it had to be created."""
    from ..validation import namespace as checked_namespace

    checked_namespace(namespace)  # the API path is built from it: refuse before any request
    if kube.get("v1", "Namespace", namespace) is not None:
        return False
    try:
        kube.create({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": namespace,
                                  "labels": {"app.kubernetes.io/managed-by": "gpuctl"}}})
    except KubeConflict:  # made by someone else in the meantime
        return False
    return True
