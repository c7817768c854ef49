"""What a bucket must grant a GKE workload that mounts it through the Cloud Storage FUSE CSI
driver, and gpuctl making that grant for a training Job's checkpoints.

The pods authenticate as their Kubernetes service account through Workload Identity Federation
for GKE, so the bucket grants that account's principal
(https://cloud.google.com/kubernetes-engine/docs/how-to/cloud-storage-fuse-csi-driver-setup,
"Configure access to Cloud Storage buckets"). The identifier, "All GKE Pods that use a specific
Kubernetes service account" (https://cloud.google.com/iam/docs/principal-identifiers;
https://cloud.google.com/kubernetes-engine/docs/how-to/workload-identity):
    principal://iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/
        workloadIdentityPools/PROJECT_ID.svc.id.goog/subject/ns/NAMESPACE/sa/KSA
It names the project's pool, not a cluster: the pool is project-wide ("Workload Identity
Federation for GKE ... provides a project-wide Google-managed workload identity pool",
https://cloud.google.com/kubernetes-engine/fleet-management/docs/about-fleet-workload-identity-federation),
so the same namespace and account in any cluster of the project is the same principal, and the
grant outlives any one cluster.

`ensure_grant` (run by `jobs.submit` before anything is created): roles/storage.objectUser on
that one bucket to that one principal, nothing wider. A binding already there is left alone and
not written again. A binding gpuctl adds is recorded under GPUCTL_HOME, so that `gpuctl gke down`
of the project's last gpuctl cluster removes exactly what gpuctl added (`revoke_recorded`); a
binding someone else made is never recorded, so never removed.

The webui's read grants (READ) are still printed for the user to run (webui_plan.py).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

READ = "roles/storage.objectViewer"  # a model server reads weights and adapters
READ_WRITE = "roles/storage.objectUser"  # a trainer writes checkpoints
GET_POLICY = "storage.buckets.getIamPolicy"
SET_POLICY = "storage.buckets.setIamPolicy"


def principal(namespace: str, account: str, project: str | None = None,
              number: str | None = None) -> str:
    return (f"principal://iam.googleapis.com/projects/{number or 'PROJECT_NUMBER'}/locations/global/"
            f"workloadIdentityPools/{project or 'PROJECT_ID'}.svc.id.goog/subject/ns/{namespace}/sa/{account}")


def grant_command(bucket: str, namespace: str, account: str, role: str,
                  project: str | None = None, number: str | None = None) -> str:
    return (f"gcloud storage buckets add-iam-policy-binding gs://{bucket} --role={role} "
            f"--member={principal(namespace, account, project, number)}")


@dataclass(frozen=True)
class Grant:
    project: str  # whose workload identity pool the member belongs to
    bucket: str
    role: str
    member: str


def ensure_grant(storage, project: str, number: str, bucket: str, namespace: str, account: str,
                 role: str = READ_WRITE) -> dict:
    """Make `bucket` grant `role` to the account's principal. Returns {"bucket", "role",
    "member", "granted"}: granted True when gpuctl added the binding now, False when the bucket
    already had it, None when the policy could not be read (then "warning" says so).

    Refused (403) by setIamPolicy: raises, before anything is created. The binding is known to be
    missing, so the pods could not mount the bucket: a Job that cannot mount holds a GPU node
    in ContainerCreating until its timeout, which is money for nothing. Refused by getIamPolicy:
    whether the bucket grants it cannot be known (an admin may have granted it already, to a
    user who may not read the policy), so the submit goes on and says so."""
    from ..adapters.compute import CloudAccessError
    from ..adapters.storage import BucketPolicyDenied

    member = principal(namespace, account, project, number)
    result = {"bucket": bucket, "role": role, "member": member, "granted": None}
    command = grant_command(bucket, namespace, account, role, project, number)
    try:
        added = storage.add_bucket_member(bucket, role, member)
    except BucketPolicyDenied as exc:
        if exc.permission == GET_POLICY:
            result["warning"] = (f"could not read who may use gs://{bucket} ({GET_POLICY} is missing); "
                                 f"if it does not grant {role} to {account}, the pods cannot mount it: "
                                 f"{command}")
            return result
        raise CloudAccessError(f"cannot grant {account} {role} on gs://{bucket}: you lack {SET_POLICY} "
                               "on it, and the pods could not mount it; nothing was created",
                               f"ask an admin of the bucket to run: {command}") from None
    if added:
        record(Grant(project, bucket, role, member))
    result["granted"] = added
    return result


# --- what gpuctl added, so that `gke down` can take it back --------------------------------------

def grants_path() -> Path:
    from ..paths import gpuctl_home

    return gpuctl_home() / "gke" / "bucket-grants.json"


@contextmanager
def _locked() -> Iterator[list[dict]]:
    """The recorded grants, read and written back under an exclusive lock (two submits at once
    must not lose each other's record); written atomically."""
    import fcntl

    path = grants_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            grants = json.loads(path.read_text()).get("grants", []) if path.exists() else []
        except ValueError:
            grants = []  # a torn or hand-edited file: start again rather than fail every submit
        before = list(grants)
        yield grants
        if grants != before:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"grants": grants}, indent=1, sort_keys=True))
            os.replace(tmp, path)


def record(grant: Grant) -> None:
    with _locked() as grants:
        if asdict(grant) not in grants:
            grants.append(asdict(grant))


def recorded(project: str) -> list[Grant]:
    if not grants_path().exists():
        return []
    with _locked() as grants:
        return [Grant(**g) for g in grants if g.get("project") == project]


def revoke_recorded(storage, project: str) -> tuple[list[Grant], list[str]]:
    """Remove every binding gpuctl recorded for `project`'s pool: (removed, problems). A binding
    already gone (or its bucket) only leaves the record; one that cannot be removed stays
    recorded, so the next `gke down` tries again, and is named in `problems` with the command."""
    from ..errors import GpuctlError

    removed, problems = [], []
    for grant in recorded(project):
        try:
            storage.remove_bucket_member(grant.bucket, grant.role, grant.member)
        except GpuctlError as exc:
            problems.append(f"could not remove {grant.role} on gs://{grant.bucket} from {grant.member}: "
                            f"{exc.message}; run `gcloud storage buckets remove-iam-policy-binding "
                            f"gs://{grant.bucket} --role={grant.role} --member={grant.member}`")
            continue
        removed.append(grant)
        with _locked() as grants:
            grants[:] = [g for g in grants if g != asdict(grant)]
    return removed, problems
