"""A tiny Kubernetes API client for scripts that run inside the cluster (standard library only).

The Web UI's proxy and idle rule run from a ConfigMap in a stock Python image, so they
cannot import the `kubernetes` package (or gpuctl). In a pod, `Api.in_cluster()` uses the
service account token the kubelet projects (re-read on every call: it rotates); tests build
an `Api` for a real apiserver with a token issued to the same ServiceAccount.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import ssl
import urllib.error
import urllib.request

# Where the kubelet projects the pod's token, CA and namespace (tests point it elsewhere).
SA_DIR = os.environ.get("GPUCTL_SA_DIR", "/var/run/secrets/kubernetes.io/serviceaccount")


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Api:
    def __init__(self, server: str, *, token: str | None = None, token_file: str | None = None,
                 ca_file: str | None = None, timeout: float = 10.0):
        self.server = server.rstrip("/")
        self._token = token
        self._token_file = token_file
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=ca_file) if ca_file else None

    @classmethod
    def in_cluster(cls) -> "Api":
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        return cls(f"https://{host}:{port}", token_file=f"{SA_DIR}/token",
                   ca_file=f"{SA_DIR}/ca.crt")

    def token(self) -> str | None:
        if self._token_file:
            with open(self._token_file) as handle:
                return handle.read().strip()
        return self._token

    def request(self, method: str, path: str, body: dict | None = None,
                content_type: str = "application/json") -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type)
        token = self.token()
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._ssl) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            try:
                text = json.loads(text).get("message", text)
            except (ValueError, AttributeError):
                pass
            raise ApiError(exc.code, text) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(0, str(getattr(exc, "reason", exc))) from None
        return json.loads(payload) if payload else {}

    def get(self, path: str) -> dict:
        return self.request("GET", path)

    def merge_patch(self, path: str, patch: dict) -> dict:
        return self.request("PATCH", path, patch, "application/merge-patch+json")


def lease_path(namespace: str, name: str) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"


def scale_path(namespace: str, deployment: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}/scale"


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
