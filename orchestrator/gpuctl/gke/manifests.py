"""A job spec becomes Kubernetes objects: a Job, or an Indexed Job plus a headless Service.

Pure functions returning plain dicts (what `kubectl apply -f` would read); nothing here talks
to a cluster. The shapes follow what GKE does to spot GPU nodes (GCP_FACTS.md):

- nodes carry `cloud.google.com/gke-accelerator=<type>` and, when spot,
  `cloud.google.com/gke-spot=true`; GPU nodes are tainted `nvidia.com/gpu=present:NoSchedule`;
- a pod asks for GPUs with the `nvidia.com/gpu` limit, so the scheduler places it only where
  that many GPUs are free, and the cluster autoscaler scales the matching pool up from zero.

Spot disruptions and code errors are told apart by a pod failure policy: a pod that failed
because its node went away (condition DisruptionTarget) is retried, up to `max_retries`
times; a trainer that exits non-zero fails the Job at once, because rerunning a crash only
burns GPU hours.
"""

from __future__ import annotations

import re

from ..jobspec import (DEFAULT_ACCELERATOR, DEFAULT_IMAGE, JobSpec, JobSpecError,
                       notes_for_target, parse_job_spec)
from ..validation import IMAGE_RE  # the one OCI reference grammar

# Labels on everything gpuctl creates in a cluster: what `down` and sweeps select on.
MANAGED = "gpuctl-managed"
OWNER = "gpuctl-owner"
JOB = "gpuctl-job"
COMPONENT = "gpuctl-component"

ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
SPOT_LABEL = "cloud.google.com/gke-spot"
GPU_RESOURCE = "nvidia.com/gpu"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"

TRAINER = "trainer"  # the container the failure policy judges by its exit code
MASTER_PORT = 29500  # torchrun's default
SCRATCH = "/scratch"  # caches: an emptyDir, on local SSD when the node pool has it
DEFAULT_TTL_AFTER_FINISHED = 86400  # a finished Job (and its logs) stays one day
DEFAULT_TIMEOUT = 86400  # a Job without `timeout:` is still stopped after a day
# Spot VMs get about 30 s of notice; leave the trainer time to flush a checkpoint.
TERMINATION_GRACE = 25

# The workdir travels as a gzip'd tar in a ConfigMap (no registry, no build, no bucket): the
# apiserver holds objects up to 1 MiB, so code, not data or weights, fits.
WORKSPACE = "/workspace"
CODE_MOUNT = "/gpuctl/code"
CODE_KEY = "code.tar.gz"
MAX_CODE_BYTES = 700 * 1024
SYNC_META = ".gpuctl-sync.json"  # runs/sync's manifest member, not the user's file

# `checkpoints: gs://...`: the bucket folder is mounted into every pod of the Job through the
# Cloud Storage FUSE CSI driver (`gke up` enables it), so a pod that replaces a preempted one
# finds the checkpoints its predecessor wrote. As an inline CSI ephemeral volume, with the pod
# annotation the driver's sidecar injection needs:
# https://cloud.google.com/kubernetes-engine/docs/how-to/cloud-storage-fuse-csi-driver-ephemeral
GCS_FUSE_DRIVER = "gcsfuse.csi.storage.gke.io"
GCS_FUSE_ANNOTATION = "gke-gcsfuse/volumes"
CHECKPOINT_MOUNT = "/gpuctl/checkpoints"
# The pods' Kubernetes service account: its Workload Identity principal is what the bucket
# grants (and nothing else runs as it). One per namespace, made at submit, shared by jobs.
CHECKPOINT_ACCOUNT = "gpuctl-trainer"

# Environment gpuctl sets for a multi-node job. A spec that sets one of these itself would
# silently break the rendezvous, so it is refused.
RENDEZVOUS_ENV = ("MASTER_ADDR", "MASTER_PORT", "NNODES", "NODE_RANK", "WORLD_SIZE",
                  "PET_NNODES", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT")


def gpuctl_labels(owner: str, component: str, **extra: str) -> dict[str, str]:
    return {MANAGED: "true", OWNER: owner, COMPONENT: component, **extra}


def gpu_placement(accelerator: str | None, gpus: int, spot: bool) -> dict:
    """nodeSelector, affinity, tolerations and container limits for `gpus` x `accelerator`.

    Shared by training Jobs and the Web UI so both schedule the same way. A pod without GPUs
    gets no GPU selector or toleration: it must not hold a GPU node up.
    """
    selector: dict[str, str] = {}
    tolerations: list[dict] = []
    limits: dict[str, str] = {}
    affinity: dict | None = None
    if gpus > 0:
        if not accelerator:
            raise JobSpecError("a pod with GPUs needs an accelerator",
                               "add `accelerator:` (e.g. nvidia-l4)")
        selector[ACCELERATOR_LABEL] = accelerator
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
        limits[GPU_RESOURCE] = str(gpus)
    spot_term = {"matchExpressions": [{"key": SPOT_LABEL, "operator": "In", "values": ["true"]}]}
    if spot:
        # GKE does not taint spot nodes by default; clusters that do use this key.
        tolerations.append({"key": SPOT_LABEL, "operator": "Equal", "value": "true",
                            "effect": "NoSchedule"})
        if gpus > 0:
            selector[SPOT_LABEL] = "true"
        else:
            # A CPU-only pod prefers spot but may run on the (on-demand) system nodes: a
            # cluster need not have a spot CPU pool.
            affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "preference": spot_term}]}}
    else:
        # On-demand nodes have no gke-spot label; NotIn also matches a missing label.
        affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": SPOT_LABEL, "operator": "NotIn", "values": ["true"]}]}]}}}
    return {"nodeSelector": selector, "tolerations": tolerations, "limits": limits,
            "affinity": affinity}


def headless_service_name(job: str) -> str:
    return f"{job}-workers"


def code_configmap_name(job: str) -> str:
    return f"{job}-code"


def secrets_name(job: str) -> str:
    return f"{job}-secrets"


def build_job_manifests(spec: JobSpec, *, namespace: str, owner: str,
                        ttl_after_finished: int = DEFAULT_TTL_AFTER_FINISHED,
                        default_timeout: int = DEFAULT_TIMEOUT, code: bytes | None = None,
                        secret_values: dict[str, str] | None = None,
                        project: str | None = None) -> list[dict]:
    """[Job] for one node; [headless Service, Indexed Job] for several; the workdir's ConfigMap
    first when `code` (runs/sync.pack's tar) is given, and the Secret of env:/file: secrets
    when their `secret_values` are (never in a dry run). `project` names the bucket of
    `checkpoints: auto`. Raises JobSpecError for a spec that cannot run on GKE."""
    notes_for_target(spec, "gke")
    from ..validation import namespace as checked_namespace

    checked_namespace(namespace)  # rendered into every object's metadata
    spec = spec.model_copy(update={
        "image": spec.image or DEFAULT_IMAGE,
        "accelerator": spec.accelerator or (DEFAULT_ACCELERATOR if spec.gpus_per_node else None)})
    if code is not None and len(code) > MAX_CODE_BYTES:
        raise JobSpecError(f"workdir {spec.workdir} packs to {len(code) / 1024:.0f} KiB; a "
                           f"ConfigMap carries at most {MAX_CODE_BYTES // 1024} KiB of code",
                           "list data, weights and outputs in .gitignore, or bake the code "
                           "into an image (image:) and remove workdir")
    if not IMAGE_RE.fullmatch(spec.image or ""):
        raise JobSpecError(f"image: '{spec.image}' is not an image reference",
                           "write REGISTRY/PATH:TAG or REGISTRY/PATH@sha256:DIGEST, "
                           "e.g. us-docker.pkg.dev/my-project/train/llama:1.0")
    if spec.nodes > 1:
        clash = sorted((set(spec.env) | set(spec.secrets)) & set(RENDEZVOUS_ENV))
        if clash:
            raise JobSpecError(f"env sets {', '.join(clash)}, which gpuctl sets for a "
                               f"{spec.nodes}-node job", "remove it from env and secrets")
    labels = gpuctl_labels(owner, "train", **{JOB: spec.name})
    manifests: list[dict] = []
    if code is not None:
        manifests.append(_code_configmap(spec, namespace, labels, code))
    if secret_values:
        manifests.append(_local_secret(spec, namespace, labels, secret_values))
    service = None
    if spec.nodes > 1:
        service = _headless_service(spec, namespace, labels)
        manifests.append(service)
    job = _job(spec, namespace, labels, service, ttl_after_finished, default_timeout,
               code is not None)
    if spec.checkpoints:
        mount_checkpoints(job, checkpoint_location(spec, project))
    manifests.append(job)
    return manifests


def checkpoint_location(spec: JobSpec, project: str | None):
    """gs://BUCKET/PREFIX/<job>: the same per-run folder a VM run would use."""
    from ..checkpoints import run_location
    from ..jobspec import AUTO_CHECKPOINTS

    if spec.checkpoints == AUTO_CHECKPOINTS and not project:
        raise JobSpecError("checkpoints: auto names its bucket after the project, and no "
                           "project is set", "set `project` in the gpuctl config, or write "
                           "checkpoints: gs://BUCKET/PREFIX")
    return run_location(spec, spec.name, project or "")


def mount_checkpoints(job: dict, location) -> None:
    """Mount `location` (a CheckpointLocation) at CHECKPOINT_MOUNT in the trainer, run the pods
    as CHECKPOINT_ACCOUNT, and tell the trainer where: GPUCTL_CHECKPOINT_DIR and _URL, as on
    a VM. `only-dir` shows the pod just its run's folder; `implicit-dirs` shows folders that
    exist only as object prefixes (checkpoints written by a VM run's syncer, by gsutil).
    Both are gcsfuse options: https://cloud.google.com/storage/docs/cloud-storage-fuse/cli-options"""
    from ..checkpoints import DIR_ENV, URL_ENV

    template = job["spec"]["template"]
    template["metadata"].setdefault("annotations", {})[GCS_FUSE_ANNOTATION] = "true"
    pod = template["spec"]
    pod["serviceAccountName"] = CHECKPOINT_ACCOUNT
    pod["volumes"].append({"name": "checkpoints", "csi": {
        "driver": GCS_FUSE_DRIVER,
        "volumeAttributes": {"bucketName": location.bucket,
                             "mountOptions": f"implicit-dirs,only-dir={location.prefix}"}}})
    trainer = next(c for c in pod["containers"] if c["name"] == TRAINER)
    trainer["volumeMounts"].append({"name": "checkpoints", "mountPath": CHECKPOINT_MOUNT})
    taken = {item["name"] for item in trainer["env"]}
    trainer["env"] += [{"name": key, "value": value} for key, value in
                       ((DIR_ENV, CHECKPOINT_MOUNT), (URL_ENV, location.url)) if key not in taken]
    # The log outlives a preempted pod in the same folder, for `jobs --gke` (gke/log_keeper.py).
    from .log_keeper import POD_ENV, wrap

    trainer["env"].append({"name": POD_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    trainer["command"] = wrap(trainer["command"], f"{SCRATCH}/gpuctl-output.log")


def checkpoint_grant_note(location, namespace: str, project: str | None = None) -> str:
    """What the bucket must grant the pods, which gpuctl grants on submit (see
    gke/bucket_access.py ensure_grant); the command is the same grant by hand."""
    from .bucket_access import READ_WRITE, grant_command

    return (f"checkpoints: the pods mount {location.url} as {CHECKPOINT_MOUNT} "
            f"($GPUCTL_CHECKPOINT_DIR) and run as the Kubernetes service account "
            f"{CHECKPOINT_ACCOUNT}; on submit gpuctl will grant it {READ_WRITE} on "
            f"gs://{location.bucket} (unless the bucket already does; `gpuctl gke down` of the "
            f"project's last cluster takes it back), as: "
            + grant_command(location.bucket, namespace, CHECKPOINT_ACCOUNT, READ_WRITE, project))


def job_manifests_from_data(data: object, *, namespace: str, owner: str,
                            source: str = "job spec", **options) -> list[dict]:
    """Parse and render in one step: the manifests, or a JobSpecError."""
    return build_job_manifests(parse_job_spec(data, source), namespace=namespace, owner=owner,
                               **options)


def job_notes(spec: JobSpec) -> list[str]:
    """What a person should know about how the spec runs on GKE (beyond notes_for_target)."""
    notes = list(notes_for_target(spec, "gke"))
    if spec.gpus_per_node == 0 and spec.accelerator:
        notes.append(f"accelerator {spec.accelerator} is not used: gpus_per_node is 0, so the "
                     "pods run on CPU nodes")
    if spec.timeout is None:
        notes.append(f"no timeout: the Job is stopped after {DEFAULT_TIMEOUT // 3600}h "
                     "(set `timeout:` to change it)")
    if spec.output_dir and not spec.output_dir.startswith(("gs://", "s3://")):
        notes.append(f"output_dir {spec.output_dir} is inside the pod and is lost when it ends; "
                     "write checkpoints to a bucket (gs://...)")
    if spec.nodes > 1 and spec.max_retries:
        notes.append("with several nodes, a disruption of one node usually makes the others "
                     "exit non-zero, which fails the Job: resume from your last checkpoint")
    return notes


def _code_configmap(spec: JobSpec, namespace: str, labels: dict, code: bytes) -> dict:
    import base64

    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": code_configmap_name(spec.name), "namespace": namespace,
                         "labels": dict(labels)},
            "immutable": True,
            "binaryData": {CODE_KEY: base64.b64encode(code).decode()}}


def _local_secret(spec: JobSpec, namespace: str, labels: dict, values: dict[str, str]) -> dict:
    import base64

    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": secrets_name(spec.name), "namespace": namespace,
                         "labels": dict(labels)},
            "immutable": True,
            "data": {key: base64.b64encode(value.encode()).decode()
                     for key, value in sorted(values.items())}}


def _start_command(spec: JobSpec, code: bool) -> list[str]:
    """The trainer's command; with shipped code or requirements, a shell first unpacks the code
    into /workspace and pip-installs the requirements, then execs the command unchanged."""
    if not code and not spec.requirements:
        return spec.argv
    import shlex

    steps = ["set -e"]
    if code:
        steps += [f"mkdir -p {WORKSPACE}", f"cd {WORKSPACE}",
                  f"tar -xzf {CODE_MOUNT}/{CODE_KEY}", f"rm -f {SYNC_META}"]
    if spec.requirements:
        steps.append(f"python -m pip install --no-input -r {shlex.quote(spec.requirements)}")
    steps.append('exec "$@"')
    return ["/bin/sh", "-c", "; ".join(steps), "gpuctl-start", *spec.argv]


def _headless_service(spec: JobSpec, namespace: str, labels: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": headless_service_name(spec.name), "namespace": namespace,
                     "labels": dict(labels)},
        "spec": {
            "clusterIP": "None",
            # Ranks resolve rank 0 before it is Ready (there is no readiness probe to pass).
            "publishNotReadyAddresses": True,
            "selector": {JOB_NAME_LABEL: spec.name},
            "ports": [{"name": "rendezvous", "port": MASTER_PORT, "targetPort": MASTER_PORT,
                       "protocol": "TCP"}],
        },
    }


def _env(spec: JobSpec, service: dict | None) -> list[dict]:
    nproc = max(spec.gpus_per_node, 1)
    env: list[dict] = [{"name": key, "value": value} for key, value in spec.env.items()]
    for key, (scheme, ref) in spec.secret_refs().items():
        # env:/file: values are read on the submitting machine into the job's own Secret.
        secret, item = ref.split("/", 1) if scheme == "k8s" else (secrets_name(spec.name), key)
        env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": item}}})
    ours = {
        "GPUCTL_JOB": spec.name,
        "NPROC_PER_NODE": str(nproc),
        "GPUS_PER_NODE": str(spec.gpus_per_node),
        "PET_NPROC_PER_NODE": str(nproc),  # torchrun reads its flags from PET_* variables
        # Caches on the scratch emptyDir, not the image's (small, slow) writable layer.
        "HF_HOME": f"{SCRATCH}/huggingface",
        "XDG_CACHE_HOME": f"{SCRATCH}/cache",
        "TORCH_HOME": f"{SCRATCH}/torch",
        "TRITON_CACHE_DIR": f"{SCRATCH}/triton",
        "PIP_CACHE_DIR": f"{SCRATCH}/pip",
    }
    if spec.output_dir:
        ours["OUTPUT_DIR"] = spec.output_dir
    if service is not None:
        master = f"{spec.name}-0.{service['metadata']['name']}"
        ours.update({
            "MASTER_ADDR": master, "MASTER_PORT": str(MASTER_PORT),
            "NNODES": str(spec.nodes), "WORLD_SIZE": str(spec.nodes * nproc),
            "PET_MASTER_ADDR": master, "PET_MASTER_PORT": str(MASTER_PORT),
            "PET_NNODES": str(spec.nodes),
        })
    taken = {item["name"] for item in env}
    env += [{"name": key, "value": value} for key, value in ours.items() if key not in taken]
    if service is not None:
        rank = {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}
        env += [{"name": "NODE_RANK", "valueFrom": rank},
                {"name": "PET_NODE_RANK", "valueFrom": rank}]
    else:
        env += [{"name": key, "value": value} for key, value in (("NODE_RANK", "0"), ("NNODES", "1"))
                if key not in taken]
    return env


def _job(spec: JobSpec, namespace: str, labels: dict, service: dict | None,
         ttl_after_finished: int, default_timeout: int, code: bool = False) -> dict:
    placement = gpu_placement(spec.accelerator if spec.gpus_per_node else None,
                              spec.gpus_per_node, spec.spot)
    container = {
        "name": TRAINER,
        "image": spec.image,
        "command": _start_command(spec, code),
        "env": _env(spec, service),
        "volumeMounts": [
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "scratch", "mountPath": SCRATCH},
        ],
    }
    if code:
        container["workingDir"] = WORKSPACE
        container["volumeMounts"].append({"name": "code", "mountPath": CODE_MOUNT,
                                          "readOnly": True})
    if placement["limits"]:
        container["resources"] = {"limits": placement["limits"]}
    if service is not None:
        container["ports"] = [{"name": "rendezvous", "containerPort": MASTER_PORT}]
    pod_spec: dict = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE,
        "containers": [container],
        "volumes": [
            # PyTorch DataLoader workers and NCCL share memory through /dev/shm, which is
            # 64 MiB in a container by default.
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            # GKE puts emptyDir on the node's local SSD when the pool has ephemeral local SSD.
            {"name": "scratch", "emptyDir": {}},
        ] + ([{"name": "code", "configMap": {"name": code_configmap_name(spec.name)}}]
             if code else []),
    }
    if placement["nodeSelector"]:
        pod_spec["nodeSelector"] = placement["nodeSelector"]
    if placement["tolerations"]:
        pod_spec["tolerations"] = placement["tolerations"]
    if placement["affinity"]:
        pod_spec["affinity"] = placement["affinity"]
    job_spec: dict = {
        "backoffLimit": spec.max_retries,
        "ttlSecondsAfterFinished": ttl_after_finished,
        "activeDeadlineSeconds": spec.timeout_seconds or default_timeout,
        # A replacement starts only once the failed pod is gone: never two pods on one GPU.
        "podReplacementPolicy": "Failed",
        "podFailurePolicy": {"rules": [
            # First match wins: a preempted trainer also exits non-zero (137), so the
            # disruption rule comes before the exit-code rule. Count: it uses one of the
            # spec's max_retries, so a pool that keeps losing nodes cannot loop forever.
            {"action": "Count", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": TRAINER, "operator": "NotIn",
                                                  "values": [0]}},
        ]},
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if service is not None:
        job_spec.update({"completionMode": "Indexed", "completions": spec.nodes,
                         "parallelism": spec.nodes})
        pod_spec["subdomain"] = service["metadata"]["name"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": spec.name, "namespace": namespace, "labels": dict(labels),
                     "annotations": {"gpuctl.dev/command": spec.command_line[:1000],
                                     "gpuctl.dev/accelerator": (spec.accelerator if spec.gpus_per_node
                                                                else None) or "none"}},
        "spec": job_spec,
    }


def manifests_yaml(manifests: list[dict]) -> str:
    """Multi-document YAML, as `kubectl apply -f -` reads it (no anchors or aliases)."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data) -> bool:
            return True

    return yaml.dump_all(manifests, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                         explicit_start=True, width=100)
