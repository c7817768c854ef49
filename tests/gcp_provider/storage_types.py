"""gcp:storage BucketIAMMember: one member of one role on one bucket, as the provider does it.

The Terraform provider under pulumi-gcp (google_storage_bucket_iam_member) is non-authoritative:
it reads the bucket's whole IAM policy (storage.v1 buckets.getIamPolicy, GET b/{bucket}/iam),
adds or removes its one member, and writes the policy back with the etag it read
(buckets.setIamPolicy, PUT b/{bucket}/iam). A write whose etag went stale meanwhile is refused
(412, https://cloud.google.com/storage/docs/request-preconditions); the provider then reads
and applies its change again (its IAM read-modify-write retries conflicts; the exact retry
count is the provider's, unverified here). Every other binding is kept as it was.

The id is the provider's import form "BUCKET ROLE MEMBER" (b/ prefix left out, as it stores it).
"""

from __future__ import annotations

import time

from .config import STORAGE_SUFFIX, ProviderConfig
from .errors import ProviderError

RMW_ATTEMPTS = 5


def _storage(config: ProviderConfig):
    return config.discovery("storage", "storageCustomEndpoint", STORAGE_SUFFIX)


def _execute(verb: str, request):
    from googleapiclient.errors import HttpError

    try:
        return request.execute(num_retries=3)  # 429/5xx, as the provider's transport retries
    except HttpError as exc:
        raise ProviderError(f"Error {verb} IAM policy for storage bucket: googleapi: Error "
                            f"{exc.status_code}: {exc.reason}") from None


class BucketIAMMember:
    token = "gcp:storage/bucketIAMMember:BucketIAMMember"
    required = ("bucket", "role", "member")
    replace_on = ("bucket", "role", "member", "condition")

    def create(self, config: ProviderConfig, inputs: dict) -> tuple[str, dict]:
        etag = self._change(config, inputs["bucket"], inputs["role"], inputs["member"], add=True)
        return _id(inputs), {**inputs, "etag": etag}

    def read(self, config: ProviderConfig, resource_id: str, state: dict) -> dict | None:
        try:
            policy = self._policy(config, state["bucket"])
        except ProviderError as exc:
            if "Error 404" in str(exc):
                return None  # the bucket is gone, and the binding with it
            raise
        held = any(b.get("role") == state["role"] and state["member"] in b.get("members", [])
                   for b in policy.get("bindings", []))
        return {**state, "etag": policy.get("etag")} if held else None

    def update(self, config, resource_id, olds, news):  # every input is ForceNew
        raise ProviderError("BucketIAMMember has no updatable inputs")

    def delete(self, config: ProviderConfig, resource_id: str, state: dict) -> None:
        self._change(config, state["bucket"], state["role"], state["member"], add=False)

    @staticmethod
    def _policy(config: ProviderConfig, bucket: str) -> dict:
        return _execute("retrieving", _storage(config).buckets().getIamPolicy(
            bucket=bucket, optionsRequestedPolicyVersion=1))

    def _change(self, config: ProviderConfig, bucket: str, role: str, member: str, add: bool) -> str:
        for attempt in range(RMW_ATTEMPTS):
            policy = self._policy(config, bucket)
            bindings = [dict(b) for b in policy.get("bindings", [])]
            found = next((b for b in bindings if b.get("role") == role and "condition" not in b), None)
            if found is None and add:
                found = {"role": role, "members": []}
                bindings.append(found)
            if found is not None:
                members = [m for m in found.get("members", []) if m != member]
                found["members"] = members + [member] if add else members
            wanted = {"bindings": [b for b in bindings if b.get("members")], "etag": policy.get("etag")}
            try:
                written = _execute("setting", _storage(config).buckets().setIamPolicy(
                    bucket=bucket, body=wanted))
                return written.get("etag", "")
            except ProviderError as exc:
                if "Error 412" not in str(exc) or attempt == RMW_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * 2 ** attempt)  # a concurrent change: read again, apply again
        raise AssertionError("unreachable")


def _id(inputs: dict) -> str:
    return f"{inputs['bucket']} {inputs['role']} {inputs['member']}"
