"""In front of the emulator: Google's contract for bucket metadata that fake-gcs-server drops.

fake-gcs-server (v1.56.1) stores objects faithfully but reads only `name`, `versioning` and
`defaultEventBasedHold` from a bucket insert (fakestorage/bucket.go, createBucketByPost):
labels, lifecycle, iamConfiguration and location are silently dropped, so a bucket read back
has none, and gpuctl's labels (what `sweep` finds buckets by) could never be tested.

This pass-through proxy fills exactly that gap and nothing else. Every request and response
goes to and from the real emulator byte for byte; on bucket insert/patch it first checks the
JSON body against the Bucket schema of Google's discovery document (storage.v1.json, shipped in
google-api-python-client): an unknown field or a wrong type is refused with 400 as Google
refuses it. Then it keeps the fields the emulator drops and merges them into the emulator's
bucket answers (get, list, insert, patch) as Google returns them. `inserts` records each
accepted insert body so a test can read what the client really sent.

One answer is corrected to Google's: deleting a bucket that holds objects is 409 Conflict
("If there are objects in the bucket when you attempt to delete it you will get a 409 Conflict",
https://cloud.google.com/storage/docs/xml-api/delete-bucket; the JSON API's buckets.delete
"fails if there are any objects in the bucket"); the emulator answers 412.

Bucket IAM policies (storage.v1 buckets.getIamPolicy GET b/{bucket}/iam, buckets.setIamPolicy
PUT b/{bucket}/iam) the emulator does not serve at all; the proxy serves them itself, held to
the Policy schema of storage.v1.json both ways:
  * a new bucket starts with the project's convenience bindings Google gives every bucket
    (roles/storage.legacyBucketOwner for projectOwner:/projectEditor:, legacyBucketReader for
    projectViewer:, https://cloud.google.com/storage/docs/access-control/iam#convenience-values;
    the exact default set is unverified here);
  * setIamPolicy replaces the whole policy; a request carrying an etag that no longer matches
    is refused with 412 Precondition Failed, Cloud Storage's answer to a failed precondition
    (https://cloud.google.com/storage/docs/request-preconditions; "API will reject etags that do
    not match", gcloud storage buckets set-iam-policy --etag). No etag: the write goes through;
  * roles are "of the format roles/storage.specificRole" and members one of the identifier
    forms the schema lists (Policy.bindings, storage.v1.json), or a principal:// / principalSet://
    identifier of IAM's allow policies, which the schema's older list omits but Google lists for
    every allow policy, Kubernetes service accounts of Workload Identity Federation for GKE among
    them (https://cloud.google.com/iam/docs/principal-identifiers): anything else is a 400;
  * faults: `deny(permission)` answers 403 to getIamPolicy (storage.buckets.getIamPolicy) or
    setIamPolicy (storage.buckets.setIamPolicy) as Cloud Storage does to a caller without it;
    `before_next_set(fn)` runs fn(policies) just before the next setIamPolicy is judged: a
    change by someone else in between, which makes the caller's etag stale;
  * a bucket that does not exist (asked of the emulator) is a 404.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from tests.standins import discovery

API = "storage.v1"
KEPT = ("labels", "lifecycle", "iamConfiguration", "location", "storageClass")
BUCKETS = re.compile(r"/storage/v1/b/?")
ONE_BUCKET = re.compile(r"/storage/v1/b/([^/]+)/?")
BUCKET_IAM = re.compile(r"/storage/v1/b/([^/]+)/iam")
MEMBER_FORMS = re.compile(r"(allUsers|allAuthenticatedUsers|(user|serviceAccount|group):[^@\s]+@[^@\s]+"
                          r"|domain:[^\s]+|(projectOwner|projectEditor|projectViewer):[a-z][-a-z0-9]{4,28}[a-z0-9]"
                          # A single identity, or a set, of a workload identity pool (PROJECT_NUMBER: digits)
                          r"|principal://iam\.googleapis\.com/projects/[0-9]+/locations/global/workloadIdentityPools/"
                          r"[a-z0-9][-a-z0-9.]*/subject/[^\s]+"
                          r"|principalSet://iam\.googleapis\.com/projects/[0-9]+/locations/global/workloadIdentityPools/"
                          r"[a-z0-9][-a-z0-9.]*/[^\s]+)")


class BucketPolicies:
    """Each bucket's IAM policy, as Cloud Storage keeps it (see the module's docstring)."""

    def __init__(self, project: str):
        self.project = project
        self.policies: dict[str, dict[str, list[str]]] = {}  # bucket -> role -> members
        self.writes: list[dict] = []  # every accepted setIamPolicy body, in order
        self.denied: set[str] = set()  # storage.buckets.getIamPolicy / setIamPolicy refused (403)
        self.refused: list[int] = []  # the status of every refused setIamPolicy (412, 403, ...)
        self._before_set: list = []

    def deny(self, *permissions: str) -> None:
        self.denied |= set(permissions)

    def before_next_set(self, change) -> None:
        """change(self.policies) runs once, just before the next setIamPolicy is judged."""
        self._before_set.append(change)

    def _default(self) -> dict[str, list[str]]:
        p = self.project
        return {"roles/storage.legacyBucketOwner": [f"projectEditor:{p}", f"projectOwner:{p}"],
                "roles/storage.legacyBucketReader": [f"projectViewer:{p}"]}

    def members(self, bucket: str, role: str) -> list[str]:
        return list(self.policies.get(bucket, {}).get(role, []))

    def forget(self, bucket: str) -> None:
        self.policies.pop(bucket, None)

    def etag(self, bucket: str) -> str:
        canonical = json.dumps(self.policies.get(bucket) or self._default(), sort_keys=True)
        return base64.b64encode(hashlib.sha256(canonical.encode()).digest()[:8]).decode()

    def policy(self, bucket: str) -> dict:
        bindings = self.policies.setdefault(bucket, self._default())
        return {"kind": "storage#policy", "resourceId": f"projects/_/buckets/{bucket}", "version": 1,
                "etag": self.etag(bucket),
                "bindings": [{"role": r, "members": sorted(m)} for r, m in sorted(bindings.items()) if m]}

    def serve(self, verb: str, path: str, body: bytes, bucket_exists: bool) -> tuple[int, dict]:
        bucket = unquote(BUCKET_IAM.fullmatch(path).group(1))
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            return 400, _error(400, "Parse Error")
        method, problems = discovery.request_problems(API, verb, path, payload)
        if problems:
            return (400 if method else 404), _error(400 if method else 404, "; ".join(problems))
        if not bucket_exists:
            return 404, _error(404, "The specified bucket does not exist.", "notFound")
        permission = "storage.buckets.getIamPolicy" if verb == "GET" else "storage.buckets.setIamPolicy"
        if permission in self.denied:
            if verb != "GET":
                self.refused.append(403)
            return 403, _error(403, f"caller does not have {permission} access to the Google Cloud Storage "
                                    f"bucket. Permission '{permission}' denied on resource (or it may not exist).",
                               "forbidden")
        if verb == "GET":
            return 200, self.policy(bucket)
        if self._before_set:
            self.policy(bucket)  # a bucket never read still starts from its defaults
            self._before_set.pop(0)(self.policies)
        current = self.policy(bucket)
        if payload.get("etag") and payload["etag"] != current["etag"]:
            self.refused.append(412)
            return 412, _error(412, "Precondition Failed", "conditionNotMet")
        wanted: dict[str, list[str]] = {}
        for binding in payload.get("bindings") or []:
            role, members = binding.get("role", ""), binding.get("members") or []
            if not role.startswith("roles/"):
                return 400, _error(400, f"Role {role!r} is not of the form roles/storage.specificRole.")
            bad = [m for m in members if not MEMBER_FORMS.fullmatch(m)]
            if bad:
                return 400, _error(400, f"Invalid member: {bad[0]!r}.")
            wanted.setdefault(role, [])
            wanted[role] += [m for m in members if m not in wanted[role]]
        self.policies[bucket] = wanted
        self.writes.append(payload)
        return 200, self.policy(bucket)


class BucketContractProxy:
    def __init__(self, upstream_port: int, project: str = "gpuctl-test-project"):
        self.upstream_port = upstream_port
        self.iam = BucketPolicies(project)
        self.kept: dict[str, dict] = {}  # bucket name -> the fields the emulator drops
        self.inserts: list[dict] = []
        self.authorizations: list[str | None] = []  # each request's Authorization header
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "BucketContractProxy":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what the proxy adds ----------------------------------------------------------------
    def refusal(self, verb: str, path: str, body: bytes) -> dict | None:
        """Google's 400 for a bucket insert/patch body its schema does not allow, else None."""
        if not self._is_bucket_write(verb, path):
            return None
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "Parse Error")
        problems = discovery.check(API, "Bucket", payload)
        return _error(400, "; ".join(problems)) if problems else None

    def remember(self, verb: str, path: str, body: bytes, status: int) -> None:
        if status >= 300:
            return
        with self.lock:
            if self._is_bucket_write(verb, path):
                payload = json.loads(body or b"{}")
                name = payload.get("name") if verb == "POST" else unquote(ONE_BUCKET.fullmatch(path).group(1))
                if verb == "POST":
                    self.inserts.append(payload)
                    self.kept[name] = {}
                kept = {k: payload[k] for k in KEPT if k in payload}
                if "location" in kept:  # Google answers with the location upper-cased
                    kept["location"] = str(kept["location"]).upper()
                self.kept.setdefault(name, {}).update(kept)
            elif verb == "DELETE" and ONE_BUCKET.fullmatch(path):
                self.kept.pop(unquote(ONE_BUCKET.fullmatch(path).group(1)), None)
                self.iam.forget(unquote(ONE_BUCKET.fullmatch(path).group(1)))

    def enrich(self, verb: str, path: str, status: int, data: bytes) -> bytes:
        """Merge the kept fields into the emulator's bucket resources."""
        if status >= 300 or not (BUCKETS.fullmatch(path) or ONE_BUCKET.fullmatch(path)):
            return data
        if verb == "DELETE":
            return data
        try:
            payload = json.loads(data)
        except ValueError:
            return data
        with self.lock:
            resources = payload.get("items", []) if payload.get("kind") == "storage#buckets" else [payload]
            for resource in resources:
                resource.update(self.kept.get(resource.get("name"), {}))
        return json.dumps(payload).encode()

    @staticmethod
    def _is_bucket_write(verb: str, path: str) -> bool:
        return (verb == "POST" and bool(BUCKETS.fullmatch(path))) or \
            (verb in ("PATCH", "PUT") and bool(ONE_BUCKET.fullmatch(path)))


def _error(code: int, message: str, reason: str = "invalid") -> dict:
    # The JSON API's error shape: https://cloud.google.com/storage/docs/json_api/v1/status-codes
    return {"error": {"code": code, "message": message,
                      "errors": [{"domain": "global", "reason": reason, "message": message}]}}


def _handler(proxy: BucketContractProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            verb, path = self.command, urlsplit(self.path).path
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with proxy.lock:
                proxy.authorizations.append(self.headers.get("Authorization"))
            if BUCKET_IAM.fullmatch(path):
                return self._bucket_iam(verb, path, body)
            refusal = proxy.refusal(verb, path, body)
            if refusal is not None:
                return self._send(400, {"Content-Type": "application/json"}, json.dumps(refusal).encode())
            upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
            try:
                # Host passes through: the emulator builds upload session URIs from it, which must
                # come back here too.
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request(verb, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                status = response.status
                if verb == "DELETE" and status == 412 and b"must be empty" in data:
                    status, data = 409, json.dumps(_error(409, "The bucket you tried to delete is not empty.",
                                                          "conflict")).encode()
                proxy.remember(verb, path, body, status)
                data = proxy.enrich(verb, path, status, data)
                skip = ("content-length", "transfer-encoding", "connection")
                self._send(status, {k: v for k, v in response.getheaders() if k.lower() not in skip}, data)
            finally:
                upstream.close()

        def _bucket_iam(self, verb: str, path: str, body: bytes) -> None:
            bucket = BUCKET_IAM.fullmatch(path).group(1)
            upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
            try:
                upstream.request("GET", f"/storage/v1/b/{bucket}")
                response = upstream.getresponse()
                response.read()
                exists = response.status == 200
            finally:
                upstream.close()
            with proxy.lock:
                status, payload = proxy.iam.serve(verb, path, body, exists)
                if status == 200:
                    problems = discovery.check(API, "Policy", payload)
                    if problems:  # the proxy's own defect: never answer outside the contract
                        status, payload = 500, _error(500, "contract proxy defect: " + "; ".join(problems))
            self._send(status, {"Content-Type": "application/json"}, json.dumps(payload).encode())

        def _send(self, status: int, headers: dict, data: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward  # noqa: N815 (http.server names)

        def log_message(self, format: str, *args) -> None:  # keep test output quiet
            pass

    return Handler
