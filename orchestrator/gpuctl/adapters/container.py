"""The GKE adapter: the few google-cloud-container calls `gpuctl gke` needs, over REST.

Creating and destroying go through Pulumi (adapters/pulumi_engine.py); this module reads (one
cluster for its endpoint and CA, every cluster for status), deletes a cluster the engine left
behind, and reads node pool sizes. GKE's API has no "current size" for a pool: the autoscaler
sets the target size of the pool's managed instance groups, so sizes come from one Compute
Engine instanceGroupManagers aggregatedList, matched to the pools' instance group URLs.

Client libraries are imported inside methods: `gpuctl --help` must not load them.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

from ..errors import GpuctlError
from .compute import ENDPOINT_ENV as COMPUTE_ENDPOINT_ENV
from .compute import CloudAccessError, last_segment
from .transport import is_transport_error, network_error, per_attempt_timeout

ENDPOINT_ENV = "GPUCTL_CONTAINER_ENDPOINT"  # e.g. a local stand-in: http://127.0.0.1:8086


@dataclass(frozen=True)
class PoolView:
    name: str
    machine_type: str
    spot: bool
    accelerators: tuple[tuple[str, int], ...]  # (type, count) per node
    local_ssds: int
    disk_type: str
    disk_size_gb: int
    min_nodes: int
    max_nodes: int
    status: str
    instance_groups: tuple[str, ...]  # instanceGroupManagers URLs
    nodes: int | None = None  # current size; None when it could not be read

    def as_dict(self) -> dict:
        return {"name": self.name, "machine_type": self.machine_type, "spot": self.spot,
                "accelerators": [{"type": t, "count": c} for t, c in self.accelerators],
                "min_nodes": self.min_nodes, "max_nodes": self.max_nodes, "nodes": self.nodes,
                "status": self.status}


@dataclass(frozen=True)
class ClusterView:
    name: str
    location: str
    status: str  # PROVISIONING RUNNING RECONCILING STOPPING ERROR DEGRADED
    endpoint: str
    ca_certificate: str  # base64 PEM, as kubeconfig's certificate-authority-data wants it
    labels: dict[str, str]
    pools: tuple[PoolView, ...] = field(default_factory=tuple)
    created: str = ""

    def managed_by_gpuctl(self, name: str | None = None) -> bool:
        return (self.labels.get("gpuctl-managed") == "true"
                and (name is None or self.labels.get("gpuctl-name") == name))


class ContainerApi:
    """One project's GKE clusters, through the real client library over REST."""

    retry_initial_s = 1.0
    retry_timeout_s = 120.0

    def __init__(self, project: str, endpoint: str | None = None,
                 compute_endpoint: str | None = None, credentials=None,
                 sleep: Callable[[float], None] = time.sleep):
        self.project = project
        self.endpoint = endpoint or os.environ.get(ENDPOINT_ENV)
        self.compute_endpoint = compute_endpoint or os.environ.get(COMPUTE_ENDPOINT_ENV)
        self._credentials = credentials
        self._sleep = sleep
        self._client = None
        self._igm_client = None

    # -- plumbing -------------------------------------------------------------------------
    def _credentials_for(self, endpoint: str | None):
        if self._credentials is None and endpoint and endpoint.startswith("http://"):
            # Plain HTTP is a local stand-in: never send a Google token in clear text.
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()
        return self._credentials

    def client(self):
        if self._client is None:
            from google.cloud import container_v1

            options = {"api_endpoint": self.endpoint} if self.endpoint else None
            self._client = container_v1.ClusterManagerClient(
                transport="rest", client_options=options,
                credentials=self._credentials_for(self.endpoint))
        return self._client

    def _igms(self):
        if self._igm_client is None:
            from google.cloud import compute_v1

            options = {"api_endpoint": self.compute_endpoint} if self.compute_endpoint else None
            self._igm_client = compute_v1.InstanceGroupManagersClient(
                transport="rest", client_options=options,
                credentials=self._credentials_for(self.compute_endpoint))
        return self._igm_client

    def _retry(self):
        from google.api_core import exceptions, retry

        return retry.Retry(
            predicate=retry.if_exception_type(exceptions.TooManyRequests,
                                              exceptions.ServiceUnavailable,
                                              exceptions.InternalServerError,
                                              exceptions.BadGateway, exceptions.GatewayTimeout),
            initial=self.retry_initial_s, maximum=max(self.retry_initial_s, 16.0), multiplier=2.0,
            timeout=self.retry_timeout_s)

    def _opts(self) -> dict:
        """Per call: the retry above, and a bound on each attempt (GPUCTL_HTTP_TIMEOUT)."""
        return {"retry": self._retry(), "timeout": per_attempt_timeout()}

    def _path(self, location: str, *parts: str) -> str:
        return "/".join(("projects", self.project, "locations", location, *parts))

    # -- reads ----------------------------------------------------------------------------
    def get_cluster(self, location: str, name: str) -> ClusterView | None:
        from google.api_core import exceptions

        with translated(self.project, self.endpoint):
            try:
                found = self.client().get_cluster(name=self._path(location, "clusters", name),
                                                  **self._opts())
            except exceptions.NotFound:
                return None
        return cluster_view(found)

    def list_clusters(self) -> list[ClusterView]:
        """Every cluster in the project, all locations, in one call (location "-")."""
        with translated(self.project, self.endpoint):
            answer = self.client().list_clusters(parent=self._path("-"), **self._opts())
        return [cluster_view(c) for c in answer.clusters]

    def gpuctl_clusters(self, with_sizes: bool = True) -> list[ClusterView]:
        clusters = [c for c in self.list_clusters() if c.managed_by_gpuctl()]
        if with_sizes and clusters:
            sizes = self.group_sizes()
            clusters = [with_pool_sizes(c, sizes) for c in clusters]
        return clusters

    def group_sizes(self) -> dict[tuple[str, str], int] | None:
        """(zone, instance group manager) -> target size, for every zone in one call; None
        when Compute Engine cannot be read (status then shows sizes as unknown)."""
        from google.api_core import exceptions
        from google.cloud import compute_v1

        request = compute_v1.AggregatedListInstanceGroupManagersRequest(project=self.project,
                                                                        max_results=500)
        try:
            with translated(self.project, self.compute_endpoint):
                pager = self._igms().aggregated_list(request=request, **self._opts())
                return {(last_segment(igm.zone), igm.name): int(igm.target_size)
                        for _, scoped in pager for igm in scoped.instance_group_managers}
        except (GpuctlError, exceptions.GoogleAPICallError):
            return None

    # -- delete ---------------------------------------------------------------------------
    def delete_cluster(self, location: str, name: str, timeout_s: float = 1800.0,
                       poll_s: float = 10.0) -> None:
        """Delete a cluster and wait for the operation; gone already is fine."""
        from google.api_core import exceptions

        with translated(self.project, self.endpoint):
            try:
                operation = self.client().delete_cluster(
                    name=self._path(location, "clusters", name), **self._opts())
            except exceptions.NotFound:
                return
            self.wait(location, operation.name, timeout_s, poll_s)

    def wait(self, location: str, operation: str, timeout_s: float, poll_s: float) -> None:
        """Poll an operation to DONE; counts polls so tests with a no-op sleep still end."""
        from google.cloud import container_v1

        done = container_v1.Operation.Status.DONE
        for _ in range(max(1, int(timeout_s / max(poll_s, 0.001))) + 1):
            op = self.client().get_operation(name=self._path(location, "operations", operation),
                                             **self._opts())
            if op.status == done:
                if op.error and op.error.message:
                    raise GpuctlError(f"GKE operation {operation} failed: {op.error.message}",
                                      "see the cluster's page in the Cloud Console")
                return
            self._sleep(poll_s)
        raise GpuctlError(f"GKE operation {operation} did not finish in {timeout_s:.0f}s",
                          "it goes on server side; rerun the command to check again")


# --- conversion (pure) -----------------------------------------------------------------------


def cluster_view(cluster) -> ClusterView:
    from google.cloud import container_v1

    return ClusterView(
        name=cluster.name, location=cluster.location or cluster.zone,
        status=container_v1.Cluster.Status(cluster.status).name,
        endpoint=cluster.endpoint, ca_certificate=cluster.master_auth.cluster_ca_certificate,
        labels=dict(cluster.resource_labels), pools=tuple(pool_view(p) for p in cluster.node_pools),
        created=cluster.create_time)


def pool_view(pool) -> PoolView:
    from google.cloud import container_v1

    config, scaling = pool.config, pool.autoscaling
    total = bool(scaling.total_max_node_count)
    ephemeral = config.ephemeral_storage_local_ssd_config.local_ssd_count
    return PoolView(
        name=pool.name, machine_type=config.machine_type, spot=bool(config.spot or config.preemptible),
        accelerators=tuple((a.accelerator_type, int(a.accelerator_count)) for a in config.accelerators),
        local_ssds=int(ephemeral or config.local_ssd_count), disk_type=config.disk_type,
        disk_size_gb=int(config.disk_size_gb),
        min_nodes=int(scaling.total_min_node_count if total else scaling.min_node_count),
        max_nodes=int(scaling.total_max_node_count if total else scaling.max_node_count),
        status=container_v1.NodePool.Status(pool.status).name,
        instance_groups=tuple(pool.instance_group_urls))


def with_pool_sizes(cluster: ClusterView, sizes: dict[tuple[str, str], int] | None) -> ClusterView:
    def size(pool: PoolView) -> int | None:
        if sizes is None:
            return None
        keys = [(_zone_of(url), last_segment(url)) for url in pool.instance_groups]
        return sum(sizes.get(key, 0) for key in keys)

    return replace(cluster, pools=tuple(replace(p, nodes=size(p)) for p in cluster.pools))


def _zone_of(url: str) -> str:
    parts = url.split("/")
    return parts[parts.index("zones") + 1] if "zones" in parts else ""


# --- errors ----------------------------------------------------------------------------------


@contextmanager
def translated(project: str, endpoint: str | None = None) -> Iterator[None]:
    """google.api_core / google.auth errors -> gpuctl errors a user can act on."""
    from google.api_core import exceptions
    from google.auth import exceptions as auth_exceptions

    try:
        yield
    except auth_exceptions.DefaultCredentialsError:
        raise CloudAccessError("no Google Cloud credentials found (Application Default Credentials)",
                               "run `gcloud auth application-default login`") from None
    except auth_exceptions.RefreshError as exc:
        raise CloudAccessError(f"Google Cloud credentials were refused: {exc}",
                               "run `gcloud auth application-default login` again") from None
    except exceptions.Forbidden as exc:
        raise forbidden_error(exc, project) from None
    except exceptions.Unauthorized as exc:
        raise CloudAccessError(f"Google Cloud rejected the credentials: {exc.message}",
                               "run `gcloud auth application-default login`") from None
    except (exceptions.TooManyRequests, exceptions.ServiceUnavailable,
            exceptions.InternalServerError) as exc:
        raise GpuctlError(f"the GKE API kept answering {exc.code} after retries",
                          "wait a minute and rerun; nothing was changed by this call") from None
    except exceptions.RetryError as exc:
        raise GpuctlError(f"the GKE API did not answer in time: {exc}", "wait a minute and rerun") from None
    except exceptions.GoogleAPICallError as exc:
        raise GpuctlError(f"the GKE API failed ({exc.code}): {exc.message}",
                          "rerun; report it if it persists") from None
    except Exception as exc:
        # DNS, refused, timeout, TLS (requests/urllib3, or google-auth's token refresh).
        if is_transport_error(exc):
            where = endpoint or "container.googleapis.com"
            raise network_error(exc, f"the GKE API ({where})", ENDPOINT_ENV,
                                endpoint_set=endpoint is not None) from None
        raise


def forbidden_error(exc, project: str) -> CloudAccessError:
    reasons = {getattr(d, "reason", None) for d in getattr(exc, "details", None) or []}
    text = str(exc)
    if "SERVICE_DISABLED" in reasons or any(word in text for word in (
            "SERVICE_DISABLED", "has not been used in project", "is disabled")):
        return CloudAccessError(f"the Kubernetes Engine API is not enabled in project {project}",
                                "run `gcloud services enable container.googleapis.com "
                                f"--project {project}` and wait a minute")
    return CloudAccessError(f"permission denied in project {project}: {exc.message}",
                            "grant your account roles/container.admin (and "
                            "roles/iam.serviceAccountUser for the node service account)")
