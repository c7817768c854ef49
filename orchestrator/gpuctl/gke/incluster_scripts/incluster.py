"""The Kubernetes API from inside a pod, on the standard library alone.

The waker (gke/webui_waker.py) runs on the Open WebUI image's own Python, which has no
Kubernetes client, so `Api` speaks HTTPS itself. It makes the four calls the waker and its idle
rule (idle.run_once) need: read and patch one Deployment's scale, read and renew one Lease.
`Api.in_cluster()` uses what the kubelet projects into the pod (the apiserver's address in
KUBERNETES_SERVICE_HOST/PORT; the token, the cluster CA and the namespace in SA_DIR) and re-reads
the token on every call: the kubelet rotates it. Tests point it at a folder holding a token the
test control plane issued to the pod's ServiceAccount, so they run this code as the pod does.

gpuctl itself imports the time helpers below (micro_time, parse_time).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import ssl

# Where the kubelet projects the pod's token, CA and namespace (tests point it elsewhere).
SA_DIR = os.environ.get("GPUCTL_SA_DIR", "/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT = 10.0  # seconds per API call
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """A failed API call: the HTTP status (0 when the apiserver was not reached) and why."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Api:
    """The apiserver at host:port, as the ServiceAccount whose token and CA are in `sa_dir`."""

    def __init__(self, host: str, port: int, sa_dir: str = SA_DIR, timeout: float = TIMEOUT):
        self.host, self.port, self.sa_dir, self.timeout = host, port, sa_dir, timeout
        try:
            self._context = ssl.create_default_context(cafile=f"{sa_dir}/ca.crt")
        except (OSError, ssl.SSLError) as exc:
            raise ApiError(0, f"cannot read the cluster CA in {sa_dir}: {exc}") from None

    @classmethod
    def in_cluster(cls, sa_dir: str | None = None, environ=None) -> "Api":
        env = os.environ if environ is None else environ
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
        if not host or not port or not port.isdigit():
            raise ApiError(0, "KUBERNETES_SERVICE_HOST/PORT are not set: not in a pod")
        return cls(host, int(port), sa_dir or SA_DIR)

    def call(self, method: str, path: str, patch: dict | None = None) -> dict:
        """One request (a merge patch when `patch` is given); the answer as a dict, or ApiError
        with the message the apiserver gave."""
        try:
            with open(f"{self.sa_dir}/token") as handle:
                token = handle.read().strip()
        except OSError as exc:
            raise ApiError(0, f"no ServiceAccount token: {exc}") from None
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        body = None
        if patch is not None:
            body = json.dumps(patch).encode()
            headers["Content-Type"] = MERGE_PATCH
        conn = http.client.HTTPSConnection(self.host, self.port, context=self._context,
                                           timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except OSError as exc:
            raise ApiError(0, str(exc)) from None
        finally:
            conn.close()
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if response.status >= 300:
            message = answer.get("message") if isinstance(answer, dict) else None
            raise ApiError(response.status, message or response.reason)
        if not isinstance(answer, dict):
            raise ApiError(response.status, f"not a JSON object: {raw[:200]!r}")
        return answer

    def read_scale(self, namespace: str, deployment: str) -> dict:
        return self.call("GET", _scale(namespace, deployment))

    def patch_scale(self, namespace: str, deployment: str, patch: dict) -> dict:
        return self.call("PATCH", _scale(namespace, deployment), patch)

    def read_lease(self, namespace: str, name: str) -> dict | None:
        """The Lease, or None if there is none."""
        try:
            return self.call("GET", _lease(namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def patch_lease(self, namespace: str, name: str, patch: dict) -> dict:
        return self.call("PATCH", _lease(namespace, name), patch)


def _scale(namespace: str, deployment: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}/scale"


def _lease(namespace: str, name: str) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"


def micro_time(when: dt.datetime) -> str:
    """Kubernetes MicroTime: RFC 3339 in UTC with microseconds (what a Lease's renewTime takes)."""
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> dt.datetime | None:
    """A Kubernetes Time or MicroTime ('...Z', with or without fractions), as aware UTC."""
    if not text:
        return None
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)


def in_cluster_namespace(default: str = "default") -> str:
    env = os.environ.get("POD_NAMESPACE")
    if env:
        return env
    try:
        with open(f"{SA_DIR}/namespace") as handle:
            return handle.read().strip() or default
    except OSError:
        return default
