"""Which Google APIs a project has enabled: Service Usage v1 `services.batchGet`.

serviceusage.v1 discovery document: GET v1/{parent}/services:batchGet?names=...; each
Service has `state` ENABLED, DISABLED or STATE_UNSPECIFIED; at most 30 names a request.
"""

from __future__ import annotations

from .discovery import build_client, translated

ENDPOINT_ENV = "GPUCTL_SERVICEUSAGE_ENDPOINT"
HOST = "serviceusage.googleapis.com"
SERVICE = "Service Usage API"


def service_states(project: str, services: list[str], credentials=None) -> dict[str, str]:
    """service name (compute.googleapis.com) -> state, for each one asked."""
    parent = f"projects/{project}"
    with translated(SERVICE, HOST, ENDPOINT_ENV, project):
        client = build_client("serviceusage", "v1", ENDPOINT_ENV, credentials)
        answer = client.services().batchGet(
            parent=parent, names=[f"{parent}/services/{name}" for name in services]).execute()
    found = {item["name"].rsplit("/", 1)[-1]: item.get("state", "STATE_UNSPECIFIED")
             for item in answer.get("services", [])}
    return {name: found.get(name, "STATE_UNSPECIFIED") for name in services}
