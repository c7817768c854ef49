"""Which kubeconfig and context gpuctl talks to.

`gpuctl gke up` writes the cluster's credentials into gpuctl's own kubeconfig (never the
user's ~/.kube/config) under a context named after the cluster. Every GKE command takes
--kubeconfig/--context (or GPUCTL_KUBECONFIG/GPUCTL_KUBE_CONTEXT) to point elsewhere, e.g.
at a test control plane or a cluster gpuctl did not create.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..paths import gpuctl_home

DEFAULT_CLUSTER = "gpuctl"
DEFAULT_NAMESPACE = "gpuctl"


def kubeconfig_path(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("GPUCTL_KUBECONFIG")
    return Path(env).expanduser() if env else gpuctl_home() / "kube" / "config"


def context_name(cluster: str = DEFAULT_CLUSTER) -> str:
    return f"gpuctl-{cluster}"


def selected_context(explicit: str | None = None, cluster: str = DEFAULT_CLUSTER) -> str:
    return explicit or os.environ.get("GPUCTL_KUBE_CONTEXT") or context_name(cluster)
