"""A stand-in for Cloud Resource Manager v1 `projects.testIamPermissions` (REST, 127.0.0.1).

cloudresourcemanager.v1 discovery document: POST v1/projects/{resource}:testIamPermissions
with {"permissions": [...]}; the answer {"permissions": [...]} is the subset the caller
holds (omitted when none). Wildcards are refused ("Permissions with wildcards (such as `*`
or `storage.*`) are not allowed"). Faults: revoke(*permissions), unknown project (403).
"""

from __future__ import annotations

import re

from tests.standins.jsonhttp import JsonStandIn, Request, google_error

_TEST = re.compile(r"^/v1/projects/(?P<project>[^/:]+):testIamPermissions$")


class ResourceManagerStandIn(JsonStandIn):
    def __init__(self, project: str, granted: set[str] | None = None):
        super().__init__()
        self.project = project
        self.granted = set(granted) if granted is not None else None  # None: everything
        self.revoked: set[str] = set()

    def revoke(self, *permissions: str) -> None:
        self.revoked |= set(permissions)

    def holds(self, permission: str) -> bool:
        return permission not in self.revoked and (self.granted is None or permission in self.granted)

    def answer(self, request: Request) -> tuple[int, dict]:
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
