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
  * "Project does not support `allUsers` and `allAuthenticatedUsers` as `members`";
  * conditional role bindings (Binding.condition, an Expr) and policy versions
    (cloudresourcemanager.v1 Policy.version): "Any operation that affects conditional role
    bindings must specify version `3`. This requirement applies to the following operations: *
    Getting a policy that includes a conditional role binding * Adding a conditional role binding
    to a policy * Changing a conditional role binding in a policy * Removing any role binding,
    with or without a condition, from a policy that includes conditions". A read below version 3
    of a policy with conditions, and a write below 3 that adds, changes or keeps a condition, are
    refused with 400 INVALID_ARGUMENT (the status Google answers is unverified; refusing is the
    strictest reading). "If you omit [the etag], then IAM allows you to overwrite a version `3`
    policy with a version `1` policy, and all of the conditions in the version `3` policy are
    lost": a write with no etag and no condition replaces everything. "If you specify version 3,
    but the policy has no conditional role bindings, the response uses version 1"
    (GetPolicyOptions.requestedPolicyVersion);
  * `allows(member, permission, resource_name)`: whether a binding grants it, conditions
    evaluated for the one form gpuctl writes, `resource.name == "..."` (IAM Conditions' resource
    name attribute, https://cloud.google.com/iam/docs/configuring-resource-based-access); the
    permissions of a role come from the small ROLE_PERMISSIONS table, not from Google.
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
_NAME_IS = re.compile(r'^\s*resource\.name\s*==\s*"(?P<name>[^"]*)"\s*$')
# The few predefined roles tests ask about, and the permissions they are read to hold (a role's
# full list is Google's; only these entries are relied on here).
ROLE_PERMISSIONS = {
    "roles/compute.instanceAdmin.v1": {"compute.instanceGroupManagers.delete", "compute.instanceGroupManagers.get",
                                       "compute.instances.delete", "compute.instances.get"},
}


def _condition_key(condition: dict) -> str:
    return json.dumps({k: condition.get(k, "") for k in ("title", "description", "expression")}, sort_keys=True)


class IamStandIn(LoopbackServer):
    def __init__(self, project: str):
        self.project = project
        self.accounts: dict[str, dict] = {}  # email -> ServiceAccount
        self.bindings: dict[str, set[str]] = {"roles/owner": {"user:owner@example.com"}}
        # (role, the condition as canonical JSON) -> members: the conditional bindings
        self.conditional: dict[tuple[str, str], set[str]] = {}
        self.requests: list[tuple[str, str]] = []
        self.contract_violations: list[str] = []
        self._lock = threading.Lock()

    def members_of(self, role: str) -> set[str]:
        with self._lock:
            return set(self.bindings.get(role, set()))

    def conditional_bindings(self) -> list[dict]:
        """[{"role", "members", "condition"}] as the policy holds them."""
        with self._lock:
            return self._conditional_view()

    def allows(self, member: str, permission: str, resource_name: str) -> bool:
        """Whether a binding of the project policy grants `member` the `permission` on the
        resource named `resource_name` (roles/owner: everything)."""
        def grants(role: str) -> bool:
            return role == "roles/owner" or permission in ROLE_PERMISSIONS.get(role, set())

        with self._lock:
            if any(member in m and grants(r) for r, m in self.bindings.items()):
                return True
            for (role, key), members in self.conditional.items():
                if member in members and grants(role):
                    match = _NAME_IS.match(json.loads(key)["expression"])
                    if match is None:
                        raise AssertionError(f"the stand-in evaluates only resource.name == \"...\", not {key}")
                    if match["name"] == resource_name:
                        return True
        return False

    @property
    def etag(self) -> str:
        canonical = json.dumps({"b": {r: sorted(m) for r, m in sorted(self.bindings.items())},
                                "c": sorted([r, k, sorted(m)] for (r, k), m in self.conditional.items())})
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
            if policy["verb"] == "setIamPolicy":
                return self._set_policy(body.get("policy") or {})
            asked = int((body.get("options") or {}).get("requestedPolicyVersion") or 0)
            if self.conditional and asked < 3:
                return google_error(400, "Requests for policies with any conditional role bindings must "
                                         "specify version 3.", "INVALID_ARGUMENT")
            return 200, self._policy()
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

    def _conditional_view(self) -> list[dict]:
        return [{"role": r, "members": sorted(m),
                 "condition": {f: v for f, v in json.loads(k).items() if v}}  # unset fields left out
                for (r, k), m in sorted(self.conditional.items()) if m]

    def _policy(self) -> dict:
        plain = [{"role": r, "members": sorted(m)} for r, m in sorted(self.bindings.items()) if m]
        conditional = self._conditional_view()
        return {"version": 3 if conditional else 1, "etag": self.etag, "bindings": plain + conditional}

    def _set_policy(self, policy: dict) -> tuple[int, dict]:
        if policy.get("etag") and policy["etag"] != self.etag:
            return google_error(409, "There were concurrent policy changes. Please retry the whole "
                                     "read-modify-write with exponential backoff.", "ABORTED")
        version = int(policy.get("version") or 0)
        if version not in (0, 1, 3):
            return google_error(400, f"Invalid policy version {version}: valid values are 0, 1 and 3.",
                                "INVALID_ARGUMENT")
        wanted: dict[str, set[str]] = {}
        conditional: dict[tuple[str, str], set[str]] = {}
        for binding in policy.get("bindings") or []:
            members = set(binding.get("members") or [])
            if members & {"allUsers", "allAuthenticatedUsers"}:
                return google_error(400, "Project does not support allUsers and allAuthenticatedUsers "
                                         "as members.", "INVALID_ARGUMENT")
            condition = binding.get("condition")
            if condition:
                if not condition.get("expression"):
                    return google_error(400, "A condition needs an expression.", "INVALID_ARGUMENT")
                conditional.setdefault((binding["role"], _condition_key(condition)), set()).update(members)
            else:
                wanted.setdefault(binding["role"], set()).update(members)
        # Below version 3, a write may not add, change or keep a condition; with the etag it read
        # it may not drop them either (only a blind write, no etag, overwrites them).
        if version < 3 and (conditional or (self.conditional and policy.get("etag"))):
            return google_error(400, "Any operation that affects conditional role bindings must specify "
                                     "policy version 3.", "INVALID_ARGUMENT")
        self.bindings = copy.deepcopy(wanted)
        self.conditional = conditional
        return 200, self._policy()
