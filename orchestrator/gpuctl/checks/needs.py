"""What each live command needs from a project: APIs and IAM permissions (data only)."""

from __future__ import annotations

# name -> what it is, for the lines `gpuctl check` prints.
APIS = {
    "compute.googleapis.com": "Compute Engine API",
    "container.googleapis.com": "Kubernetes Engine API",
    "cloudbilling.googleapis.com": "Cloud Billing API (catalog prices)",
    "cloudresourcemanager.googleapis.com": "Cloud Resource Manager API",
    # A VM's movable deadline (`up --cap`, `extend`) is a Cloud Scheduler job.
    "cloudscheduler.googleapis.com": "Cloud Scheduler API (deadlines that extend moves)",
}

# Commands -> project-level permissions they use. From the methods each command calls (the
# "IAM Permissions" section of each method in Google's REST reference, e.g.
# https://cloud.google.com/compute/docs/reference/rest/v1/instances/insert) and the VM
# creation permissions in https://cloud.google.com/compute/docs/access/create-enable-service-accounts-for-instances
# ("Required permissions": instances.create, subnetworks.use/useExternalIp, setMetadata,
# setLabels...). The Cloud Billing Catalog is public to any signed-in caller: no permission.
PERMISSIONS = {
    "status/list": ["compute.instances.list"],
    "up": ["compute.instances.create", "compute.instances.get", "compute.instances.getGuestAttributes",
           "compute.instances.setMetadata", "compute.instances.setLabels", "compute.instances.setTags",
           "compute.disks.create", "compute.images.useReadOnly", "compute.subnetworks.use",
           "compute.subnetworks.useExternalIp", "compute.firewalls.create",
           "compute.resourcePolicies.create", "compute.resourcePolicies.use"],
    # extend moves the deadline job (instances.setScheduling works only on a stopped VM); the job
    # acts as the deadline service account, which the caller must be allowed to act as.
    "extend": ["compute.instances.get", "cloudscheduler.jobs.create", "cloudscheduler.jobs.get",
               "cloudscheduler.jobs.update", "cloudscheduler.jobs.delete", "iam.serviceAccounts.actAs"],
    "down/sweep": ["compute.instances.list", "compute.instances.delete", "compute.disks.list",
                   "compute.disks.delete", "compute.firewalls.list", "compute.firewalls.delete",
                   "compute.resourcePolicies.list", "compute.resourcePolicies.delete"],
    # run --recover: the template and group (the template names the run's own service account,
    # which the caller must act as), that account and its grants: objectUser on the bucket (a
    # bucket policy read-modify-write) and the conditional project grant that lets the VM delete
    # its own group (a project policy read-modify-write, version 3).
    "run --recover": ["compute.instanceTemplates.create", "compute.instanceTemplates.delete",
                      "compute.instanceTemplates.useReadOnly", "compute.instanceGroupManagers.create",
                      "compute.instanceGroupManagers.get", "compute.instanceGroupManagers.delete",
                      "iam.serviceAccounts.create", "iam.serviceAccounts.delete", "iam.serviceAccounts.actAs",
                      "storage.buckets.getIamPolicy", "storage.buckets.setIamPolicy",
                      "resourcemanager.projects.getIamPolicy", "resourcemanager.projects.setIamPolicy"],
    "gke": ["container.clusters.create", "container.clusters.get", "container.clusters.list",
            "container.clusters.delete", "container.clusters.update", "container.operations.get",
            "compute.instanceGroupManagers.list", "iam.serviceAccounts.actAs"],
}

# Roles that hold those permissions, for the fix on a failing line.
ROLES = {
    "status/list": "roles/compute.viewer",
    "up": "roles/compute.instanceAdmin.v1 and roles/compute.securityAdmin",
    "extend": "roles/cloudscheduler.admin and roles/iam.serviceAccountUser",
    "down/sweep": "roles/compute.instanceAdmin.v1 and roles/compute.securityAdmin",
    "run --recover": "roles/compute.instanceAdmin.v1, roles/iam.serviceAccountAdmin, roles/iam.serviceAccountUser, "
                     "roles/storage.admin and roles/resourcemanager.projectIamAdmin",
    "gke": "roles/container.admin and roles/iam.serviceAccountUser",
}

# GPU quota metrics of Compute Engine regions (compute.v1 discovery document, Quota.metric):
# on-demand NVIDIA_<GPU>_GPUS, spot PREEMPTIBLE_NVIDIA_<GPU>_GPUS. The document's enum lacks
# NVIDIA_H100_GPUS (it has PREEMPTIBLE_ and COMMITTED_ H100); Google's GPU quota page uses it.
QUOTA_METRICS = {
    "nvidia-tesla-t4": "NVIDIA_T4_GPUS",
    "nvidia-l4": "NVIDIA_L4_GPUS",
    "nvidia-tesla-a100": "NVIDIA_A100_GPUS",
    "nvidia-a100-80gb": "NVIDIA_A100_80GB_GPUS",
    "nvidia-h100-80gb": "NVIDIA_H100_GPUS",
}
