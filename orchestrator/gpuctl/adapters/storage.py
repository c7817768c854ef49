"""The Cloud Storage adapter: the checkpoint bucket a run writes to, and the buckets sweep lists.

A checkpoint lives at gs://BUCKET/PREFIX/<run>/... so it outlives the spot VM that wrote it.
The bucket is the user's (`checkpoints: gs://BUCKET/PREFIX`) or one gpuctl creates per project.
A bucket gpuctl creates is private by construction and cleans up after itself:
  * uniform bucket-level access: IAM alone decides who reads it, no per-object ACLs
    (https://cloud.google.com/storage/docs/uniform-bucket-level-access);
  * public access prevention enforced: nobody can make it public by mistake
    (https://cloud.google.com/storage/docs/public-access-prevention);
  * a lifecycle rule deleting objects older than N days, so an abandoned run's checkpoints stop
    billing on their own (https://cloud.google.com/storage/docs/lifecycle: action Delete,
    condition `age` in days since the object was created);
  * gpuctl's labels, so `gpuctl sweep` finds it (https://cloud.google.com/storage/docs/tags-and-labels).
An existing bucket is used as it is: gpuctl never changes the settings of a bucket it did not make.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from ..errors import GpuctlError
from .compute import CloudAccessError
from .transport import http_timeout_s, is_transport_error, network_error

ENDPOINT_ENV = "GPUCTL_STORAGE_ENDPOINT"  # e.g. a local emulator: http://127.0.0.1:4443
GOOGLE_ENDPOINT = "storage.googleapis.com"
# 30 days: long enough that a run preempted on Friday still resumes after a weekend and its
# checkpoints survive a week of retries, short enough that a forgotten run's checkpoints (often
# tens of GB each) stop billing within a month. Each new checkpoint is a new object, so a run
# that is still going keeps its latest checkpoints however long it runs.
DEFAULT_RETENTION_DAYS = 30
MANAGED_LABELS = {"gpuctl-managed": "true", "gpuctl-kind": "checkpoints"}
# Listing a bucket's objects to size it stops here: sweep wants an order of magnitude, and a
# bucket with more objects than this is already worth a look.
MAX_OBJECTS_SIZED = 10_000


@dataclass(frozen=True)
class CheckpointLocation:
    bucket: str
    prefix: str  # no leading or trailing '/'; '' is the bucket's root

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}" if self.prefix else f"gs://{self.bucket}"

    def for_run(self, run: str) -> "CheckpointLocation":
        """Each run under its own folder, so two runs never overwrite each other's checkpoints."""
        return CheckpointLocation(self.bucket, f"{self.prefix}/{run}" if self.prefix else run)


@dataclass(frozen=True)
class BucketView:
    name: str
    location: str
    labels: dict[str, str] = field(default_factory=dict)
    objects: int = 0
    size_bytes: int = 0
    sized_all: bool = True  # False when listing stopped at MAX_OBJECTS_SIZED


def parse_location(url: str) -> CheckpointLocation:
    from ..validation import gcs_url

    bucket, prefix = gcs_url(url)
    return CheckpointLocation(bucket, prefix)


def default_bucket_name(project: str) -> str:
    """gpuctl's bucket for a project: the same on every run, so reruns reuse it.

    Bucket names are global and public, and Google asks that they carry no project names or
    IDs (https://cloud.google.com/storage/docs/buckets#naming, "Bucket name considerations"), so
    the project enters only as a hash. 'gpuctl-ckpt-' + 24 hex digits = 36 characters: within
    3-63, lowercase letters, digits and '-', starting with a letter, no "goog"."""
    digest = hashlib.sha256(f"gpuctl-checkpoints:{project}".encode()).hexdigest()[:24]
    return f"gpuctl-ckpt-{digest}"


def managed_labels(owner: str) -> dict[str, str]:
    return {**MANAGED_LABELS, "gpuctl-owner": owner}


class BucketPolicyDenied(CloudAccessError):
    """Cloud Storage answered 403 to reading or writing a bucket's IAM policy; `permission` is
    the one the caller lacks (storage.buckets.getIamPolicy or storage.buckets.setIamPolicy)."""

    def __init__(self, bucket: str, permission: str, detail: str = ""):
        super().__init__(f"you may not change who can use gs://{bucket}: {permission} is missing "
                         f"({(detail or 'permission denied')[:160]})",
                         "ask an admin of the bucket for roles/storage.admin on it")
        self.bucket = bucket
        self.permission = permission


class StorageApi:
    """One project's Cloud Storage, through the real google-cloud-storage client."""

    retry_initial_s = 1.0
    retry_timeout_s = 120.0

    def __init__(self, project: str, endpoint: str | None = None, credentials=None):
        self.project = project
        self.endpoint = endpoint or os.environ.get(ENDPOINT_ENV)
        self._credentials = credentials
        self._client = None

    def client(self):
        if self._client is None:
            from google.cloud import storage

            credentials = self._credentials
            if credentials is None and self.endpoint and self.endpoint.startswith("http://127."):
                # A local emulator on loopback takes no credentials (and must never get real ones).
                from google.auth.credentials import AnonymousCredentials

                credentials = AnonymousCredentials()
            options = {"api_endpoint": self.endpoint} if self.endpoint else None
            self._client = storage.Client(project=self.project, credentials=credentials,
                                          client_options=options)
        return self._client

    def _call(self) -> dict:
        """Each request bounded by GPUCTL_HTTP_TIMEOUT; only answers Google calls retryable (429,
        5xx: https://cloud.google.com/storage/docs/retry-strategy) are retried, with backoff.
        A refused or unresolvable endpoint fails at once, as in the Compute adapter."""
        from google.api_core import exceptions, retry

        predicate = retry.if_exception_type(exceptions.TooManyRequests, exceptions.InternalServerError,
                                            exceptions.BadGateway, exceptions.ServiceUnavailable,
                                            exceptions.GatewayTimeout)
        return {"timeout": http_timeout_s(),
                "retry": retry.Retry(predicate=predicate, initial=self.retry_initial_s,
                                     maximum=max(self.retry_initial_s, 16.0), multiplier=2.0,
                                     timeout=self.retry_timeout_s)}

    # -- the checkpoint bucket --------------------------------------------------------------
    def ensure_checkpoints(self, url: str | None, owner: str, location: str,
                           retention_days: int = DEFAULT_RETENTION_DAYS) -> CheckpointLocation:
        """The user's gs:// URL, or gpuctl's bucket for this project; created when missing.
        `location` is where a new bucket lives: the VMs' region, so checkpoints cross no region
        (https://cloud.google.com/storage/docs/locations)."""
        if not 1 <= retention_days <= 3650:
            raise GpuctlError(f"checkpoint retention of {retention_days} days is out of range",
                              "use 1-3650 days (the default is 30)")
        target = parse_location(url) if url else CheckpointLocation(default_bucket_name(self.project), "")
        with self._translated(target.bucket):
            bucket = self.client().lookup_bucket(target.bucket, **self._call())
            if bucket is None:
                self._create(target.bucket, owner, location, retention_days)
        return target

    def require_bucket(self, name: str) -> None:
        """A bucket the user named must exist already: gpuctl grants a VM access to it but never
        creates (or changes) a bucket it was not asked to make."""
        with self._translated(name):
            found = self.client().lookup_bucket(name, **self._call())
        if found is None:
            raise GpuctlError(f"the checkpoint bucket gs://{name} does not exist in project {self.project}",
                              f"create it (`gcloud storage buckets create gs://{name}`), or pass "
                              "--checkpoints auto for gpuctl's own bucket")

    def _create(self, name: str, owner: str, location: str, retention_days: int) -> None:
        from google.api_core import exceptions

        bucket = self.client().bucket(name)
        bucket.labels = managed_labels(owner)
        bucket.iam_configuration.uniform_bucket_level_access_enabled = True
        bucket.iam_configuration.public_access_prevention = "enforced"
        bucket.add_lifecycle_delete_rule(age=retention_days)
        try:
            # https://cloud.google.com/storage/docs/json_api/v1/buckets/insert
            self.client().create_bucket(bucket, project=self.project, location=location, **self._call())
        except exceptions.Conflict:
            # 409: the name exists. Ours (a concurrent `gpuctl run` made it) is fine; another
            # project's is not ours to write to: names are global.
            if self.client().lookup_bucket(name, **self._call()) is None:
                raise GpuctlError(f"the bucket name {name} is taken by another project",
                                  "set `checkpoints: gs://YOUR-BUCKET/PREFIX` in the job spec") from None

    # -- objects ----------------------------------------------------------------------------
    def upload_objects(self, folder: str, objects: dict[str, bytes], last: str | None = None) -> list[str]:
        """Write each object under gs://BUCKET/PREFIX (`folder`), `last` after all the others (a
        reader that finds it finds everything it names); returns the gs:// addresses written.
        A write replaces an object of the same name (https://cloud.google.com/storage/docs/json_api/v1/objects/insert)."""
        location = parse_location(folder)
        written = []
        with self._translated(location.bucket):
            bucket = self.client().bucket(location.bucket)
            for name in sorted(objects, key=lambda n: n == last):
                key = f"{location.prefix}/{name}" if location.prefix else name
                bucket.blob(key).upload_from_string(objects[name], **self._call())
                written.append(f"{location.url}/{name}")
        return written

    def read_object(self, url: str) -> bytes | None:
        """The content of one gs://BUCKET/NAME object; None when there is no such object
        (objects.get answers 404: https://cloud.google.com/storage/docs/json_api/v1/objects/get)."""
        from google.api_core import exceptions

        location = parse_location(url)
        with self._translated(location.bucket):
            try:
                return self.client().bucket(location.bucket).blob(location.prefix).download_as_bytes(
                    **self._call())
            except exceptions.NotFound:
                return None

    def object_tails(self, folder: str, under: str, max_bytes: int) -> dict[str, tuple[bytes, object]]:
        """{name below `folder`: (its last `max_bytes` bytes, when it was last written)} for each
        object under gs://BUCKET/PREFIX/`under`: one listing (objects.list by prefix), then a
        ranged read of each (objects.get alt=media with a Range header,
        https://cloud.google.com/storage/docs/json_api/v1/objects/get)."""
        location = parse_location(folder)
        root = f"{location.prefix}/" if location.prefix else ""
        found = {}
        with self._translated(location.bucket):
            for blob in self.client().list_blobs(location.bucket, prefix=root + under, **self._call()):
                start = max(0, (blob.size or 0) - max_bytes)
                data = blob.download_as_bytes(start=start, **self._call()) if blob.size else b""
                found[blob.name[len(root):]] = (data, blob.updated)
        return found

    # -- sweep ------------------------------------------------------------------------------
    def labelled_buckets(self, labels: dict[str, str] | None = None) -> list[BucketView]:
        """Buckets of this project carrying all of `labels` (gpuctl's by default), each sized.
        buckets.list filters by name prefix only, so labels are matched here
        (https://cloud.google.com/storage/docs/json_api/v1/buckets/list)."""
        wanted = labels or {"gpuctl-managed": "true"}
        found = []
        with self._translated("(list)"):
            for bucket in self.client().list_buckets(project=self.project, **self._call()):
                bucket_labels = dict(bucket.labels or {})
                if all(bucket_labels.get(k) == v for k, v in wanted.items()):
                    found.append(self._sized(bucket.name, bucket.location or "", bucket_labels))
        return sorted(found, key=lambda b: b.name)

    def _sized(self, name: str, location: str, labels: dict[str, str]) -> BucketView:
        objects = size = 0
        for blob in self.client().list_blobs(name, max_results=MAX_OBJECTS_SIZED, **self._call()):
            objects += 1
            size += blob.size or 0
        return BucketView(name, location.lower(), labels, objects, size, objects < MAX_OBJECTS_SIZED)

    def delete_empty_bucket(self, name: str) -> None:
        """Delete a bucket only when it holds nothing: checkpoints are never deleted by sweep
        (Google refuses to delete a non-empty bucket too: 409, buckets/delete)."""
        with self._translated(name):
            self.client().bucket(name).delete(force=False, **self._call())

    # -- bucket IAM ---------------------------------------------------------------------------
    # A read-modify-write of the bucket's whole policy (buckets.getIamPolicy, buckets.setIamPolicy:
    # https://cloud.google.com/storage/docs/json_api/v1/buckets/setIamPolicy), the etag read
    # sent back so that a change made in between is refused rather than overwritten (Policy.etag:
    # "systems are expected to put that etag in the request to setIamPolicy to ensure that their
    # change will be applied to the same version of the policy"). Cloud Storage refuses a stale
    # etag with 412 Precondition Failed (https://cloud.google.com/storage/docs/request-preconditions);
    # IAM's own APIs answer 409 ABORTED: both mean "read again and redo the change".
    # Version 3 is asked for, so a policy holding conditional bindings is read whole and written
    # back whole ("If the optionsRequestedPolicyVersion is for an older version that doesn't
    # support part of the requested IAM policy, the request fails", storage.v1.json).
    iam_attempts = 5

    def add_bucket_member(self, bucket: str, role: str, member: str) -> bool:
        """Bind `member` to `role` on `bucket`; False (and nothing written) when it already is."""
        return self._change_members(bucket, role, member, add=True)

    def remove_bucket_member(self, bucket: str, role: str, member: str) -> bool:
        """Unbind `member` from `role` on `bucket`; False when it was not bound (or the bucket is
        gone: nothing is left to remove)."""
        return self._change_members(bucket, role, member, add=False)

    def _change_members(self, bucket: str, role: str, member: str, *, add: bool) -> bool:
        from google.api_core import exceptions

        with self._translated(bucket):
            handle = self.client().bucket(bucket)
            for _ in range(self.iam_attempts):
                try:
                    policy = handle.get_iam_policy(requested_policy_version=3, **self._call())
                except exceptions.Forbidden as exc:
                    raise BucketPolicyDenied(bucket, "storage.buckets.getIamPolicy", exc.message) from None
                except exceptions.NotFound:
                    if add:
                        raise GpuctlError(f"the checkpoint bucket gs://{bucket} does not exist",
                                          f"create it (`gcloud storage buckets create gs://{bucket}`), "
                                          "or name another in `checkpoints:`") from None
                    return False
                bindings = [dict(b) for b in policy.bindings]
                # Only an unconditional binding grants the role always; a conditional one is left
                # exactly as it is.
                plain = [b for b in bindings if b.get("role") == role and not b.get("condition")]
                held = any(member in b.get("members", ()) for b in plain)
                if held == add:
                    return False
                if add:
                    if plain:
                        plain[0]["members"] = set(plain[0].get("members", ())) | {member}
                    else:
                        bindings.append({"role": role, "members": {member}})
                else:
                    for binding in plain:
                        binding["members"] = set(binding.get("members", ())) - {member}
                    bindings = [b for b in bindings if b.get("members")]
                policy.bindings = bindings
                try:
                    handle.set_iam_policy(policy, **self._call())
                    return True
                except exceptions.Forbidden as exc:
                    raise BucketPolicyDenied(bucket, "storage.buckets.setIamPolicy", exc.message) from None
                except (exceptions.PreconditionFailed, exceptions.Conflict):
                    continue  # changed since it was read: read it again
        raise GpuctlError(f"the IAM policy of gs://{bucket} kept changing while gpuctl changed it "
                          f"({self.iam_attempts} attempts)", "rerun in a minute")

    @contextmanager
    def _translated(self, bucket: str) -> Iterator[None]:
        from google.api_core import exceptions
        from google.auth.exceptions import DefaultCredentialsError

        try:
            yield
        except DefaultCredentialsError:
            raise CloudAccessError("no Google Cloud credentials found (Application Default Credentials)",
                                   "run `gcloud auth application-default login`") from None
        except (exceptions.Forbidden, exceptions.Unauthorized) as exc:
            raise CloudAccessError(f"Cloud Storage refused access to bucket {bucket} in project "
                                   f"{self.project}: {exc.message[:200]}",
                                   "grant your account roles/storage.admin on the project, or "
                                   "name a bucket you can write in `checkpoints:`") from None
        except exceptions.Conflict as exc:
            raise GpuctlError(f"Cloud Storage refused the change to bucket {bucket}: {exc.message[:200]}",
                              "a bucket that still holds objects is never deleted by gpuctl; "
                              "remove them with `gcloud storage rm -r gs://BUCKET/**` first") from None
        except exceptions.GoogleAPICallError as exc:
            raise GpuctlError(f"Cloud Storage failed ({exc.code}) on bucket {bucket}: {exc.message[:200]}",
                              "rerun; report it if it persists") from None
        except Exception as exc:
            if is_transport_error(exc):
                raise network_error(exc, f"Cloud Storage ({self.endpoint or GOOGLE_ENDPOINT})", ENDPOINT_ENV,
                                    endpoint_set=bool(self.endpoint)) from None
            raise
