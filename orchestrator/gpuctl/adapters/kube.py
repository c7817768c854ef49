"""The Kubernetes adapter: the only module that imports `kubernetes` (lazily, inside functions).

Everything above it works with plain dicts shaped like manifests. Requests go through the
client's ApiClient as raw REST calls, so any object gpuctl renders can be created, applied
(server-side apply), validated (server-side dry run with fieldValidation=Strict), read,
listed, patched and deleted without per-kind model classes. An ApiException or a refused
connection becomes a KubeError with a hint a person can act on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GpuctlError

FIELD_MANAGER = "gpuctl"
UNREACHABLE_HINT = "is the cluster up? gpuctl gke status"
CREDENTIALS_HINT = ("refresh the credentials (gpuctl gke up writes them again), or point "
                    "--kubeconfig/--context at the right cluster")


class KubeError(GpuctlError):
    """The cluster refused or could not be reached."""

    def __init__(self, message: str, hint: str | None = None, status: int | None = None,
                 reason: str | None = None):
        super().__init__(message, hint)
        self.status = status
        self.reason = reason


class KubeUnreachable(KubeError):
    pass


class KubeNotFound(KubeError):
    pass


class KubeConflict(KubeError):
    pass


class KubeInvalid(KubeError):
    """The apiserver rejected an object (422), e.g. an unknown field under Strict validation."""

    exit_code = 2


class KubeConfigError(KubeError):
    exit_code = 2


@dataclass(frozen=True)
class KindInfo:
    plural: str
    namespaced: bool


# The kinds gpuctl creates or reads. A table instead of discovery: one request fewer per
# command, and an object of a kind gpuctl never meant to touch is refused.
KINDS: dict[tuple[str, str], KindInfo] = {
    ("v1", "Namespace"): KindInfo("namespaces", False),
    ("v1", "Node"): KindInfo("nodes", False),
    ("v1", "Pod"): KindInfo("pods", True),
    ("v1", "Service"): KindInfo("services", True),
    ("v1", "Secret"): KindInfo("secrets", True),
    ("v1", "ConfigMap"): KindInfo("configmaps", True),
    ("v1", "ServiceAccount"): KindInfo("serviceaccounts", True),
    ("v1", "Event"): KindInfo("events", True),
    ("apps/v1", "Deployment"): KindInfo("deployments", True),
    ("apps/v1", "ReplicaSet"): KindInfo("replicasets", True),
    ("batch/v1", "Job"): KindInfo("jobs", True),
    ("batch/v1", "CronJob"): KindInfo("cronjobs", True),
    ("rbac.authorization.k8s.io/v1", "Role"): KindInfo("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): KindInfo("rolebindings", True),
    ("coordination.k8s.io/v1", "Lease"): KindInfo("leases", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): KindInfo("networkpolicies", True),
}


def object_path(api_version: str, kind: str, name: str | None = None,
                namespace: str | None = None, subresource: str | None = None) -> str:
    try:
        info = KINDS[(api_version, kind)]
    except KeyError:
        raise KubeError(f"gpuctl does not handle {kind} ({api_version})",
                        "this is a bug in gpuctl's manifests") from None
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if info.namespaced:
        if not namespace:
            raise KubeError(f"{kind} {name or ''} needs a namespace".replace("  ", " "),
                            "pass --namespace")
        base += f"/namespaces/{namespace}"
    path = f"{base}/{info.plural}"
    if name:
        path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
    return path


def describe(obj: dict) -> str:
    meta = obj.get("metadata", {})
    where = f" in namespace {meta['namespace']}" if meta.get("namespace") else ""
    return f"{obj.get('kind', 'object')} {meta.get('name', '?')}{where}"


class Kube:
    """One cluster connection: an ApiClient plus the server and context it points at."""

    def __init__(self, api_client: Any, *, context: str | None = None,
                 kubeconfig: str | None = None):
        self.api_client = api_client
        self.context = context
        self.kubeconfig = kubeconfig
        self.server = api_client.configuration.host

    def close(self) -> None:
        self.api_client.close()

    # --- raw requests ----------------------------------------------------------------------

    def request(self, method: str, path: str, *, body: Any = None, query: list | None = None,
                content_type: str | None = None, timeout: float | None = 60,
                what: str | None = None) -> Any:
        """One REST call; the decoded JSON body (or text), or a KubeError."""
        with self.translate(what or path):
            response = self._call(method, path, body=body, query=query,
                                  content_type=content_type, timeout=timeout)
            data = response.read()
            if not 200 <= response.status <= 299:
                _raise_for(response.status, data, what or path, self.server)
        text = data.decode("utf-8", "replace") if data else ""
        try:
            return json.loads(text) if text else {}
        except ValueError:
            return text

    def stream(self, path: str, *, query: list | None = None, timeout: float | None = None,
               what: str | None = None) -> Iterator[bytes]:
        """A streamed GET (pod logs with follow): chunks as the apiserver sends them."""
        with self.translate(what or path):
            response = self._call("GET", path, query=query, timeout=timeout)
            if not 200 <= response.status <= 299:
                _raise_for(response.status, response.read(), what or path, self.server)
        raw = response.response
        try:
            with self.translate(what or path):
                for chunk in raw.stream(64 * 1024, decode_content=True):
                    if chunk:
                        yield chunk
        finally:
            raw.release_conn()

    def _call(self, method: str, path: str, *, body: Any = None, query: list | None = None,
              content_type: str | None = None, timeout: float | None = 60):
        client = self.api_client
        headers = {"Accept": "application/json, */*"}
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            headers["Content-Type"] = content_type or "application/json"
        request = client.param_serialize(method, path, query_params=list(query or []),
                                         header_params=headers, body=body,
                                         auth_settings=["BearerToken"])
        return client.call_api(*request, _request_timeout=timeout)

    @contextmanager
    def translate(self, what: str):
        """Turn the client's exceptions into KubeErrors naming `what` and the server."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            yield
        except KubeError:
            raise
        except ApiException as exc:
            if not exc.status:  # the client's way of saying the request never got an answer
                raise KubeUnreachable(f"cannot reach the cluster at {self.server}: "
                                      f"{_short_reason(Exception(exc.reason or ''))}",
                                      UNREACHABLE_HINT) from None
            _raise_for(exc.status, exc.body, what, self.server)
        except (Urllib3Error, OSError) as exc:
            raise KubeUnreachable(f"cannot reach the cluster at {self.server}: "
                                  f"{_short_reason(exc)}", UNREACHABLE_HINT) from None

    # --- objects ---------------------------------------------------------------------------

    def create(self, obj: dict, *, dry_run: bool = False) -> dict:
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], namespace=meta.get("namespace"))
        return self.request("POST", path, body=obj, query=_write_query(dry_run),
                            what=describe(obj))

    def apply(self, obj: dict, *, dry_run: bool = False) -> dict:
        """Server-side apply as gpuctl's field manager; gpuctl's fields win conflicts."""
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        query = _write_query(dry_run) + [("fieldManager", FIELD_MANAGER), ("force", "true")]
        return self.request("PATCH", path, body=obj, query=query,
                            content_type="application/apply-patch+yaml", what=describe(obj))

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None,
            *, subresource: str | None = None) -> dict | None:
        """The object, or None when it does not exist."""
        path = object_path(api_version, kind, name, namespace, subresource)
        try:
            return self.request("GET", path, what=f"{kind} {name}")
        except KubeNotFound:
            return None

    def list(self, api_version: str, kind: str, namespace: str | None = None, *,
             label_selector: str | None = None, field_selector: str | None = None) -> list[dict]:
        path = object_path(api_version, kind, namespace=namespace)
        query = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        data = self.request("GET", path, query=query, what=f"{kind} list")
        items = data.get("items") or []
        for item in items:  # a list's items carry neither apiVersion nor kind
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def patch(self, api_version: str, kind: str, name: str, namespace: str | None,
              patch: dict, *, subresource: str | None = None,
              patch_type: str = "application/merge-patch+json", dry_run: bool = False) -> dict:
        path = object_path(api_version, kind, name, namespace, subresource)
        return self.request("PATCH", path, body=patch, query=_write_query(dry_run),
                            content_type=patch_type, what=f"{kind} {name}")

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None, *,
               propagation: str = "Background", grace_seconds: int | None = None,
               dry_run: bool = False) -> bool:
        """True when a delete was accepted, False when there was nothing to delete."""
        path = object_path(api_version, kind, name, namespace)
        body: dict = {"apiVersion": "v1", "kind": "DeleteOptions",
                      "propagationPolicy": propagation}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        if dry_run:
            body["dryRun"] = ["All"]
        try:
            self.request("DELETE", path, body=body, what=f"{kind} {name}")
        except KubeNotFound:
            return False
        return True

    # --- pods ------------------------------------------------------------------------------

    def pod_log(self, namespace: str, pod: str, *, container: str | None = None,
                follow: bool = False, tail_lines: int | None = None) -> Iterator[bytes]:
        query: list = []
        if container:
            query.append(("container", container))
        if follow:
            query.append(("follow", "true"))
        if tail_lines is not None:
            query.append(("tailLines", str(tail_lines)))
        path = object_path("v1", "Pod", pod, namespace, "log")
        return self.stream(path, query=query, timeout=None if follow else 60,
                           what=f"logs of pod {pod}")

    def port_forward(self, namespace: str, pod: str, port: int):
        """A socket-like object connected to `port` inside the pod, through the apiserver."""
        from kubernetes import client
        from kubernetes.stream import portforward

        with self.translate(f"port-forward to pod {pod}"):
            forward = portforward(client.CoreV1Api(self.api_client)
                                  .connect_get_namespaced_pod_portforward,
                                  pod, namespace, ports=str(port))
            return forward.socket(port)

    # --- schemas ---------------------------------------------------------------------------

    def openapi_v3(self, group_version: str) -> dict:
        """The apiserver's OpenAPI v3 document for e.g. "api/v1" or "apis/batch/v1"."""
        index = self.request("GET", "/openapi/v3", what="the OpenAPI index")
        entry = index.get("paths", {}).get(group_version)
        if not entry:
            raise KubeNotFound(f"the apiserver serves no OpenAPI schema for {group_version}",
                               "is the API group enabled on this cluster?")
        url = entry["serverRelativeURL"]
        path, _, query = url.partition("?")
        params = [tuple(p.split("=", 1)) for p in query.split("&") if "=" in p]
        return self.request("GET", path, query=params, what=f"OpenAPI for {group_version}")

    def server_version(self) -> dict:
        return self.request("GET", "/version", what="the server version")


def connect(kubeconfig: str | Path | None = None, context: str | None = None) -> Kube:
    """A Kube for gpuctl's kubeconfig and context (gke/kubeconfig.py decides the defaults)."""
    from ..gke.kubeconfig import kubeconfig_path, selected_context

    path = kubeconfig_path(kubeconfig)
    name = selected_context(context)
    from ..safe_read import present

    if not present(path):
        raise KubeConfigError(f"no kubeconfig at {path}",
                              "run `gpuctl gke up` (it writes gpuctl's kubeconfig), or pass "
                              "--kubeconfig/--context (or set GPUCTL_KUBECONFIG)")
    check_kubeconfig(path)
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    try:
        contexts, _ = config.list_kube_config_contexts(str(path))
    except (ConfigException, OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise KubeConfigError(f"kubeconfig {path} is unreadable: {_short_reason(exc)}",
                              "run `gpuctl gke up` to write it again") from None
    names = [c["name"] for c in contexts or []]
    if name not in names:
        raise KubeConfigError(f"context {name} is not in {path}",
                              f"pass --context (there: {', '.join(names) or 'none'})")
    try:
        api_client = config.new_client_from_config(config_file=str(path), context=name,
                                                   persist_config=False)
    except (ConfigException, OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise KubeConfigError(f"context {name} in {path} is unusable: {_short_reason(exc)}",
                              CREDENTIALS_HINT) from None
    return Kube(api_client, context=name, kubeconfig=str(path))


def check_kubeconfig(path: Path) -> dict:
    """Read the kubeconfig through the safe reader and check its shape before the kubernetes
    library sees it: the library assumes a well-formed mapping (/etc/passwd is valid YAML, a
    string, and crashed it with a TypeError)."""
    from ..safe_read import load_yaml

    hint = "point --kubeconfig (or GPUCTL_KUBECONFIG) at a kubeconfig, or run `gpuctl gke up`"
    data = load_yaml(path, "kubeconfig", KubeConfigError, hint)
    if not isinstance(data, dict):
        raise KubeConfigError(f"kubeconfig {path} is not a kubeconfig (not a mapping)", hint)
    for key in ("clusters", "contexts", "users"):
        entries = data.get(key) or []
        if not isinstance(entries, list) or not all(
                isinstance(e, dict) and isinstance(e.get("name"), str) for e in entries):
            raise KubeConfigError(f"kubeconfig {path}: `{key}` is not a list of named entries",
                                  hint)
    return data


def _write_query(dry_run: bool) -> list:
    query = [("fieldValidation", "Strict")]
    if dry_run:
        query.append(("dryRun", "All"))
    return query


def _status_message(body: Any) -> tuple[str, str | None]:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        status = json.loads(body) if isinstance(body, str) else (body or {})
    except ValueError:
        return (body or "").strip()[:300], None
    if not isinstance(status, dict):
        return str(status)[:300], None
    return status.get("message") or "", status.get("reason")


def _raise_for(code: int, body: Any, what: str, server: str) -> None:
    message, reason = _status_message(body)
    if code == 0:
        raise KubeUnreachable(f"cannot reach the cluster at {server}", UNREACHABLE_HINT)
    if code == 401:
        raise KubeError(f"the cluster at {server} did not accept gpuctl's credentials (401)",
                        CREDENTIALS_HINT, code, reason)
    if code == 403:
        raise KubeError(f"not allowed: {message or what} (403)",
                        "your account needs RBAC permission for this in the namespace; "
                        "check --context", code, reason)
    if code == 404:
        raise KubeNotFound(f"{what} not found", "list what exists with `gpuctl jobs --gke` "
                           "or `gpuctl webui status`", code, reason)
    if code == 409:
        raise KubeConflict(f"{what}: {message or 'already exists'}",
                           "pick another name, or delete the old one first", code, reason)
    if code in (400, 422):  # 400: strict decoding (unknown or duplicate field); 422: invalid
        raise KubeInvalid(f"the cluster rejected {what}: {message}",
                          "this is a bug in gpuctl's manifests if the spec validated; "
                          "please report it", code, reason)
    if code == 500:  # e.g. the apiserver could not reach a node's kubelet for logs
        raise KubeError(f"the cluster could not complete {what}: {message}",
                        "retry; if a node went away (spot), see `gpuctl jobs --gke` or "
                        "`gpuctl gke status`", code, reason)
    if code in (502, 503, 504):
        raise KubeUnreachable(f"the cluster at {server} answered {code} for {what}: {message}",
                              UNREACHABLE_HINT, code, reason)
    raise KubeError(f"{what}: {message or 'request failed'} ({code})",
                    "see `gpuctl gke status`; GPUCTL_DEBUG=1 shows the full error", code, reason)


def _short_reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out",
                   "certificate verify failed", "No route to host"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:200] if text else type(exc).__name__
