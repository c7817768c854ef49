"""A stand-in for Cloud Resource Manager v1 `projects.testIamPermissions` and `projects.get`
(REST, 127.0.0.1).

cloudresourcemanager.v1 discovery document:
  * POST v1/projects/{resource}:testIamPermissions with {"permissions": [...]}; the answer
    {"permissions": [...]} is the subset the caller holds (omitted when none). Wildcards are
    refused ("Permissions with wildcards (such as `*` or `storage.*`) are not allowed").
  * GET v1/projects/{projectId}: the Project ("The caller must have read permissions for this
    Project", i.e. resourcemanager.projects.get); its projectNumber is int64, so a JSON string
    of digits. Every answer is checked against the Project schema before it is sent.
Faults: revoke(*permissions) (a revoked resourcemanager.projects.get makes projects.get 403),
unknown project (403, as Google answers for a project the caller cannot see).
"""

from __future__ import annotations

import re

from tests.standins import discovery
from tests.standins.jsonhttp import JsonStandIn, Request, google_error

API = "cloudresourcemanager.v1"
_TEST = re.compile(r"^/v1/projects/(?P<project>[^/:]+):testIamPermissions$")
_GET = re.compile(r"^/v1/projects/(?P<project>[^/:]+)$")
DEFAULT_NUMBER = "123456789012"


class ResourceManagerStandIn(JsonStandIn):
    def __init__(self, project: str, granted: set[str] | None = None, number: str = DEFAULT_NUMBER):
        super().__init__()
        self.project = project
        self.number = number
        self.granted = set(granted) if granted is not None else None  # None: everything
        self.revoked: set[str] = set()

    def revoke(self, *permissions: str) -> None:
        self.revoked |= set(permissions)

    def holds(self, permission: str) -> bool:
        return permission not in self.revoked and (self.granted is None or permission in self.granted)

    def answer(self, request: Request) -> tuple[int, dict]:
        get = _GET.match(request.path)
        if request.method == "GET" and get:
            return self._get(get["project"])
        match = _TEST.match(request.path)
        if request.method != "POST" or not match:
            return google_error(404, f"{request.method} {request.path} is not served here.", "NOT_FOUND")
        if match["project"] != self.project:
            # Google answers 403 for a project that does not exist or that the caller cannot see.
            return google_error(403, "The caller does not have permission", "PERMISSION_DENIED")
        body = request.body if isinstance(request.body, dict) else {}
        asked = body.get("permissions", [])
        if not isinstance(asked, list) or any("*" in p for p in asked):
            return google_error(400, "Permissions with wildcards are not allowed", "INVALID_ARGUMENT")
        held = [p for p in asked if self.holds(p)]
        return 200, ({"permissions": held} if held else {})

    def _get(self, project: str) -> tuple[int, dict]:
        if project != self.project or not self.holds("resourcemanager.projects.get"):
            return google_error(403, "The caller does not have permission", "PERMISSION_DENIED")
        body = {"projectId": self.project, "projectNumber": self.number, "name": self.project,
                "lifecycleState": "ACTIVE", "createTime": "2026-01-05T10:00:00.000Z"}
        problems = discovery.check(API, "Project", body)
        if problems:  # the stand-in's own defect: never answer outside the contract
            return google_error(500, "stand-in defect: " + "; ".join(problems), "INTERNAL")
        return 200, body
