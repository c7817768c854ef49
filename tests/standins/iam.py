"""A stand-in for the two APIs behind a dedicated node service account: IAM v1
`projects.serviceAccounts` (create, get, delete) and Cloud Resource Manager v1
`projects.getIamPolicy` / `projects.setIamPolicy` (the project's role bindings).

Both are held to their discovery documents (iam.v1, cloudresourcemanager.v1). What Google
documents and this enforces:
  * accountId: "must be 6-30 characters long, and match the regular expression
    `[a-z]([-a-z0-9]*[a-z0-9])`" (iam.v1 CreateServiceAccountRequest.accountId);
  * setIamPolicy "will replace the existing policy": a read-modify-write guarded by the etag
    (cloudresourcemanager.v1 Policy.etag: "systems are expected to put that etag in the request
    to `setIamPolicy` to ensure that their change will be applied to the same version of the
    policy"). A stale etag is refused with 409 ABORTED, the code Google's IAM reference gives
    for a mismatched etag ("the request fails with a 409 error code and ABORTED status",
    iam v2 UpdatePolicyRequest; for v1 setIamPolicy the code itself is unverified); no etag
    overwrites, as the document allows;
  * "Project does not support `allUsers` and `allAuthenticatedUsers` as `members`".
One object serves both paths; tests point both endpoints at it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading

from tests.standins import discovery
from tests.standins.jsonhttp import google_error
from tests.standins.loopback import HttpCall, LoopbackServer

_ACCOUNT_ID = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])")
_ACCOUNTS = re.compile(r"^/v1/projects/(?P<p>[^/]+)/serviceAccounts(?:/(?P<email>[^/:]+))?$")
_POLICY = re.compile(r"^/v1/projects/(?P<p>[^/:]+):(?P<verb>getIamPolicy|setIamPolicy)$")


class IamStandIn(LoopbackServer):
    def __init__(self, project: str):
        self.project = project
        self.accounts: dict[str, dict] = {}  # email -> ServiceAccount
        self.bindings: dict[str, set[str]] = {"roles/owner": {"user:owner@example.com"}}
        self.requests: list[tuple[str, str]] = []
        self.contract_violations: list[str] = []
        self._lock = threading.Lock()

    def members_of(self, role: str) -> set[str]:
        with self._lock:
            return set(self.bindings.get(role, set()))

    @property
    def etag(self) -> str:
        canonical = json.dumps({r: sorted(m) for r, m in sorted(self.bindings.items())})
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def serve(self, call: HttpCall) -> tuple[int, dict]:
        try:
            body = call.json()
        except ValueError:
            return google_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        api = "cloudresourcemanager.v1" if _POLICY.match(call.path) else "iam.v1"
        with self._lock:
            self.requests.append((call.method, call.path))
            method, problems = discovery.request_problems(api, call.method, call.path, body)
            if problems:
                self.contract_violations.extend(problems)
                return google_error(400 if method else 404, "; ".join(problems), "INVALID_ARGUMENT")
            status, payload = self._answer(call, body or {})
            problems = discovery.response_problems(api, method, payload) if status == 200 else []
            if problems:
                self.contract_violations.extend(problems)
                return google_error(500, "stand-in defect: " + "; ".join(problems), "INTERNAL")
            return status, payload

    def _answer(self, call: HttpCall, body: dict) -> tuple[int, dict]:
        policy = _POLICY.match(call.path)
        if policy:
            if policy["p"] != self.project:
                return google_error(403, "The caller does not have permission", "PERMISSION_DENIED")
            return self._set_policy(body.get("policy") or {}) if policy["verb"] == "setIamPolicy" \
                else (200, self._policy())
        accounts = _ACCOUNTS.match(call.path)
        if not accounts or accounts["p"] != self.project:
            return google_error(404, f"{call.method} {call.path} is not served here.", "NOT_FOUND")
        email = accounts["email"]
        if call.method == "POST" and email is None:
            return self._create(body)
        if email not in self.accounts:
            return google_error(404, f"Service account projects/{self.project}/serviceAccounts/{email} "
                                     "does not exist.", "NOT_FOUND")
        if call.method == "GET":
            return 200, self.accounts[email]
        del self.accounts[email]
        return 200, {}

    def _create(self, body: dict) -> tuple[int, dict]:
        account_id = body.get("accountId", "")
        if not (6 <= len(account_id) <= 30 and _ACCOUNT_ID.fullmatch(account_id)):
            return google_error(400, f"Invalid account ID '{account_id}': it must be 6-30 characters "
                                     "and match [a-z]([-a-z0-9]*[a-z0-9]).", "INVALID_ARGUMENT")
        email = f"{account_id}@{self.project}.iam.gserviceaccount.com"
        if email in self.accounts:
            return google_error(409, f"Service account {account_id} already exists within project "
                                     f"projects/{self.project}.", "ALREADY_EXISTS")
        given = body.get("serviceAccount") or {}
        self.accounts[email] = {
            "name": f"projects/{self.project}/serviceAccounts/{email}", "projectId": self.project,
            "uniqueId": str(100000000000000000000 + len(self.accounts)), "email": email,
            "displayName": given.get("displayName", ""), "description": given.get("description", ""),
            "etag": "MDEwMjE5MjA=", "oauth2ClientId": str(200000000000000000000 + len(self.accounts))}
        return 200, self.accounts[email]

    def _policy(self) -> dict:
        return {"version": 1, "etag": self.etag,
                "bindings": [{"role": r, "members": sorted(m)} for r, m in sorted(self.bindings.items()) if m]}

    def _set_policy(self, policy: dict) -> tuple[int, dict]:
        if policy.get("etag") and policy["etag"] != self.etag:
            return google_error(409, "There were concurrent policy changes. Please retry the whole "
                                     "read-modify-write with exponential backoff.", "ABORTED")
        wanted: dict[str, set[str]] = {}
        for binding in policy.get("bindings") or []:
            members = set(binding.get("members") or [])
            if members & {"allUsers", "allAuthenticatedUsers"}:
                return google_error(400, "Project does not support allUsers and allAuthenticatedUsers "
                                         "as members.", "INVALID_ARGUMENT")
            wanted.setdefault(binding["role"], set()).update(members)
        self.bindings = copy.deepcopy(wanted)
        return 200, self._policy()
