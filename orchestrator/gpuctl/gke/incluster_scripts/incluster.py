"""The Kubernetes API from inside a pod, through the official client (`kubernetes`).

The proxy and the idle rule need four calls: read and patch one Deployment's scale, read and
renew one Lease. `Api.in_cluster()` configures the client from what the kubelet projects into
the pod (a token it rotates, the cluster CA, the namespace); the client re-reads the token as
it goes. Tests build the same thing from a folder holding a token the apiserver issued to the
pod's ServiceAccount (`sa_dir`, `environ`), so they run this code path as the pod does.

`kubernetes` is imported inside `Api`: gpuctl itself imports the time helpers below, and
`gpuctl --help` must not pay for the client.
"""

from __future__ import annotations

import datetime as dt
import json
import os

# Where the kubelet projects the pod's token, CA and namespace (tests point it elsewhere).
SA_DIR = os.environ.get("GPUCTL_SA_DIR", "/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT = 10.0  # seconds per API call: a CronJob round has 120 s in all
MERGE_PATCH = "application/merge-patch+json"  # not the client's default (JSON Patch) for a dict


class ApiError(Exception):
    """A failed API call: the HTTP status (0 when the apiserver was not reached) and why."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Api:
    def __init__(self, api_client):
        from kubernetes import client

        self.client = api_client  # for tests that check what the ServiceAccount may not do
        self._apps = client.AppsV1Api(api_client)
        self._leases = client.CoordinationV1Api(api_client)

    @classmethod
    def in_cluster(cls, sa_dir: str | None = None, environ=None) -> "Api":
        """The client as the pod's ServiceAccount: KUBERNETES_SERVICE_HOST/PORT, and the token
        and CA in `sa_dir` (re-read about every minute: the kubelet rotates the token)."""
        from kubernetes import client
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.config.incluster_config import InClusterConfigLoader

        folder = sa_dir or SA_DIR
        configuration = client.Configuration()
        try:
            InClusterConfigLoader(token_filename=f"{folder}/token", cert_filename=f"{folder}/ca.crt",
                                  environ=os.environ if environ is None else environ
                                  ).load_and_set(configuration)
        except ConfigException as exc:
            raise ApiError(0, f"not configured for the cluster: {exc}") from None
        return cls(client.ApiClient(configuration))

    def call(self, method, *args, **kwargs):
        """One client call with its errors as ApiError (the message the apiserver gave)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return method(*args, _request_timeout=TIMEOUT, **kwargs)
        except ApiException as exc:
            message = exc.reason or ""
            try:
                message = json.loads(exc.body).get("message", message)
            except (TypeError, ValueError, AttributeError):
                pass
            raise ApiError(exc.status or 0, message) from None
        except (HTTPError, OSError) as exc:
            raise ApiError(0, str(exc)) from None

    def _plain(self, obj) -> dict:
        # JSON-shaped dicts (times as RFC 3339 strings), as gpuctl's own client returns them:
        # idle.decide and `gpuctl webui status` share one reading of a Lease.
        return self.client.sanitize_for_serialization(obj)

    def read_scale(self, namespace: str, deployment: str) -> dict:
        return self._plain(self.call(self._apps.read_namespaced_deployment_scale, deployment, namespace))

    def patch_scale(self, namespace: str, deployment: str, patch: dict) -> dict:
        return self._plain(self.call(self._apps.patch_namespaced_deployment_scale, deployment,
                                      namespace, patch, _content_type=MERGE_PATCH))

    def read_lease(self, namespace: str, name: str) -> dict | None:
        """The Lease, or None if there is none."""
        try:
            return self._plain(self.call(self._leases.read_namespaced_lease, name, namespace))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def patch_lease(self, namespace: str, name: str, patch: dict) -> dict:
        return self._plain(self.call(self._leases.patch_namespaced_lease, name, namespace, patch,
                                      _content_type=MERGE_PATCH))


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
