"""The GKE adapter and the GKE stand-in, both through the real google-cloud-container client
over REST: reads, deletes with operations, retries, and every fault becoming a gpuctl error
with a hint. Plus the ADC token adapter with google.auth.default replaced at that boundary."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
from google.api_core import exceptions
from google.cloud import container_v1

from gpuctl.adapters.compute import CloudAccessError
from gpuctl.adapters.container import ContainerApi
from gpuctl.errors import GpuctlError
from tests.standins.gke_fixtures import container_client
from tests.standins.gke_fixtures import PROJECT, gke_api  # noqa: F401

ZONE = "us-central1-a"
PARENT = f"projects/{PROJECT}/locations/{ZONE}"
LABELS = {"gpuctl-managed": "true", "gpuctl-name": "ml"}


def api_for(standin, **kwargs) -> ContainerApi:
    api = ContainerApi(PROJECT, endpoint=standin.endpoint, compute_endpoint=standin.endpoint,
                       sleep=lambda s: None, **kwargs)
    api.retry_initial_s, api.retry_timeout_s = 0.01, 1.0
    return api


def make_cluster(standin, name="ml", zone=ZONE, labels=LABELS, pools=None):
    client = container_client(standin.endpoint)
    cluster = {"name": name, "resource_labels": labels}
    if pools:
        cluster["node_pools"] = pools
    else:
        cluster["initial_node_count"] = 1
    op = client.create_cluster(parent=f"projects/{PROJECT}/locations/{zone}", cluster=cluster)
    while client.get_operation(name=f"projects/{PROJECT}/locations/{zone}/operations/{op.name}").status != container_v1.Operation.Status.DONE:
        pass
    return client


# --- reads -----------------------------------------------------------------------------------


def test_get_cluster_reads_endpoint_ca_labels_and_pools(gke_api):
    make_cluster(gke_api, pools=[{
        "name": "gpu-l4", "initial_node_count": 0,
        "autoscaling": {"total_min_node_count": 0, "total_max_node_count": 3, "location_policy": "ANY"},
        "config": {"machine_type": "g2-standard-8", "spot": True, "disk_size_gb": 100,
                   "ephemeral_storage_local_ssd_config": {"local_ssd_count": 1},
                   "accelerators": [{"accelerator_type": "nvidia-l4", "accelerator_count": 1}]}}])
    view = api_for(gke_api).get_cluster(ZONE, "ml")
    assert (view.name, view.location, view.status, view.endpoint) == ("ml", ZONE, "RUNNING", "203.0.113.10")
    assert view.ca_certificate and view.labels == LABELS and view.managed_by_gpuctl("ml")
    (pool,) = view.pools
    assert (pool.name, pool.machine_type, pool.spot, pool.accelerators) == (
        "gpu-l4", "g2-standard-8", True, (("nvidia-l4", 1),))
    assert (pool.min_nodes, pool.max_nodes, pool.local_ssds, pool.disk_size_gb) == (0, 3, 1, 100)
    assert pool.instance_groups[0].endswith("-grp") and pool.nodes is None


def test_missing_cluster_is_none(gke_api):
    assert api_for(gke_api).get_cluster(ZONE, "nope") is None
    assert gke_api.requests[-1].path == f"/v1/{PARENT}/clusters/nope"


def test_list_is_one_call_for_every_location_and_keeps_gpuctl_clusters(gke_api):
    make_cluster(gke_api, "ml", "us-central1-a")
    make_cluster(gke_api, "tokyo", "asia-northeast1-a", labels={"gpuctl-managed": "true", "gpuctl-name": "tokyo"})
    make_cluster(gke_api, "theirs", "us-central1-b", labels={"team": "web"})
    before = len(gke_api.requests)
    found = api_for(gke_api).gpuctl_clusters(with_sizes=False)
    assert sorted(c.name for c in found) == ["ml", "tokyo"]
    assert [r.path for r in gke_api.requests[before:]] == [f"/v1/projects/{PROJECT}/locations/-/clusters"]


def test_pool_sizes_come_from_the_instance_groups(gke_api):
    make_cluster(gke_api)
    gke_api.set_pool_size("ml", "default-pool", 4)
    (cluster,) = api_for(gke_api).gpuctl_clusters()
    assert [p.nodes for p in cluster.pools] == [4]
    assert gke_api.clusters[(PROJECT, ZONE, "ml")]["currentNodeCount"] == 4


def test_transient_errors_are_retried(gke_api):
    make_cluster(gke_api)
    gke_api.fail_next(503, "UNAVAILABLE", "The service is currently unavailable.", times=2)
    assert api_for(gke_api).get_cluster(ZONE, "ml").name == "ml"
    assert sum(1 for r in gke_api.requests if r.path == f"/v1/{PARENT}/clusters/ml") == 3


def test_lasting_503_becomes_one_error(gke_api):
    gke_api.fail_next(503, "UNAVAILABLE", "The service is currently unavailable.", times=10**6)
    with pytest.raises(GpuctlError) as err:
        api_for(gke_api).list_clusters()
    assert "did not answer in time" in err.value.message or "503" in err.value.message
    assert "wait a minute" in err.value.hint


def test_injected_404_on_get_reads_as_gone(gke_api):
    make_cluster(gke_api)
    gke_api.fail_next(404, "NOT_FOUND", "Not found: cluster ml.", method="GET", path_contains="/clusters/ml")
    assert api_for(gke_api).get_cluster(ZONE, "ml") is None
    assert api_for(gke_api).get_cluster(ZONE, "ml") is not None  # only the next one failed


# --- faults become errors with hints ---------------------------------------------------------


def test_api_disabled(gke_api):
    gke_api.disable_api()
    with pytest.raises(CloudAccessError) as err:
        api_for(gke_api).get_cluster(ZONE, "ml")
    assert err.value.message == f"the Kubernetes Engine API is not enabled in project {PROJECT}"
    assert f"gcloud services enable container.googleapis.com --project {PROJECT}" in err.value.hint
    assert err.value.exit_code == 3


def test_permission_denied(gke_api):
    gke_api.fail_next(403, "PERMISSION_DENIED", "Required \"container.clusters.list\" permission.")
    with pytest.raises(CloudAccessError) as err:
        api_for(gke_api).list_clusters()
    assert "permission denied in project my-project-1" in err.value.message
    assert "container.clusters.list" in err.value.message
    assert "roles/container.admin" in err.value.hint


def test_unreachable_endpoint_names_the_variable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = ContainerApi(PROJECT, endpoint=f"http://127.0.0.1:{port}")
    api.retry_initial_s, api.retry_timeout_s = 0.01, 0.5
    with pytest.raises(GpuctlError) as err:
        api.list_clusters()
    assert f"127.0.0.1:{port}" in err.value.message
    assert "GPUCTL_CONTAINER_ENDPOINT" in err.value.hint


def test_stand_in_requests_carry_no_credentials(gke_api):
    api_for(gke_api).list_clusters()
    assert all(r.authorization is None for r in gke_api.requests)


# --- delete ----------------------------------------------------------------------------------


def test_delete_waits_for_the_operation(gke_api):
    make_cluster(gke_api)
    api_for(gke_api).delete_cluster(ZONE, "ml", timeout_s=1.0, poll_s=0.01)
    assert gke_api.clusters == {} and gke_api.igms == {}
    polls = [r for r in gke_api.requests if "/operations/" in r.path]
    assert len(polls) >= gke_api.operation_polls


def test_delete_of_a_missing_cluster_is_fine(gke_api):
    api_for(gke_api).delete_cluster(ZONE, "gone", timeout_s=1.0, poll_s=0.01)


def test_delete_that_never_finishes_is_an_error(gke_api):
    make_cluster(gke_api)
    gke_api.operation_polls = 10**6
    with pytest.raises(GpuctlError) as err:
        api_for(gke_api).delete_cluster(ZONE, "ml", timeout_s=0.05, poll_s=0.01)
    assert "did not finish" in err.value.message and "rerun" in err.value.hint


# --- the stand-in refuses what GKE refuses -----------------------------------------------------


def test_standin_refusals(gke_api):
    client = container_client(gke_api.endpoint)
    with pytest.raises(exceptions.BadRequest, match="initial_node_count"):
        client.create_cluster(parent=PARENT, cluster={"name": "ml"})
    with pytest.raises(exceptions.BadRequest, match="svc.id.goog"):
        client.create_cluster(parent=PARENT, cluster={
            "name": "ml", "initial_node_count": 1,
            "workload_identity_config": {"workload_pool": "other.svc.id.goog"}})
    make_cluster(gke_api)
    with pytest.raises(exceptions.Conflict):
        client.create_cluster(parent=PARENT, cluster={"name": "ml", "initial_node_count": 1})
    with pytest.raises(exceptions.BadRequest, match="does not exist in zone us-central1-f"):
        make_cluster(gke_api, "f", "us-central1-f", pools=[{
            "name": "p", "config": {"accelerators": [{"accelerator_type": "nvidia-l4", "accelerator_count": 1}]}}])
    client.delete_cluster(name=f"{PARENT}/clusters/ml")  # an operation now runs on the cluster
    with pytest.raises(exceptions.BadRequest, match="incompatible operation|RUNNING cluster"):
        client.create_node_pool(parent=f"{PARENT}/clusters/ml", node_pool={"name": "p2"})


# --- the ADC token ---------------------------------------------------------------------------


class FakeCredentials:
    def __init__(self, token="ya29.fresh", expiry=dt.datetime(2026, 11, 23, 4, 0)):
        self.token, self.expiry, self.refreshed = None, None, 0
        self._token, self._expiry = token, expiry

    def refresh(self, request):
        self.refreshed += 1
        self.token, self.expiry = self._token, self._expiry


def test_access_token_from_adc(monkeypatch):
    import google.auth

    from gpuctl.adapters.gcp_token import access_token

    creds = FakeCredentials()
    seen = {}

    def default(scopes=None):
        seen["scopes"] = scopes
        return creds, "my-project-1"

    monkeypatch.setattr(google.auth, "default", default)
    token = access_token()
    assert token.token == "ya29.fresh" and creds.refreshed == 1
    assert token.expiry == dt.datetime(2026, 11, 23, 4, 0, tzinfo=dt.timezone.utc)
    assert "https://www.googleapis.com/auth/cloud-platform" in seen["scopes"]


def test_no_adc_is_a_cloud_access_error(monkeypatch):
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    from gpuctl.adapters.gcp_token import access_token

    def default(scopes=None):
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google.auth, "default", default)
    with pytest.raises(CloudAccessError) as err:
        access_token()
    assert "gcloud auth application-default login" in err.value.hint
