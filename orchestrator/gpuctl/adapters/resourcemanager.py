"""Which IAM permissions the caller holds on a project: Cloud Resource Manager v1
`projects.testIamPermissions` (POST v1/projects/{resource}:testIamPermissions with
{"permissions": [...]}; the answer lists the subset granted). The discovery document says
"There are no permissions required for making this API call", and wildcards are refused.
"""

from __future__ import annotations

from .discovery import build_client, translated

ENDPOINT_ENV = "GPUCTL_RESOURCEMANAGER_ENDPOINT"
HOST = "cloudresourcemanager.googleapis.com"
SERVICE = "Cloud Resource Manager API"


def granted_permissions(project: str, permissions: list[str], credentials=None) -> set[str]:
    with translated(SERVICE, HOST, ENDPOINT_ENV, project):
        client = build_client("cloudresourcemanager", "v1", ENDPOINT_ENV, credentials)
        answer = client.projects().testIamPermissions(
            resource=project, body={"permissions": sorted(set(permissions))}).execute()
    return set(answer.get("permissions", []))
