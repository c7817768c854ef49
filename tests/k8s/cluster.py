"""The handle tests get: a running control plane plus helpers for nodes, namespaces, waiting,
and steering what the fake kubelets do with a pod (see stages.py)."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from .controlplane import CONTEXT, ControlPlane
from .nodes import NodeShape, node_manifest
from .stages import OUTCOME_ANNOTATION, OUTCOMES

T = TypeVar("T")

# What add_node gives a node when the test does not say.
DEFAULT_CAPACITY = {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "95Gi"}



def wait_for(check: Callable[[], T], *, timeout: float = 90.0, interval: float = 0.2,
             what: str = "condition") -> T:
    """Call `check` until it returns something truthy, and return that. On timeout raise
    TimeoutError naming `what` and the last value seen, so a failing test says why."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last saw {value!r}")
        time.sleep(interval)

class K8sCluster:
    """`kubeconfig` and `context` reach the cluster as admin; `core` and `batch` are admin
    CoreV1Api/BatchV1Api clients; `logs_dir` holds each component's log for post-mortems."""

    def __init__(self, control_plane: ControlPlane):
        self.control_plane = control_plane
        self.kubeconfig: Path = control_plane.kubeconfig
        self.context: str = CONTEXT
        self.server: str = control_plane.server
        self.logs_dir: Path = control_plane.logs_dir
        self.ca_cert: Path = control_plane.ca_cert
        self._client = self.api_client()
        self.core = client.CoreV1Api(self._client)
        self.batch = client.BatchV1Api(self._client)

    def api_client(self, token: str | None = None) -> client.ApiClient:
        """A new ApiClient: admin (system:masters) by default, or authenticated by a bearer
        token, e.g. a ServiceAccount's, to see what RBAC lets that account do."""
        if token is None:
            return config.new_client_from_config(config_file=str(self.kubeconfig), context=self.context)
        configuration = client.Configuration()
        configuration.host = self.server
        configuration.ssl_ca_cert = str(self.ca_cert)
        configuration.api_key = {"authorization": f"Bearer {token}"}
        return client.ApiClient(configuration)

    # --- waiting ---------------------------------------------------------------------------

    def wait_for(self, check: Callable[[], T], *, timeout: float = 120.0, interval: float = 0.2,
                 what: str = "condition") -> T:
        return wait_for(check, timeout=timeout, interval=interval, what=what)

    # --- nodes -----------------------------------------------------------------------------

    def add_node(self, name: str, labels: dict[str, str] | None = None,
                 taints: Iterable[dict] = (), capacity: dict[str, str] | None = None,
                 allocatable: dict[str, str] | None = None, *, wait_ready: bool = True) -> str:
        """Register a fake node that kwok will run pods on. Taints are dicts with key, value and
        effect; allocatable defaults to capacity. Returns the node name."""
        capacity = dict(capacity or DEFAULT_CAPACITY)
        shape = NodeShape(name, dict(labels or {}), capacity, dict(allocatable or capacity),
                          [dict(t) for t in taints])
        return self.add_node_shape(shape, wait_ready=wait_ready)

    def add_node_shape(self, shape: NodeShape, *, wait_ready: bool = True) -> str:
        self.core.create_node(node_manifest(shape))
        if wait_ready:
            self.wait_nodes_ready([shape.name])
        return shape.name

    def wait_nodes_ready(self, names: Iterable[str], timeout: float = 30.0) -> None:
        pending = set(names)

        def all_ready():
            pending.difference_update({n for n in pending if self.node_ready(n)})
            return not pending

        self.wait_for(all_ready, timeout=timeout, what=f"nodes Ready: {sorted(pending)}")

    def node_ready(self, name: str) -> bool:
        node = self.core.read_node(name)
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

    def delete_node(self, name: str) -> None:
        """Remove a node, as GKE does when a node pool shrinks. Pods still bound to it are
        the pod garbage collector's: it fails them (DisruptionTarget, DeletionByPodGC) and
        deletes them only 40-60 s later, so to reclaim a spot VM quickly use preempt_node."""
        self.core.delete_node(name)

    # --- namespaces ------------------------------------------------------------------------

    def create_namespace(self, hint: str = "test") -> str:
        """A fresh namespace named after `hint`, once its default ServiceAccount exists (pods
        cannot be created before the controller-manager has made it)."""
        slug = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")[:50] or "test"
        name = f"{slug}-{secrets.token_hex(3)}"
        self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        self.wait_for(lambda: self._exists(lambda: self.core.read_namespaced_service_account("default", name)),
                      what=f"the default ServiceAccount in {name}")
        return name

    def delete_namespace(self, name: str, timeout: float = 30.0) -> None:
        """Delete a test's namespace and wait until its pods are gone, so the next test finds
        every GPU free. The namespace itself is left to finish terminating in the background
        (the namespace controller takes seconds more, which tests need not wait for)."""
        try:
            self.core.delete_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        # A terminating namespace admits no new pods, so nothing can replace these; grace 0
        # removes them without waiting for the fake kubelet.
        self.core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
        self.wait_for(lambda: not self.pods(name), timeout=timeout,
                      what=f"the pods of namespace {name} to be deleted")

    @staticmethod
    def _exists(read: Callable[[], object]) -> bool:
        try:
            read()
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # --- steering pods ---------------------------------------------------------------------

    def set_pod_outcome(self, namespace: str, pod_name: str, outcome: str) -> None:
        """Tell the fake kubelet how this one pod ends (succeed, fail, disrupt, hold)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
        self.core.patch_namespaced_pod(
            pod_name, namespace, {"metadata": {"annotations": {OUTCOME_ANNOTATION: outcome}}})

    def preempt_pod(self, namespace: str, pod_name: str) -> None:
        """Reclaim the pod's spot VM: the pod fails with DisruptionTarget, exit code 137."""
        self.set_pod_outcome(namespace, pod_name, "disrupt")

    def preempt_node(self, node_name: str) -> list[str]:
        """Reclaim a spot VM: every running pod on the node is preempted. Returns the pods
        as namespace/name."""
        running = self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={node_name},status.phase=Running").items
        for pod in running:
            self.preempt_pod(pod.metadata.namespace, pod.metadata.name)
        return [f"{pod.metadata.namespace}/{pod.metadata.name}" for pod in running]

    def pods(self, namespace: str, label_selector: str = "") -> list[client.V1Pod]:
        return self.core.list_namespaced_pod(namespace, label_selector=label_selector).items
