"""A stand-in for the Service Usage API v1 `services.batchGet` (REST, on 127.0.0.1).

serviceusage.v1 discovery document: GET v1/{parent}/services:batchGet with repeated `names`
(projects/P/services/NAME, at most 30); the answer is {"services": [Service]} where Service
has name, parent and state ENABLED | DISABLED. Faults: disable(name), or refuse every call
(e.g. the Service Usage API itself disabled: 403 SERVICE_DISABLED).
"""

from __future__ import annotations

import re

from tests.standins.jsonhttp import JsonStandIn, Request, google_error

_BATCH_GET = re.compile(r"^/v1/projects/(?P<project>[^/]+)/services:batchGet$")


class ServiceUsageStandIn(JsonStandIn):
    def __init__(self, project: str, enabled: set[str], project_number: str = "123456789012"):
        super().__init__()
        self.project = project
        self.project_number = project_number
        self.enabled = set(enabled)
        self._refusal: tuple[int, dict] | None = None

    def disable(self, name: str) -> None:
        self.enabled.discard(name)

    def refuse(self, code: int = 403, reason: str = "SERVICE_DISABLED",
               message: str = "Service Usage API has not been used in project 123456789012 "
                              "before or it is disabled.") -> None:
        self._refusal = google_error(code, message, "PERMISSION_DENIED", reason)

    def answer(self, request: Request) -> tuple[int, dict]:
        if self._refusal:
            return self._refusal
        match = _BATCH_GET.match(request.path)
        if request.method != "GET" or not match:
            return google_error(404, f"{request.method} {request.path} is not served here.", "NOT_FOUND")
        if match["project"] not in (self.project, self.project_number):
            return google_error(403, "Permission denied to get service", "PERMISSION_DENIED")
        names = request.query.get("names", [])
        if not names or len(names) > 30:
            return google_error(400, "names: between 1 and 30 service names", "INVALID_ARGUMENT")
        services = []
        for full in names:
            parent, _, name = full.rpartition("/services/")
            if parent != f"projects/{match['project']}" or not name:
                return google_error(400, f"Invalid service name {full}", "INVALID_ARGUMENT")
            services.append({"name": f"projects/{self.project_number}/services/{name}",
                             "parent": f"projects/{self.project_number}",
                             "state": "ENABLED" if name in self.enabled else "DISABLED"})
        return 200, {"services": services}
