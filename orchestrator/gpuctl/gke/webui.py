"""The Web UI on GKE: rendered from the kustomize base k8s/webui, scaled 0 -> 1 by `up`,
back to 0 by the in-cluster idle rule (idle.py), removed by `down`.

Library functions only: they take a Kube (adapters/kube.py), return dicts, and never print.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources as importlib_resources

from ..adapters.kube import Kube, KubeError, KubeNotFound
from ..jobspec import GKE_ACCELERATORS
from ..errors import UsageError
from .images import HELPER, helper_image, webui_image
from .incluster_scripts import idle
from .incluster_scripts.incluster import micro_time
from .kubeconfig import DEFAULT_NAMESPACE
from .kustomize import build, k8s_dir, split_image
from .manifests import COMPONENT, GPU_RESOURCE, MANAGED, OWNER, gpu_placement

NAME = "gpuctl-webui"  # Deployment, Service, ServiceAccount, NetworkPolicy
LEASE = "gpuctl-webui-activity"
TOKEN_SECRET = "gpuctl-webui-token"
SCRIPTS = "gpuctl-webui-scripts"
IDLER = "gpuctl-webui-idler"
UI_CONTAINER = "ui"
PROXY_PORT = 8080
POD_SELECTOR = "app.kubernetes.io/name=gpuctl-webui"
SELECTOR = f"{MANAGED}=true,{COMPONENT}=webui"
SCRIPT_MODULES = ("incluster", "authproxy", "idle")
# Everything `down` removes and then checks is gone (what the base makes, what its
# controllers make from it, and the token Secret), in an order where owners go first.
CLEANUP_KINDS = (
    ("batch/v1", "CronJob"), ("apps/v1", "Deployment"), ("batch/v1", "Job"),
    ("apps/v1", "ReplicaSet"), ("v1", "Pod"), ("v1", "Service"),
    ("networking.k8s.io/v1", "NetworkPolicy"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"), ("v1", "ServiceAccount"), ("v1", "ConfigMap"),
    ("v1", "Secret"), ("coordination.k8s.io/v1", "Lease"),
)


@dataclass(frozen=True)
class WebuiSettings:
    owner: str
    namespace: str = DEFAULT_NAMESPACE
    accelerator: str = "nvidia-l4"
    spot: bool = True
    idle_minutes: float = 30
    image: str | None = None

    def __post_init__(self):
        if self.accelerator not in GKE_ACCELERATORS:
            raise UsageError(f"'{self.accelerator}' is not a GPU gpuctl knows",
                             f"use one of {', '.join(GKE_ACCELERATORS)}")
        if not 0 <= self.idle_minutes <= 24 * 60:
            raise UsageError(f"idle minutes must be 0..1440, not {self.idle_minutes:g}",
                             "0 turns the idle rule off (the UI then bills until `webui down`)")


def script_sources() -> dict[str, str]:
    """The scripts the proxy and the idle rule run (gke/incluster_scripts/), as shipped in the
    ConfigMap: single files, so the helper image needs no gpuctl, only `kubernetes`."""
    package = importlib_resources.files(f"{__package__}.incluster_scripts")
    return {f"{name}.py": (package / f"{name}.py").read_text() for name in SCRIPT_MODULES}


def render_webui(settings: WebuiSettings, *, replicas: int = 1,
                 now: dt.datetime | None = None) -> list[dict]:
    """The base with gpuctl's settings: what `up` applies (`now` marks the Lease as a use)."""
    objects = build(k8s_dir() / "webui", namespace=settings.namespace,
                    labels={OWNER: settings.owner},
                    images={"gpuctl-webui": _image_rule(webui_image(settings.image)),
                            HELPER: _image_rule(helper_image())},
                    replicas={NAME: replicas})
    sources = script_sources()
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind == "ConfigMap" and name == SCRIPTS:
            obj["data"] = dict(sources)
        elif kind == "Deployment" and name == NAME:
            _place(obj, settings)
        elif kind == "CronJob" and name == IDLER:
            container = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
            _set_env(container, "IDLE_MINUTES", f"{settings.idle_minutes:g}")
        elif kind == "Lease" and name == LEASE and now is not None:
            obj["spec"]["renewTime"] = micro_time(now)
    return objects


def _image_rule(ref: str) -> dict:
    """kustomize's `images` entry that puts `ref` where the base names its placeholder."""
    name, tag, digest = split_image(ref)
    return {"newName": name, **({"digest": digest} if digest else {"newTag": tag or "latest"})}


def token_secret(settings: WebuiSettings, token: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": TOKEN_SECRET, "namespace": settings.namespace,
                     "labels": {MANAGED: "true", COMPONENT: "webui", OWNER: settings.owner}},
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }


def _place(deployment: dict, settings: WebuiSettings) -> None:
    pod = deployment["spec"]["template"]["spec"]
    placement = gpu_placement(settings.accelerator, 1, settings.spot)
    pod["nodeSelector"] = placement["nodeSelector"]
    pod["tolerations"] = placement["tolerations"]
    if placement["affinity"]:
        pod["affinity"] = placement["affinity"]
    else:
        pod.pop("affinity", None)
    for container in pod["containers"]:
        if container["name"] == UI_CONTAINER:
            container.setdefault("resources", {}).setdefault("limits", {})[GPU_RESOURCE] = "1"


def _set_env(container: dict, name: str, value: str) -> None:
    for item in container.setdefault("env", []):
        if item["name"] == name:
            item["value"] = value
            return
    container["env"].append({"name": name, "value": value})


# --- live operations ------------------------------------------------------------------------

def webui_up(kube: Kube, settings: WebuiSettings, *, now: dt.datetime | None = None,
             token_factory: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> dict:
    """Apply the Web UI at one replica; make its token Secret the first time."""
    from .namespaces import ensure_namespace

    now = now or dt.datetime.now(dt.timezone.utc)
    ensure_namespace(kube, settings.namespace)
    created_token = False
    if kube.get("v1", "Secret", TOKEN_SECRET, settings.namespace) is None:
        kube.create(token_secret(settings, token_factory()))
        created_token = True
    applied = []
    for obj in render_webui(settings, replicas=1, now=now):
        kube.apply(obj)
        applied.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return {"namespace": settings.namespace, "applied": applied, "token_created": created_token,
            "replicas": 1, "accelerator": settings.accelerator, "spot": settings.spot,
            "idle_minutes": settings.idle_minutes}


def webui_objects(kube: Kube, namespace: str) -> list[dict]:
    """Every object in the namespace that carries the Web UI's gpuctl labels."""
    found = []
    for api_version, kind in CLEANUP_KINDS:
        found += kube.list(api_version, kind, namespace, label_selector=SELECTOR)
    return found


def webui_down(kube: Kube, namespace: str, *, dry_run: bool = False, wait_seconds: float = 90,
               sleep: Callable[[float], None] = time.sleep) -> dict:
    """Delete every Web UI object (its pods and the idle rule's Jobs too) and check that
    nothing labelled is left. `dry_run` only lists what would go."""
    present = webui_objects(kube, namespace)
    names = [f"{o['kind']}/{o['metadata']['name']}" for o in present]
    if dry_run:
        return {"namespace": namespace, "would_delete": names, "deleted": [], "left": []}
    for obj in present:  # False: its owner's deletion took it first, which is as good
        kube.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], namespace,
                    propagation="Background")
    deleted = names
    deadline = time.monotonic() + wait_seconds
    left = webui_objects(kube, namespace)
    while left and time.monotonic() < deadline:
        sleep(1.0)
        left = webui_objects(kube, namespace)
    return {"namespace": namespace, "deleted": deleted,
            "left": [f"{o['kind']}/{o['metadata']['name']}" for o in left]}


def webui_status(kube: Kube, namespace: str, now: dt.datetime | None = None) -> dict:
    """State, replicas, the pod and its node, the last request and when the idle rule will
    scale it down. Costs are added by the caller (they need the price book)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    deployment = kube.get("apps/v1", "Deployment", NAME, namespace)
    if deployment is None:
        return {"namespace": namespace, "installed": False, "state": "not installed",
                "replicas": 0, "ready": 0, "pods": []}
    spec = deployment.get("spec") or {}
    pod_spec = spec.get("template", {}).get("spec", {})
    selector = pod_spec.get("nodeSelector") or {}
    desired = int(spec.get("replicas") or 0)
    ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
    pods = [_pod_row(p) for p in kube.list("v1", "Pod", namespace, label_selector=POD_SELECTOR)]
    cron = kube.get("batch/v1", "CronJob", IDLER, namespace)
    idle_minutes = _idle_minutes(cron)
    last = idle.last_activity(kube.get("coordination.k8s.io/v1", "Lease", LEASE, namespace))
    decision = idle.decide(last, now, idle_minutes if idle_minutes is not None else 0, desired)
    if desired == 0:
        state = "scaling down" if pods else "down (scaled to zero)"
    elif ready:
        state = "up"
    elif any(p["waiting_for_node"] for p in pods):
        state = "waiting for a GPU node"
    else:
        state = "starting"
    scale_down_at = None
    if decision.action == "keep" and decision.idle_seconds is not None and idle_minutes:
        scale_down_at = last + dt.timedelta(minutes=idle_minutes)
    return {
        "namespace": namespace, "installed": True, "state": state, "replicas": desired,
        "ready": ready, "pods": pods,
        "accelerator": selector.get("cloud.google.com/gke-accelerator"),
        "spot": selector.get("cloud.google.com/gke-spot") == "true",
        "image": next((c.get("image") for c in pod_spec.get("containers", [])
                       if c.get("name") == UI_CONTAINER), None),
        "idle_rule": cron is not None and not (cron.get("spec") or {}).get("suspend", False),
        "idle_minutes": idle_minutes,
        "last_request_at": last.isoformat() if last else None,
        "idle_decision": decision.reason,
        "scale_down_at": scale_down_at.isoformat() if scale_down_at else None,
    }


def _idle_minutes(cron: dict | None) -> float | None:
    if not cron:
        return None
    containers = (cron.get("spec", {}).get("jobTemplate", {}).get("spec", {})
                  .get("template", {}).get("spec", {}).get("containers") or [])
    for container in containers:
        for item in container.get("env") or []:
            if item.get("name") == "IDLE_MINUTES":
                try:
                    return float(item.get("value"))
                except (TypeError, ValueError):
                    return None
    return None


def _pod_row(pod: dict) -> dict:
    status = pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    scheduled = conditions.get("PodScheduled", {})
    waiting = scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable"
    return {
        "name": pod["metadata"]["name"],
        "phase": status.get("phase", "Unknown"),
        "ready": conditions.get("Ready", {}).get("status") == "True",
        "node": (pod.get("spec") or {}).get("nodeName"),
        "deleting": bool(pod["metadata"].get("deletionTimestamp")),
        "waiting_for_node": waiting,
        "message": scheduled.get("message") if waiting else None,
    }


def ready_pod(kube: Kube, namespace: str) -> str | None:
    for pod in kube.list("v1", "Pod", namespace, label_selector=POD_SELECTOR):
        row = _pod_row(pod)
        if row["ready"] and row["phase"] == "Running" and not row["deleting"]:
            return row["name"]
    return None


def wait_ready(kube: Kube, namespace: str, *, timeout: float = 900,
               on_wait: Callable[[dict], None] | None = None,
               sleep: Callable[[float], None] = time.sleep) -> str:
    """The name of a Ready Web UI pod, waiting up to `timeout` seconds (a GPU node from zero
    takes 4-10 minutes). `on_wait` gets the status between polls."""
    deadline = time.monotonic() + timeout
    while True:
        pod = ready_pod(kube, namespace)
        if pod:
            return pod
        status = webui_status(kube, namespace)
        if status["replicas"] == 0:
            raise KubeError("the Web UI is scaled to zero", "run `gpuctl webui up` first")
        if time.monotonic() > deadline:
            raise KubeError(f"the Web UI was not ready after {timeout:.0f}s ({status['state']})",
                            "see `gpuctl webui status`; a GPU node from zero takes 4-10 minutes")
        if on_wait:
            on_wait(status)
        sleep(2.0)


def read_token(kube: Kube, namespace: str) -> str:
    secret = kube.get("v1", "Secret", TOKEN_SECRET, namespace)
    data = (secret or {}).get("data") or {}
    if "token" not in data:
        raise KubeNotFound(f"the Web UI token Secret {TOKEN_SECRET} is missing in {namespace}",
                           "run `gpuctl webui up` (it makes one)")
    return base64.b64decode(data["token"]).decode()


def open_local(kube: Kube, namespace: str, *, port: int = 0, timeout: float = 900,
               on_wait: Callable[[dict], None] | None = None,
               on_error: Callable[[str], None] | None = None):
    """A started LocalForward on 127.0.0.1:`port` to a Ready Web UI pod's proxy, adding the
    token from the Secret to every connection; (forward, pod). The caller stops it."""
    from .forward import LocalForward

    token = read_token(kube, namespace)
    pod = ready_pod(kube, namespace) or wait_ready(kube, namespace, timeout=timeout,
                                                   on_wait=on_wait)
    forward = LocalForward(lambda: kube.port_forward(namespace, pod, PROXY_PORT), token, port,
                           on_error=on_error)
    return forward.start(), pod
