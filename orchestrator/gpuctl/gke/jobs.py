"""Training Jobs on GKE: submit, list, stream logs, cancel.

Library functions behind backends/gke.py (`gpuctl run --gke`, `jobs --gke`, `logs --gke`,
`cancel --gke`). They take a Kube (adapters/kube.py `connect`), return dicts or exit codes,
and never print: `stream_logs` hands text to the `write` callable it is given.
"""

from __future__ import annotations

import codecs
import datetime as dt
import time
from collections.abc import Callable

from ..adapters.kube import Kube, KubeConflict, KubeError, KubeNotFound
from ..checkpoints import URL_ENV
from .incluster_scripts.incluster import parse_time
from .manifests import (ACCELERATOR_LABEL, COMPLETION_INDEX, COMPONENT, GCS_FUSE_DRIVER, GPU_RESOURCE,
                        JOB, JOB_NAME_LABEL, MANAGED, OWNER, SPOT_LABEL, TRAINER)

TRAIN_SELECTOR = f"{MANAGED}=true,{COMPONENT}=train"
LIST_HINT = "list them with `gpuctl jobs --gke`"


BucketAccess = Callable[[str, str, str], dict]  # (bucket, namespace, account) -> the grant made


def submit(kube: Kube, manifests: list[dict], *, dry_run: bool = False,
           bucket_access: BucketAccess | None = None) -> dict:
    """Create the Job, then its headless Service (if any) owned by the Job, so that the TTL
    after finishing and a cancel remove both. `dry_run`: the apiserver validates (Strict)
    and admits everything, and stores nothing.

    A Job that mounts a checkpoint bucket: `bucket_access` (bucket_access.ensure_grant, bound to
    the project) makes the bucket grant the pods' account first, before anything is created, so
    a refused grant leaves nothing behind. Not on a dry run: that changes nothing."""
    from .namespaces import ensure_namespace

    job = next(m for m in manifests if m["kind"] == "Job")
    namespace = job["metadata"]["namespace"]
    name = job["metadata"]["name"]
    grant = None
    mounted = checkpoint_mount(job)
    if not dry_run and mounted and bucket_access is not None:
        grant = bucket_access(mounted[0], namespace, mounted[1])
    if not dry_run:
        ensure_namespace(kube, namespace)
        account = job["spec"]["template"]["spec"].get("serviceAccountName")
        if account:
            ensure_service_account(kube, namespace, account)
    elif kube.get("v1", "Namespace", namespace) is None:
        raise KubeNotFound(f"namespace {namespace} does not exist, so a dry run cannot admit "
                           "objects into it", "submit once for real (it creates it), or pass "
                           "--namespace")
    try:
        created = kube.create(job, dry_run=dry_run)
    except KubeConflict:
        raise KubeConflict(f"a job named {name} already exists in namespace {namespace}",
                           f"cancel it first (`gpuctl cancel --gke {name}`), or change `name:` "
                           "in the spec") from None
    uid = created.get("metadata", {}).get("uid")
    service_name = None
    for obj in manifests:
        if obj["kind"] == "Job":
            continue
        obj = dict(obj, metadata=dict(obj["metadata"]))
        if uid:
            obj["metadata"]["ownerReferences"] = [{
                "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                "blockOwnerDeletion": False, "controller": False}]
        kube.create(obj, dry_run=dry_run)
        if obj["kind"] == "Service":
            service_name = obj["metadata"]["name"]
    return {"namespace": namespace, "job": name, "uid": uid, "service": service_name,
            "dry_run": dry_run, "objects": [_key(m) for m in manifests], "bucket_grant": grant}


def checkpoint_mount(job: dict) -> tuple[str, str] | None:
    """(bucket, Kubernetes service account) of a Job whose pods mount a checkpoint bucket
    (manifests.mount_checkpoints), else None."""
    pod = job["spec"]["template"]["spec"]
    for volume in pod.get("volumes") or []:
        csi = volume.get("csi") or {}
        if volume.get("name") == "checkpoints" and csi.get("driver") == GCS_FUSE_DRIVER:
            return csi["volumeAttributes"]["bucketName"], pod.get("serviceAccountName") or "default"
    return None


def ensure_service_account(kube: Kube, namespace: str, name: str) -> None:
    """The pods' own Kubernetes service account (checkpoints: its Workload Identity principal
    is what the bucket grants). Shared by the namespace's jobs, so not owned by any one Job;
    no API token is mounted from it (the trainer never talks to the apiserver)."""
    if kube.get("v1", "ServiceAccount", name, namespace) is not None:
        return
    try:
        kube.create({"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": name, "namespace": namespace,
                                  "labels": {MANAGED: "true", COMPONENT: "train"}},
                     "automountServiceAccountToken": False})
    except KubeConflict:  # made by a job submitted at the same moment
        pass


# --- listing ---------------------------------------------------------------------------------

def list_jobs(kube: Kube, namespace: str, *, now: dt.datetime | None = None) -> list[dict]:
    """One row per gpuctl training Job in `namespace`, newest first: status, pods, nodes,
    age, accelerator."""
    now = now or dt.datetime.now(dt.timezone.utc)
    jobs = kube.list("batch/v1", "Job", namespace, label_selector=TRAIN_SELECTOR)
    pods = kube.list("v1", "Pod", namespace, label_selector=TRAIN_SELECTOR)
    by_job: dict[str, list[dict]] = {}
    for pod in pods:
        owner = (pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL)
        by_job.setdefault(owner, []).append(pod)
    rows = [job_row(job, by_job.get(job["metadata"]["name"], []), now) for job in jobs]
    return sorted(rows, key=lambda r: r["created"] or "", reverse=True)


def job_row(job: dict, pods: list[dict], now: dt.datetime) -> dict:
    meta, spec, status = job["metadata"], job.get("spec") or {}, job.get("status") or {}
    pod_spec = spec.get("template", {}).get("spec", {})
    selector = pod_spec.get("nodeSelector") or {}
    limits = {}
    for container in pod_spec.get("containers") or []:
        if container.get("name") == TRAINER:
            limits = (container.get("resources") or {}).get("limits") or {}
    created = parse_time(meta.get("creationTimestamp"))
    state, reason, message = job_state(job, pods)
    checkpoints = None  # the bucket folder every pod mounts (manifests.mount_checkpoints)
    for container in pod_spec.get("containers") or []:
        if container.get("name") == TRAINER:
            checkpoints = next((e.get("value") for e in container.get("env") or []
                                if e.get("name") == URL_ENV), None)
    live = [p for p in pods if (p.get("status") or {}).get("phase") in ("Pending", "Running")]
    nodes = sorted({p["spec"]["nodeName"] for p in (live or pods)
                    if (p.get("spec") or {}).get("nodeName")})
    return {
        "name": meta["name"],
        "namespace": meta.get("namespace"),
        "owner": (meta.get("labels") or {}).get(OWNER),
        "status": state,
        "reason": reason,
        "message": message,
        "pods": {"active": int(status.get("active") or 0),
                 "ready": int(status.get("ready") or 0),
                 "succeeded": int(status.get("succeeded") or 0),
                 "failed": int(status.get("failed") or 0),
                 "completions": int(spec.get("completions") or 1)},
        "restarts": restarts_after_disruption(status, state, reason),
        "checkpoints": checkpoints,
        # Per restart, oldest first (add_steps_lost): None until read, or when not known.
        "steps_lost": None,
        "steps_note": None,
        "nodes": nodes,
        "accelerator": selector.get(ACCELERATOR_LABEL),
        "gpus_per_node": int(limits.get(GPU_RESOURCE, 0) or 0),
        "spot": selector.get(SPOT_LABEL) == "true",
        "created": created.isoformat() if created else None,
        "age_seconds": (now - created).total_seconds() if created else None,
    }


def restarts_after_disruption(status: dict, state: str, reason: str | None) -> int:
    """How many times a pod was replaced because its node went away (spot preemption, node
    removal). The Job counts every failed pod; under gpuctl's pod failure policy a trainer's
    own non-zero exit fails the Job at once (reason PodFailurePolicy), so every other failed
    pod was a disruption that the Job retried. Counted from the Job, not from pods: the pods
    of a reclaimed node may already be garbage-collected."""
    failed = int(status.get("failed") or 0)
    if state == "Failed" and reason == "PodFailurePolicy":
        failed -= 1  # the attempt whose exit code failed the Job
    return max(failed, 0)


def add_steps_lost(rows: list[dict], storage) -> None:
    """The steps each restart lost, from what rank 0's pods left in the job's bucket folder
    (gke/log_keeper.py: where each resumed, and its log), read as for a VM run --recover
    (recovery/view.py): for each pod after the first, the last step the one before it logged
    minus the step it resumed from. Only jobs with `checkpoints:` that restarted are read.
    A restart whose pod left no record (its node went before it started) has no entry: the note
    says how many."""
    from ..recovery.view import run_steps

    for row in rows:
        if not row["checkpoints"] or not row["restarts"]:
            continue
        steps = run_steps(storage, row["checkpoints"], None)
        lost = [life["steps_redone"] for life in steps.get("lives", [])[1:]]
        row["steps_lost"] = lost
        notes = [] if steps.get("lives") else [steps["steps_note"]]  # nothing read, and why
        if len(lost) < row["restarts"]:
            notes.append(f"{row['restarts'] - len(lost)} restart(s) left no record in {row['checkpoints']}")
        row["steps_note"] = "; ".join(notes) or None


def job_state(job: dict, pods: list[dict]) -> tuple[str, str | None, str | None]:
    """(status, reason, message): Succeeded, Failed, Pending, Running, Starting, Suspended."""
    status = job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []
                  if c.get("status") == "True"}
    for kind, word in (("Complete", "Succeeded"), ("Failed", "Failed"),
                       ("SuccessCriteriaMet", "Succeeding"), ("FailureTarget", "Failing")):
        if kind in conditions:
            return word, conditions[kind].get("reason"), conditions[kind].get("message")
    if (job.get("spec") or {}).get("suspend"):
        return "Suspended", None, None
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    for pod in live:
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return "Pending", cond.get("reason"), cond.get("message")
    phases = {(p.get("status") or {}).get("phase") for p in live}
    if "Running" in phases:
        return "Running", None, None
    if status.get("active"):
        return "Starting", None, None
    return "Pending", None, None


# --- logs ------------------------------------------------------------------------------------

def get_job(kube: Kube, namespace: str, job: str) -> dict:
    obj = kube.get("batch/v1", "Job", job, namespace)
    if obj is None:
        raise KubeNotFound(f"job {job} not found in namespace {namespace}", LIST_HINT)
    return obj


def job_pods(kube: Kube, namespace: str, job: str, rank: int | None = None) -> list[dict]:
    """The job's pods, oldest first; only those of one completion index when `rank` is set
    (an Indexed Job's pods carry their index as an annotation)."""
    pods = kube.list("v1", "Pod", namespace, label_selector=f"{JOB_NAME_LABEL}={job}")
    if rank is not None:
        pods = [p for p in pods
                if (p["metadata"].get("annotations") or {}).get(COMPLETION_INDEX, "0") == str(rank)]
    return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")


def _finished(job: dict) -> bool | None:
    """True when it succeeded, False when it failed, None while it runs."""
    state, _, _ = job_state(job, [])
    if state in ("Succeeded", "Succeeding"):
        return True
    if state in ("Failed", "Failing"):
        return False
    return None


def _started(pod: dict) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") in ("Running", "Succeeded", "Failed"):
        return True
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if "running" in state or "terminated" in state:
            return True
    return False


def stream_logs(kube: Kube, namespace: str, job: str, follow: bool,
                write: Callable[[str], None], *, rank: int = 0,
                notify: Callable[[str], None] | None = None, poll_seconds: float = 2.0,
                timeout: float | None = None, sleep: Callable[[float], None] = time.sleep,
                tail_lines: int | None = None) -> int:
    """Write the trainer's output of rank `rank` (node 0 by default) to `write`.

    Without `follow`: what the latest attempt has printed so far; returns 0.
    With `follow`: waits for a pod to start, streams it, and moves on to the next attempt
    when a spot disruption replaced the pod; returns 0 when the Job succeeded, 1 when it
    failed. `notify` (optional) gets one line per event (waiting, new attempt, finished).
    """
    tell = notify or (lambda _line: None)
    get_job(kube, namespace, job)
    deadline = time.monotonic() + timeout if timeout else None
    streamed: set[str] = set()
    last_note = None
    while True:
        job_obj = get_job(kube, namespace, job)
        pods = job_pods(kube, namespace, job, rank)
        candidates = [p for p in pods if p["metadata"]["name"] not in streamed]
        pod = candidates[-1] if candidates else None
        outcome = _finished(job_obj)
        if pod is not None and _started(pod):
            name = pod["metadata"]["name"]
            if streamed:
                tell(f"attempt {len(streamed) + 1}: pod {name}")
            _copy(kube.pod_log(namespace, name, container=TRAINER, follow=follow,
                               tail_lines=None if streamed else tail_lines), write)
            if not follow:
                return 0
            # The stream ends when the container does; never stream the same attempt twice.
            streamed.add(name)
            continue
        if outcome is not None:
            tell(f"job {job} {'succeeded' if outcome else 'failed'}")
            return 0 if outcome else 1
        if not follow:
            note = _waiting_note(pod)
            raise KubeError(f"job {job} has no started pod yet: {note}",
                            "follow it with -f to wait for it")
        note = _waiting_note(pod)
        if note != last_note:
            tell(note)
            last_note = note
        if deadline is not None and time.monotonic() > deadline:
            raise KubeError(f"gave up waiting for job {job} after {timeout:.0f}s: {note}",
                            "see `gpuctl jobs --gke`")
        sleep(poll_seconds)


def _waiting_note(pod: dict | None) -> str:
    if pod is None:
        return "waiting for the Job's pod to be created"
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return (f"pod {pod['metadata']['name']} is waiting for a node: "
                    f"{cond.get('message') or cond.get('reason')} (a GPU node from zero takes "
                    "4-10 minutes)")
    return f"pod {pod['metadata']['name']} is starting"


def _copy(chunks, write: Callable[[str], None]) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for chunk in chunks:
        text = decoder.decode(chunk)
        if text:
            write(text)
    tail = decoder.decode(b"", final=True)
    if tail:
        write(tail)


# --- cancel ----------------------------------------------------------------------------------

def cancel_job(kube: Kube, namespace: str, job: str, grace_seconds: int | None = 30, *,
               wait_seconds: float = 0, sleep: Callable[[float], None] = time.sleep) -> dict:
    """Delete a gpuctl Job, its pods (each given `grace_seconds` after SIGTERM to save a
    checkpoint) and its headless Service. With `wait_seconds`, wait until none is left."""
    obj = get_job(kube, namespace, job)
    if (obj["metadata"].get("labels") or {}).get(MANAGED) != "true":
        raise KubeError(f"job {job} in {namespace} was not made by gpuctl; leaving it alone",
                        "delete it with kubectl if you mean to")
    deleted = []
    # Foreground: the Job object stays until its pods are gone, so a new job of the same
    # name cannot start beside them. The Job controller makes no pods for a Job being deleted.
    if kube.delete("batch/v1", "Job", job, namespace, propagation="Foreground"):
        deleted.append(f"Job/{job}")
    for pod in job_pods(kube, namespace, job):
        if kube.delete("v1", "Pod", pod["metadata"]["name"], namespace,
                       grace_seconds=grace_seconds):
            deleted.append(f"Pod/{pod['metadata']['name']}")
    # The headless Service, the workdir's ConfigMap and the submitted secrets: owned by the Job
    # (the garbage collector would get them), deleted now so nothing outlives the cancel.
    for kind in ("Service", "ConfigMap", "Secret"):
        for obj in kube.list("v1", kind, namespace, label_selector=f"{MANAGED}=true,{JOB}={job}"):
            if kube.delete("v1", kind, obj["metadata"]["name"], namespace):
                deleted.append(f"{kind}/{obj['metadata']['name']}")
    left = leftovers(kube, namespace, job)
    deadline = time.monotonic() + wait_seconds
    while left and time.monotonic() < deadline:
        sleep(0.5)
        left = leftovers(kube, namespace, job)
    return {"namespace": namespace, "job": job, "deleted": deleted,
            "grace_seconds": grace_seconds, "left": left}


def leftovers(kube: Kube, namespace: str, job: str) -> list[str]:
    """What still carries the job's gpuctl labels (Job, pods, Service, ConfigMap, Secret)."""
    selector = f"{MANAGED}=true,{JOB}={job}"
    found = []
    for api_version, kind in (("batch/v1", "Job"), ("v1", "Pod"), ("v1", "Service"),
                              ("v1", "ConfigMap"), ("v1", "Secret")):
        found += [f"{kind}/{o['metadata']['name']}"
                  for o in kube.list(api_version, kind, namespace, label_selector=selector)]
    return found


def _key(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"
