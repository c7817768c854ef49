"""A stand-in for the Cloud Scheduler API v1 (REST) on 127.0.0.1, for the movable deadline.

It serves jobs create/get/patch/delete as cloudscheduler.v1.json documents them, checks every
body and answer against that document (tests/standins/discovery.py), and refuses what the
document refuses (a body on a DELETE target; a patch of a missing job is NOT_FOUND). `fire_due`
plays Cloud Scheduler's part: each job whose minute has come sends its HTTP request, here to
the Compute stand-in, as the service account's OAuth token would let it.
"""

from __future__ import annotations

import datetime as dt
import re
import threading

import requests

from tests.standins import discovery
from tests.standins.loopback import HttpCall, LoopbackServer

API = "cloudscheduler.v1"
_JOB = re.compile(r"projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/jobs/(?P<j>[^/:]+)")


class SchedulerStandIn(LoopbackServer):
    def __init__(self, project: str = "gpuctl-test", *, clock=None):
        self.project = project
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.jobs: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict | None, int]] = []  # (verb, path, body, status)
        self.contract_violations: list[str] = []
        self.fired: list[tuple[str, int]] = []  # (job name, HTTP status its target answered)
        self._lock = threading.RLock()

    def serve(self, call: HttpCall) -> tuple[int, dict]:
        try:
            body = call.json()
        except ValueError:
            return _error(400, "Invalid JSON payload received.")
        return self.answer(call.method, call.path, call.query, body)

    # -- answering --
    def answer(self, verb: str, path: str, query: dict, body) -> tuple[int, dict]:
        with self._lock:
            method, problems = discovery.request_problems(API, verb, path, body)
            if problems:
                self.contract_violations.extend(problems)
                code, payload = _error(400 if method else 404, "; ".join(problems))
            else:
                code, payload = self._handle(method.id.rsplit(".", 1)[-1], path, query, body)
                problems = discovery.response_problems(API, method, payload) if code == 200 else []
                if problems:
                    self.contract_violations.extend(problems)
                    code, payload = _error(500, "stand-in defect: answer violates cloudscheduler.v1.json: "
                                           + "; ".join(problems))
            self.requests.append((verb, path, body, code))
            return code, payload

    def _handle(self, verb: str, path: str, query: dict, body) -> tuple[int, dict]:
        if verb == "create":
            name = (body or {}).get("name", "")
            parent = path.removeprefix("/v1/").removesuffix("/jobs")
            if not _JOB.fullmatch(name) or not name.startswith(parent + "/jobs/"):
                return _error(400, f"Job name '{name}' must be under '{parent}'.")
            if name in self.jobs:
                return _error(409, f"Job {name} already exists.", "ALREADY_EXISTS")
            refusal = self._refusal(_named(body))
            if refusal:
                return refusal
            self.jobs[name] = {**_named(body), "state": "ENABLED", "userUpdateTime": self._stamp()}
            return 200, self.jobs[name]
        if verb == "list":  # jobs.list: the parent's jobs, in pages (pageSize, pageToken)
            parent = path.removeprefix("/v1/").removesuffix("/jobs") + "/jobs/"
            names = sorted(n for n in self.jobs if n.startswith(parent))
            start = int(query.get("pageToken") or 0)
            size = min(int(query.get("pageSize") or 100), 500)
            page = {"jobs": [self.jobs[n] for n in names[start:start + size]]}
            if start + size < len(names):
                page["nextPageToken"] = str(start + size)
            return 200, page
        name = path.removeprefix("/v1/")
        if name not in self.jobs:
            return _error(404, f"Job {name} not found.", "NOT_FOUND")  # the document: patch -> NOT_FOUND
        if verb == "get":
            return 200, self.jobs[name]
        if verb == "delete":
            del self.jobs[name]
            return 200, {}
        if verb == "patch":
            mask = [re.sub(r"_(\w)", lambda m: m.group(1).upper(), p) for p in
                    (query.get("updateMask") or "").split(",") if p]
            merged = dict(self.jobs[name])
            for key in mask or list(body or {}):
                if key in (body or {}):
                    merged[key] = body[key]
                else:
                    merged.pop(key, None)
            merged = _named(merged)
            refusal = self._refusal(merged)
            if refusal:
                return refusal
            self.jobs[name] = {**merged, "userUpdateTime": self._stamp()}
            return 200, self.jobs[name]
        return _error(404, f"{verb} is not served here.", "NOT_FOUND")

    @staticmethod
    def _refusal(job: dict):
        target = job.get("httpTarget") or {}
        # cloudscheduler.v1.json, HttpTarget.body: "A request body is allowed only if the HTTP
        # method is POST, PUT, or PATCH. It is an error to set body on a job with an incompatible
        # HttpMethod."
        if target.get("body") and target.get("httpMethod") not in ("POST", "PUT", "PATCH", None):
            return _error(400, "A request body is allowed only if the HTTP method is POST, PUT, or PATCH.")
        if not job.get("schedule"):
            return _error(400, "Job.schedule is required.")
        return None

    def _stamp(self) -> str:
        return self.clock().astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")

    # -- Cloud Scheduler's own part --
    def fire_due(self, now: dt.datetime, compute_endpoint: str) -> list[str]:
        """Send the request of every job whose minute is `now`'s or earlier (and not yet sent)."""
        from gpuctl.adapters.deadline import COMPUTE_URL, fires_at

        fired = []
        with self._lock:
            due = [(name, job) for name, job in self.jobs.items() if not job.get("lastAttemptTime")
                   and fires_at(job["schedule"], _parse(job["userUpdateTime"])) <= now]
        for name, job in due:
            target = job["httpTarget"]
            url = target["uri"].replace(COMPUTE_URL, compute_endpoint + "/compute/v1")
            answer = requests.request(target.get("httpMethod", "POST"), url, timeout=10)
            with self._lock:
                job["lastAttemptTime"] = self._stamp()
                self.fired.append((name, answer.status_code))
            fired.append(name)
        return fired


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _named(job: dict) -> dict:
    """The clients send enums by number ("$alt=json;enum-encoding=int"); Google answers names."""
    target = job.get("httpTarget")
    if target and isinstance(target.get("httpMethod"), int):
        names = discovery.document(API)["schemas"]["HttpTarget"]["properties"]["httpMethod"]["enum"]
        job = {**job, "httpTarget": {**target, "httpMethod": names[target["httpMethod"]]}}
    return job


def _error(code: int, message: str, status: str = "INVALID_ARGUMENT") -> tuple[int, dict]:
    return code, {"error": {"code": code, "message": message, "status": status}}


