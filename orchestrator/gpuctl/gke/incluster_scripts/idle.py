"""The Web UI's idle rule: scale the model server to zero after N minutes without a request.

`decide` is the rule, a pure function (`gpuctl webui status` uses it too). `run_once` reads
the inputs from the cluster (the Lease whose renewTime the waker moves on each request, and the
model server Deployment's scale) and applies the decision. The waker (gke/webui_waker.py) runs
it every minute in the UI pod, with the pod's ServiceAccount.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from dataclasses import dataclass

try:  # inside the gpuctl package
    from .incluster import Api, parse_time
except ImportError:  # run as a script next to incluster.py (the ConfigMap)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from incluster import Api, parse_time

DEFAULT_IDLE_MINUTES = 30.0


@dataclass(frozen=True)
class Decision:
    action: str  # "scale-down", "keep" or "none" (already at zero, or the rule is off)
    replicas: int  # what the Deployment should have
    reason: str
    idle_seconds: float | None = None

    @property
    def scale_down(self) -> bool:
        return self.action == "scale-down"


def decide(last_request_at: dt.datetime | None, now: dt.datetime, idle_minutes: float,
           replicas: int) -> Decision:
    """Scale to zero when `replicas` > 0 and the last request is `idle_minutes` old or older.

    No recorded request at all counts as idle: a UI nobody has touched should not bill.
    A last request in the future (clock skew between nodes) counts as just now.
    """
    if replicas <= 0:
        return Decision("none", 0, "already at zero")
    if idle_minutes <= 0:
        return Decision("none", replicas, "the idle rule is off (idle minutes is 0)")
    if last_request_at is None:
        return Decision("scale-down", 0, "no request was ever recorded")
    idle = max((now - last_request_at).total_seconds(), 0.0)
    limit = idle_minutes * 60
    if idle >= limit:
        return Decision("scale-down", 0,
                        f"idle for {idle / 60:.1f} min (limit {idle_minutes:g} min)", idle)
    return Decision("keep", replicas,
                    f"last request {idle / 60:.1f} min ago; scales down in "
                    f"{(limit - idle) / 60:.1f} min", idle)


def last_activity(lease: dict | None) -> dt.datetime | None:
    """The Lease's renewTime (or, before the first renewal, its acquireTime)."""
    if not lease:
        return None
    spec = lease.get("spec") or {}
    return parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))


def run_once(api: Api, namespace: str, deployment: str, lease: str, idle_minutes: float,
             now: dt.datetime | None = None) -> Decision:
    """Read the scale and the Lease, decide, and scale down if the rule says so.

    The scale-down patch carries the resourceVersion it decided on, so a wake (the waker's or
    `gpuctl webui up`'s) that lands in between wins: the patch fails with 409 (ApiError) and the
    next round decides again.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    scale = api.read_scale(namespace, deployment)
    replicas = int((scale.get("spec") or {}).get("replicas") or 0)
    decision = decide(last_activity(api.read_lease(namespace, lease)), now, idle_minutes, replicas)
    if decision.scale_down:
        version = (scale.get("metadata") or {}).get("resourceVersion")
        patch: dict = {"spec": {"replicas": 0}}
        if version:
            patch["metadata"] = {"resourceVersion": version}
        api.patch_scale(namespace, deployment, patch)
    return decision

