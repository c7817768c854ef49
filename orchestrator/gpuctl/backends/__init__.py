"""One job model, two backends: where a job spec runs (a VM or host over SSH, or a Job on GKE)
is a Backend behind one interface (base.py). The CLI picks one with `backend_for` and renders
what it returns; it never conducts a flow itself."""

from __future__ import annotations

from .base import Backend, Cancelled, Fetched, JobView, LogEnd, Preview, SubmitRequest, Submitted

__all__ = ["Backend", "Cancelled", "Fetched", "JobView", "LogEnd", "Preview", "SubmitRequest",
           "Submitted", "backend_for"]


def backend_for(gke: bool, *, kubeconfig: str | None = None, context: str | None = None,
                namespace: str | None = None) -> Backend:
    """`--gke` picks the cluster (reached lazily: an offline dry run contacts nothing); anything
    else is a VM or `user@host`, named per call."""
    if gke:
        from .gke import GkeBackend

        return GkeBackend(kubeconfig=kubeconfig, context=context, namespace=namespace)
    from .vm import VmBackend

    return VmBackend()
