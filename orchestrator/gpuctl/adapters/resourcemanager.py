"""Cloud Resource Manager v1, the two reads gpuctl needs of a project:
  * `granted_permissions`: projects.testIamPermissions (POST v1/projects/{resource}:testIamPermissions
    with {"permissions": [...]}; the answer lists the subset granted). The discovery document
    says "There are no permissions required for making this API call", and wildcards are refused.
  * `project_number`: projects.get (GET v1/projects/{projectId}; "The caller must have read
    permissions for this Project"). Its `projectNumber` (int64, so a JSON string of digits) names
    the project's Workload Identity pool in a principal identifier
    (https://cloud.google.com/iam/docs/principal-identifiers: principal://iam.googleapis.com/
    projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/PROJECT_ID.svc.id.goog/...).
"""

from __future__ import annotations

from ..errors import GpuctlError
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


def project_number(project: str, credentials=None) -> str:
    """The project's number (digits, as text) for its id."""
    with translated(SERVICE, HOST, ENDPOINT_ENV, project):
        client = build_client("cloudresourcemanager", "v1", ENDPOINT_ENV, credentials)
        answer = client.projects().get(projectId=project).execute()
    number = str(answer.get("projectNumber") or "")
    if not number.isdigit():
        raise GpuctlError(f"the {SERVICE} gave no project number for project {project}",
                          "rerun; report it if it persists")
    return number
