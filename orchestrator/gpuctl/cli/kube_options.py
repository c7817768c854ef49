"""Options every GKE workload command shares: which kubeconfig, context and namespace."""

from __future__ import annotations

import click


def kube_options(func):
    """--kubeconfig, --context, --namespace (defaults: gpuctl's own, see gke/kubeconfig.py)."""
    func = click.option("-n", "--namespace", default=None, envvar="GPUCTL_NAMESPACE",
                        help="Namespace (default: gpuctl).")(func)
    func = click.option("--context", default=None,
                        help="kube context (default: gpuctl-gpuctl, or GPUCTL_KUBE_CONTEXT).")(func)
    func = click.option("--kubeconfig", default=None,
                        help="kubeconfig file (default: gpuctl's own, or GPUCTL_KUBECONFIG).")(func)
    return func


def resolve_namespace(namespace: str | None) -> str:
    from ..gke.kubeconfig import DEFAULT_NAMESPACE
    from ..validation import namespace as checked_namespace

    # `BAD NS` or `../../x` would otherwise be rendered into manifests and API paths.
    return checked_namespace(DEFAULT_NAMESPACE if namespace is None else namespace)


def connect(kubeconfig: str | None, context: str | None):
    from ..adapters.kube import connect as kube_connect

    return kube_connect(kubeconfig, context)
