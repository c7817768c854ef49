"""gcp:serviceaccount Account and gcp:projects IAMMember: a dedicated node service account and
its role on the project, through the discovery clients google-api-python-client builds from the
documents it ships (iam v1, cloudresourcemanager v1), as the provider calls those APIs; and a
`run --recover` VM's conditional grant on its own group (IAMMember with `condition`).

An IAMMember is a read-modify-write of the whole project policy (getIamPolicy, add or remove
one member, setIamPolicy with the etag read); the provider retries when a concurrent change
makes the etag stale (409 ABORTED), so two members added at once both land.
"""

from __future__ import annotations

import time

from .config import ProviderConfig
from .errors import ProviderError

RMW_ATTEMPTS = 5


def _call(verb: str, what: str, request):
    from googleapiclient.errors import HttpError

    try:
        return request.execute(num_retries=3)  # 429/5xx, as the provider's transport retries
    except HttpError as exc:
        reason = (exc.error_details[0].get("reason") if isinstance(exc.error_details, list)
                  and exc.error_details and isinstance(exc.error_details[0], dict) else None) or ""
        raise ProviderError(f"Error {verb} {what}: googleapi: Error {exc.status_code}: "
                            f"{exc.reason}" + (f", {reason}" if reason else "")) from None


class Account:
    token = "gcp:serviceaccount/account:Account"
    required = ("accountId",)
    replace_on = ("accountId", "project")

    def create(self, config: ProviderConfig, inputs: dict) -> tuple[str, dict]:
        project = inputs.get("project") or config.project
        iam = config.discovery("iam", "iamCustomEndpoint")
        body = {"accountId": inputs["accountId"],
                "serviceAccount": {"displayName": inputs.get("displayName", ""),
                                   "description": inputs.get("description", "")}}
        made = _call("creating", "service account", iam.projects().serviceAccounts().create(
            name=f"projects/{project}", body=body))
        return made["name"], {**inputs, "project": project, "email": made["email"], "name": made["name"],
                              "uniqueId": made["uniqueId"], "member": f"serviceAccount:{made['email']}"}

    def read(self, config: ProviderConfig, resource_id: str, state: dict) -> dict | None:
        from googleapiclient.errors import HttpError

        iam = config.discovery("iam", "iamCustomEndpoint")
        try:
            iam.projects().serviceAccounts().get(name=resource_id).execute()
        except HttpError as exc:
            if exc.status_code == 404:
                return None
            raise
        return state

    def update(self, config, resource_id, olds, news):
        raise ProviderError("this provider double does not update service accounts in place")

    def delete(self, config: ProviderConfig, resource_id: str, state: dict) -> None:
        iam = config.discovery("iam", "iamCustomEndpoint")
        _call("deleting", "service account", iam.projects().serviceAccounts().delete(name=resource_id))


class IAMMember:
    """One member of one role on the project, unconditional or under one IAM condition
    (`condition`: title, description, expression). The provider reads and writes the project
    policy at version 3, the version conditional bindings need ("Any operation that affects
    conditional role bindings must specify version `3`", cloudresourcemanager.v1 Policy.version);
    that the Terraform provider always asks for 3 is as read for this double (unverified). A
    conditional member is its own binding (role + condition), apart from the role's plain one."""

    token = "gcp:projects/iAMMember:IAMMember"
    required = ("project", "role", "member")
    replace_on = ("project", "role", "member", "condition")

    def create(self, config: ProviderConfig, inputs: dict) -> tuple[str, dict]:
        project = inputs.get("project") or config.project
        self._change(config, project, inputs["role"], inputs["member"], _condition(inputs), add=True)
        condition = _condition(inputs)
        suffix = f"/{condition['title']}" if condition else ""
        return f"{project}/{inputs['role']}/{inputs['member']}{suffix}", {**inputs, "project": project}

    def read(self, config: ProviderConfig, resource_id: str, state: dict) -> dict | None:
        policy = self._policy(config, state["project"])
        condition = _condition(state)
        held = any(b["role"] == state["role"] and state["member"] in b.get("members", [])
                   and _condition(b) == condition for b in policy.get("bindings", []))
        return state if held else None

    def update(self, config, resource_id, olds, news):  # every input is ForceNew
        raise ProviderError("IAMMember has no updatable inputs")

    def delete(self, config: ProviderConfig, resource_id: str, state: dict) -> None:
        self._change(config, state["project"], state["role"], state["member"], _condition(state), add=False)

    @staticmethod
    def _policy(config: ProviderConfig, project: str) -> dict:
        crm = config.discovery("cloudresourcemanager", "resourceManagerCustomEndpoint")
        return _call("reading", "IAM policy", crm.projects().getIamPolicy(
            resource=project, body={"options": {"requestedPolicyVersion": 3}}))

    def _change(self, config: ProviderConfig, project: str, role: str, member: str, condition: dict | None,
                add: bool) -> None:
        crm = config.discovery("cloudresourcemanager", "resourceManagerCustomEndpoint")
        for attempt in range(RMW_ATTEMPTS):
            policy = self._policy(config, project)
            bindings = [dict(b, members=list(b.get("members", []))) for b in policy.get("bindings", [])]
            found = next((b for b in bindings if b["role"] == role and _condition(b) == condition), None)
            if found is None and add:
                found = {"role": role, "members": [], **({"condition": condition} if condition else {})}
                bindings.append(found)
            if found is not None:
                members = [m for m in found["members"] if m != member]
                found["members"] = sorted(members + [member]) if add else members
            wanted = {"etag": policy.get("etag"), "version": 3,
                      "bindings": [b for b in bindings if b["members"]]}
            try:
                _call("setting", "IAM policy", crm.projects().setIamPolicy(
                    resource=project, body={"policy": wanted}))
                return
            except ProviderError as exc:
                if "Error 409" not in str(exc) or attempt == RMW_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * 2 ** attempt)  # a concurrent change: read again, apply again


def _condition(holder: dict) -> dict | None:
    """A binding's or an input's condition, its three fields only (None when it has none)."""
    condition = holder.get("condition")
    if not condition:
        return None
    return {k: condition[k] for k in ("title", "description", "expression") if condition.get(k)}
