"""The Web UI on GKE: Open WebUI (CPU pool, always up, its login on) in front of vLLM's
OpenAI-compatible server (GPU pool, scaled 0 <-> 1 by use), rendered from k8s/webui.

`up` applies it with the model server at one replica; the waker in the UI pod scales the model
server back to zero after the idle minutes, and up again on the next request (webui_waker.py).
Library functions only: they take a Kube (adapters/kube.py), return dicts, and never print.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources as importlib_resources

from ..adapters.kube import Kube, KubeError, KubeNotFound
from ..errors import UsageError
from ..jobspec import GKE_ACCELERATORS, SECRET_RE, SECRET_SCHEMES
from .incluster_scripts.incluster import micro_time
from .kubeconfig import DEFAULT_NAMESPACE
from .kustomize import build, k8s_dir
from .manifests import COMPONENT, GPU_RESOURCE, MANAGED, OWNER, gpu_placement
from .serving_fit import Fit, check_fit, gpu_name, smallest_fitting
from .serving_images import VLLM_IMAGE

NAME = "gpuctl-webui"  # the UI Deployment, its Service, ServiceAccount, NetworkPolicy
MODEL = "gpuctl-webui-model"  # the model server's Deployment, Service, ServiceAccount
LEASE = "gpuctl-webui-activity"
TOKEN_SECRET = "gpuctl-webui-token"  # the token proxy's bearer token
AUTH_SECRET = "gpuctl-webui-auth"  # Open WebUI's admin account and WEBUI_SECRET_KEY
HF_SECRET = "gpuctl-webui-hf-token"  # an env:/file: Hugging Face token, copied into the cluster
SCRIPTS = "gpuctl-webui-scripts"
WAKER = "waker"
VLLM = "vllm"
PROXY_PORT = 8080
POD_SELECTOR = f"app.kubernetes.io/name={NAME}"
MODEL_SELECTOR = f"app.kubernetes.io/name={MODEL}"
SELECTOR = f"{MANAGED}=true,{COMPONENT}=webui"
ADMIN_EMAIL = "admin@gpuctl.invalid"  # Open WebUI logs in by e-mail; nothing is ever sent
DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
MAX_MODEL_LEN = 8192  # vLLM --max-model-len: the KV cache the fit check leaves room for
GCS_ROOT = "/gcs"
# Everything `down` removes and then checks is gone, owners first (CronJob/Job: what older
# gpuctl versions made).
CLEANUP_KINDS = (
    ("batch/v1", "CronJob"), ("apps/v1", "Deployment"), ("batch/v1", "Job"),
    ("apps/v1", "ReplicaSet"), ("v1", "Pod"), ("v1", "Service"),
    ("networking.k8s.io/v1", "NetworkPolicy"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"), ("v1", "ServiceAccount"), ("v1", "ConfigMap"),
    ("v1", "Secret"), ("coordination.k8s.io/v1", "Lease"),
)
# The ConfigMap SCRIPTS (k8s/webui/scripts-configmap.yaml): the auth-proxy and waker containers'
# scripts, and the two the waker imports.
SCRIPT_SOURCES = (("incluster_scripts", "incluster"), ("incluster_scripts", "idle"),
                  ("incluster_scripts", "authproxy"), ("", "webui_waker"))
HF_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
ADAPTER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class WebuiSettings:
    owner: str
    namespace: str = DEFAULT_NAMESPACE
    model: str = DEFAULT_MODEL
    adapters: tuple[tuple[str, str], ...] = ()
    accelerator: str = "nvidia-l4"
    spot: bool = True
    idle_minutes: float = 30
    params: float | None = None
    hf_token: str | None = None  # a secret reference: k8s:SECRET/KEY, env:NAME or file:PATH
    image: str | None = None  # the model server's image instead of the pinned vLLM

    def __post_init__(self):
        if self.accelerator not in GKE_ACCELERATORS:
            raise UsageError(f"'{self.accelerator}' is not a GPU gpuctl knows",
                             f"use one of {', '.join(GKE_ACCELERATORS)}")
        if not 0 <= self.idle_minutes <= 24 * 60:
            raise UsageError(f"idle minutes must be 0..1440, not {self.idle_minutes:g}",
                             "0 turns the idle rule off (the GPU then bills until `webui down`)")
        _check_model(self.model)
        names = set()
        for name, location in self.adapters:
            if not ADAPTER_NAME_RE.fullmatch(name):
                raise UsageError(f"adapter name {name!r} is not allowed",
                                 "use 1-63 lowercase letters, digits, '.', '_' or '-'")
            if name in names or name == served_name(self.model):
                raise UsageError(f"adapter name {name} is used twice",
                                 "give each --adapter NAME=gs://... its own name")
            names.add(name)
            _gcs(location, f"adapter {name}")
        if self.hf_token is not None and not any(p.fullmatch(self.hf_token) for p in SECRET_RE.values()):
            # Never repeat the value: what was written may be the token itself.
            raise UsageError("--hf-token is not a secret reference (not shown, in case it is "
                             "the token itself)", "write " + "; ".join(SECRET_SCHEMES.values()))
        if self.image is not None:
            from ..validation import image_ref

            image_ref(self.image)


def _check_model(model: str) -> None:
    if model.startswith("gs://"):
        _gcs(model, "--model")
    elif not HF_ID_RE.fullmatch(model or ""):
        raise UsageError(f"--model {model[:100]!r} is neither a Hugging Face id nor a gs:// path",
                         "write ORG/NAME (e.g. Qwen/Qwen2.5-0.5B-Instruct) or gs://BUCKET/PATH")


def _gcs(location: str, what: str) -> tuple[str, str]:
    from ..validation import gcs_url

    if not isinstance(location, str) or not location.startswith("gs://"):
        raise UsageError(f"{what} must be a gs:// location",
                         "write NAME=gs://BUCKET/PATH: a gpuctl run's output or checkpoint folder")
    bucket, prefix = gcs_url(location, what)
    if not prefix:
        raise UsageError(f"{what} points at a whole bucket", "name the folder: gs://BUCKET/PATH")
    return bucket, prefix


def served_name(model: str) -> str:
    """The name clients ask for: the Hugging Face id, or a gs:// folder's last part."""
    return model.rstrip("/").rsplit("/", 1)[-1] if model.startswith("gs://") else model


def served_names(settings: WebuiSettings) -> list[str]:
    return [served_name(settings.model)] + [name for name, _ in settings.adapters]


def model_fit(settings: WebuiSettings) -> Fit:
    return check_fit(settings.model, settings.accelerator, settings.params)


def require_fit(settings: WebuiSettings) -> Fit:
    """The fit, or UsageError saying why it does not and which GPU would."""
    fit = model_fit(settings)
    if not fit.fits:
        better = smallest_fitting(fit.params, GKE_ACCELERATORS)
        raise UsageError(fit.reason, f"use --gpu {better}" if better else
                         "no single GPU gpuctl knows holds it in fp16; pick a smaller model")
    return fit


def script_sources() -> dict[str, str]:
    """The scripts the UI pod runs, as shipped in the ConfigMap: single standard-library files."""
    out = {}
    for package, name in SCRIPT_SOURCES:
        folder = importlib_resources.files(f"{__package__}.{package}" if package else __package__)
        out[f"{name}.py"] = (folder / f"{name}.py").read_text()
    return out


def render_webui(settings: WebuiSettings, *, replicas: int = 1,
                 now: dt.datetime | None = None) -> list[dict]:
    """The base with gpuctl's settings: what `up` applies (`now` marks the Lease as a use)."""
    objects = build(k8s_dir() / "webui", namespace=settings.namespace,
                    labels={OWNER: settings.owner}, replicas={NAME: replicas, MODEL: replicas})
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind == "ConfigMap" and name == SCRIPTS:
            obj["data"] = script_sources()
        elif kind == "Deployment" and name == NAME:
            waker = _container(obj, WAKER)
            _set_env(waker, "IDLE_MINUTES", f"{settings.idle_minutes:g}")
            _set_env(waker, "SERVED_MODELS", ",".join(served_names(settings)))
        elif kind == "Deployment" and name == MODEL:
            _model_server(obj, settings)
        elif kind == "Lease" and name == LEASE and now is not None:
            obj["spec"]["renewTime"] = micro_time(now)
    return objects


def _container(deployment: dict, name: str) -> dict:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def _model_server(deployment: dict, settings: WebuiSettings) -> None:
    template = deployment["spec"]["template"]
    pod = template["spec"]
    placement = gpu_placement(settings.accelerator, 1, settings.spot)
    pod["nodeSelector"] = placement["nodeSelector"]
    pod["tolerations"] = placement["tolerations"]
    if placement["affinity"]:
        pod["affinity"] = placement["affinity"]
    container = _container(deployment, VLLM)
    container["resources"]["limits"][GPU_RESOURCE] = "1"
    if settings.image:
        container["image"] = settings.image
    buckets: dict[str, str] = {}

    def local(location: str, what: str) -> str:
        bucket, prefix = _gcs(location, what)
        buckets.setdefault(bucket, f"gcs-{len(buckets)}")
        return f"{GCS_ROOT}/{bucket}/{prefix}"

    model = local(settings.model, "--model") if settings.model.startswith("gs://") else settings.model
    args = [model, "--host", "0.0.0.0", "--port", "8000",
            "--served-model-name", served_name(settings.model),
            "--max-model-len", str(MAX_MODEL_LEN)]
    if settings.accelerator == "nvidia-tesla-t4":
        args += ["--dtype", "half"]  # a T4 (compute capability 7.5) has no bfloat16
    if settings.adapters:
        args += ["--enable-lora", "--max-lora-rank", "64", "--lora-modules",
                 *[f"{name}={local(location, f'adapter {name}')}" for name, location in settings.adapters]]
    container["args"] = args
    if settings.hf_token:
        scheme, rest = settings.hf_token.split(":", 1)
        secret, key = rest.split("/", 1) if scheme == "k8s" else (HF_SECRET, "token")
        container["env"].append({"name": "HF_TOKEN",
                                 "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    if buckets:
        # Cloud Storage FUSE CSI driver (GKE add-on GcsFuseCsiDriver): read-only, with the
        # model server's ServiceAccount through Workload Identity.
        template["metadata"].setdefault("annotations", {})["gke-gcsfuse/volumes"] = "true"
        for bucket, volume in buckets.items():
            pod["volumes"].append({"name": volume, "csi": {
                "driver": "gcsfuse.csi.storage.gke.io", "readOnly": True,
                "volumeAttributes": {"bucketName": bucket, "mountOptions": "implicit-dirs"}}})
            container["volumeMounts"].append({"name": volume, "mountPath": f"{GCS_ROOT}/{bucket}",
                                              "readOnly": True})


def _set_env(container: dict, name: str, value: str) -> None:
    for item in container.setdefault("env", []):
        if item["name"] == name:
            item["value"] = value
            return
    container["env"].append({"name": name, "value": value})


def _secret(settings: WebuiSettings, name: str, data: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": settings.namespace,
                     "labels": {MANAGED: "true", COMPONENT: "webui", OWNER: settings.owner}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def token_secret(settings: WebuiSettings, token: str) -> dict:
    return _secret(settings, TOKEN_SECRET, {"token": token})


def auth_secret(settings: WebuiSettings, password: str, secret_key: str) -> dict:
    return _secret(settings, AUTH_SECRET, {"admin-email": ADMIN_EMAIL, "admin-password": password,
                                           "secret-key": secret_key})


def generated_secrets() -> list[str]:
    """What `up` makes the first time (names only: the values are never shown in a plan)."""
    return [f"Secret {TOKEN_SECRET} (the token `webui open` adds)",
            f"Secret {AUTH_SECRET} (Open WebUI's admin password and WEBUI_SECRET_KEY; "
            "the password is printed once, when made)"]


def _local_hf_token(ref: str) -> str:
    import os
    from pathlib import Path

    from ..safe_read import read_text

    scheme, rest = ref.split(":", 1)
    if scheme == "env":
        value = os.environ.get(rest)
        if not value:
            raise UsageError(f"--hf-token refers to env:{rest}, which is not set here",
                             f"export {rest}=... or use k8s:SECRET/KEY")
        return value
    return read_text(Path(rest).expanduser(), "secret", UsageError).strip()


# --- live operations ------------------------------------------------------------------------

def webui_up(kube: Kube, settings: WebuiSettings, *, now: dt.datetime | None = None,
             token_factory: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> dict:
    """Check the fit, make the Secrets the first time, apply the stack with the model server
    at one replica. `admin_password` is in the result only when it was just made."""
    from .namespaces import ensure_namespace

    require_fit(settings)
    hf_value = None
    if settings.hf_token and not settings.hf_token.startswith("k8s:"):
        hf_value = _local_hf_token(settings.hf_token)  # before anything is created
    now = now or dt.datetime.now(dt.timezone.utc)
    ensure_namespace(kube, settings.namespace)
    result: dict = {"namespace": settings.namespace, "token_created": False}
    if kube.get("v1", "Secret", TOKEN_SECRET, settings.namespace) is None:
        kube.create(token_secret(settings, token_factory()))
        result["token_created"] = True
    if kube.get("v1", "Secret", AUTH_SECRET, settings.namespace) is None:
        password = token_factory()
        kube.create(auth_secret(settings, password, token_factory()))
        result["admin_password"] = password
    if hf_value is not None:
        kube.apply(_secret(settings, HF_SECRET, {"token": hf_value}))
    applied = []
    for obj in render_webui(settings, replicas=1, now=now):
        kube.apply(obj)
        applied.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return {**result, "applied": applied, "replicas": 1, "accelerator": settings.accelerator,
            "spot": settings.spot, "idle_minutes": settings.idle_minutes,
            "models": served_names(settings), "admin_email": ADMIN_EMAIL}


def webui_objects(kube: Kube, namespace: str) -> list[dict]:
    """Every object in the namespace that carries the Web UI's gpuctl labels."""
    found = []
    for api_version, kind in CLEANUP_KINDS:
        found += kube.list(api_version, kind, namespace, label_selector=SELECTOR)
    return found


def webui_down(kube: Kube, namespace: str, *, dry_run: bool = False, wait_seconds: float = 90,
               sleep: Callable[[float], None] = time.sleep) -> dict:
    """Delete every Web UI object (its pods too) and check that nothing labelled is left."""
    present = webui_objects(kube, namespace)
    names = [f"{o['kind']}/{o['metadata']['name']}" for o in present]
    if dry_run:
        return {"namespace": namespace, "would_delete": names, "deleted": [], "left": []}
    for obj in present:  # False: its owner's deletion took it first, which is as good
        kube.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], namespace,
                    propagation="Background")
    deadline = time.monotonic() + wait_seconds
    left = webui_objects(kube, namespace)
    while left and time.monotonic() < deadline:
        sleep(1.0)
        left = webui_objects(kube, namespace)
    return {"namespace": namespace, "deleted": names,
            "left": [f"{o['kind']}/{o['metadata']['name']}" for o in left]}


def webui_status(kube: Kube, namespace: str, now: dt.datetime | None = None) -> dict:
    """The UI's and the model server's state, the last use and when the idle rule scales the
    model server down. Costs are added by the caller (they need the price book)."""
    from .incluster_scripts import idle

    now = now or dt.datetime.now(dt.timezone.utc)
    ui = kube.get("apps/v1", "Deployment", NAME, namespace)
    model = kube.get("apps/v1", "Deployment", MODEL, namespace)
    if ui is None or model is None:
        return {"namespace": namespace, "installed": False, "state": "not installed",
                "replicas": 0, "ready": 0, "pods": [], "ui_ready": False}
    spec = model.get("spec") or {}
    pod_spec = spec.get("template", {}).get("spec", {})
    selector = pod_spec.get("nodeSelector") or {}
    desired = int(spec.get("replicas") or 0)
    ready = int((model.get("status") or {}).get("readyReplicas") or 0)
    pods = [_pod_row(p) for p in kube.list("v1", "Pod", namespace, label_selector=MODEL_SELECTOR)]
    waker = _container(ui, WAKER)
    idle_minutes = _env_float(waker, "IDLE_MINUTES")
    last = idle.last_activity(kube.get("coordination.k8s.io/v1", "Lease", LEASE, namespace))
    decision = idle.decide(last, now, idle_minutes or 0, desired)
    if desired == 0:
        state = "stopping the model server" if pods else "idle (model server scaled to zero)"
    elif ready:
        state = "up"
    elif any(p["waiting_for_node"] for p in pods):
        state = "starting: waiting for a GPU node"
    else:
        state = "starting: loading the model"
    scale_down_at = None
    if decision.action == "keep" and idle_minutes:
        scale_down_at = last + dt.timedelta(minutes=idle_minutes)
    vllm = _container(model, VLLM)
    return {
        "namespace": namespace, "installed": True, "state": state, "replicas": desired,
        "ready": ready, "pods": pods,
        "ui_ready": int((ui.get("status") or {}).get("readyReplicas") or 0) > 0,
        "accelerator": selector.get("cloud.google.com/gke-accelerator"),
        "spot": selector.get("cloud.google.com/gke-spot") == "true",
        "image": vllm.get("image"), "model": (vllm.get("args") or [None])[0],
        "models": [m for m in next((e.get("value") or "" for e in waker.get("env") or []
                                    if e["name"] == "SERVED_MODELS"), "").split(",") if m],
        "idle_rule": bool(idle_minutes), "idle_minutes": idle_minutes,
        "last_request_at": last.isoformat() if last else None,
        "idle_decision": decision.reason,
        "scale_down_at": scale_down_at.isoformat() if scale_down_at else None,
    }


def _env_float(container: dict, name: str) -> float | None:
    for item in container.get("env") or []:
        if item.get("name") == name:
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


def ready_pod(kube: Kube, namespace: str, selector: str = POD_SELECTOR) -> str | None:
    for pod in kube.list("v1", "Pod", namespace, label_selector=selector):
        row = _pod_row(pod)
        if row["ready"] and row["phase"] == "Running" and not row["deleting"]:
            return row["name"]
    return None


def wait_ready(kube: Kube, namespace: str, *, timeout: float = 300,
               on_wait: Callable[[dict], None] | None = None,
               sleep: Callable[[float], None] = time.sleep) -> str:
    """The name of a Ready UI pod (CPU pool: no GPU node to wait for), waiting up to `timeout`
    seconds. The model server comes up on its own; the chat page says when it is starting."""
    deadline = time.monotonic() + timeout
    while True:
        pod = ready_pod(kube, namespace)
        if pod:
            return pod
        ui = kube.get("apps/v1", "Deployment", NAME, namespace)
        if ui is None or not int((ui.get("spec") or {}).get("replicas") or 0):
            raise KubeError("the Web UI is not installed", "run `gpuctl webui up` first")
        if time.monotonic() > deadline:
            raise KubeError(f"the Web UI page was not ready after {timeout:.0f}s",
                            "see `gpuctl webui status` and the pod's events (kubectl describe)")
        if on_wait:
            on_wait(webui_status(kube, namespace))
        sleep(2.0)


def read_token(kube: Kube, namespace: str) -> str:
    secret = kube.get("v1", "Secret", TOKEN_SECRET, namespace)
    data = (secret or {}).get("data") or {}
    if "token" not in data:
        raise KubeNotFound(f"the Web UI token Secret {TOKEN_SECRET} is missing in {namespace}",
                           "run `gpuctl webui up` (it makes one)")
    return base64.b64decode(data["token"]).decode()


def open_local(kube: Kube, namespace: str, *, port: int = 0, timeout: float = 300,
               on_wait: Callable[[dict], None] | None = None,
               on_error: Callable[[str], None] | None = None):
    """A started LocalForward on 127.0.0.1:`port` to the UI pod's token proxy, adding the
    token from the Secret to every connection; (forward, pod). The caller stops it."""
    from .forward import LocalForward

    token = read_token(kube, namespace)
    pod = ready_pod(kube, namespace) or wait_ready(kube, namespace, timeout=timeout,
                                                   on_wait=on_wait)
    forward = LocalForward(lambda: kube.port_forward(namespace, pod, PROXY_PORT), token, port,
                           on_error=on_error)
    return forward.start(), pod


def describe_gpu(settings: WebuiSettings) -> str:
    return f"1x {gpu_name(settings.accelerator)} ({'spot' if settings.spot else 'on-demand'})"


def model_image(settings: WebuiSettings) -> str:
    return settings.image or VLLM_IMAGE
