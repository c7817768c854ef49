"""What a bucket must grant a GKE workload that mounts it through the Cloud Storage FUSE CSI
driver: the pods authenticate as their Kubernetes service account through Workload Identity
Federation, so the grant names that account's principal. gpuctl prints the grant instead of
making it: it needs the project number and IAM rights on a bucket gpuctl may not own.
https://cloud.google.com/kubernetes-engine/docs/how-to/cloud-storage-fuse-csi-driver-setup
("Configure access to Cloud Storage buckets")."""

from __future__ import annotations

READ = "roles/storage.objectViewer"  # a model server reads weights and adapters
READ_WRITE = "roles/storage.objectUser"  # a trainer writes checkpoints


def principal(namespace: str, account: str) -> str:
    return ("principal://iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/"
            f"workloadIdentityPools/PROJECT_ID.svc.id.goog/subject/ns/{namespace}/sa/{account}")


def grant_command(bucket: str, namespace: str, account: str, role: str) -> str:
    return (f"gcloud storage buckets add-iam-policy-binding gs://{bucket} --role={role} "
            f"--member={principal(namespace, account)}")
