"""The kube context `gpuctl gke up` writes, used against a real kube-apiserver.

The GKE stand-in reports the test control plane's address and CA as the cluster's endpoint
and CA, so the kubeconfig `gke up` writes points at a real API server over verified TLS. The
exec plugin (`gpuctl gke token`, run as a subprocess by the kubernetes client) answers with a
bearer token from its cache; here that token is a ServiceAccount's, standing in for the
Google access token GKE would accept. Listing the GKE-shaped nodes proves the whole chain.
"""

from __future__ import annotations

import datetime as dt

import pytest
from kubernetes import client, config

from gpuctl.adapters.container import ContainerApi
from gpuctl.gke import kube_access
from gpuctl.gke.cluster import GkeDeps, gke_down, gke_up
from gpuctl.gke.kubeconfig import kubeconfig_path
from gpuctl_infra.gke_spec import GkeSpec, GpuPoolSpec
from tests.standins.container import ContainerStandIn
from tests.standins.gke_fixtures import gke_iam  # noqa: F401 (fixture)

PROJECT = "my-project-1"
SPEC = GkeSpec(control_plane_cidr="198.51.100.7/32", name="real", zone="us-central1-a", project=PROJECT,
               labels={"gpuctl-managed": "true", "gpuctl-owner": "alice", "gpuctl-name": "real",
                       "gpuctl-expiry": "none", "gpuctl-kind": "gke"},
               gpu_pools=(GpuPoolSpec("nvidia-l4", "g2-standard-8", 2),))


@pytest.fixture
def node_reader_token(k8s_cluster, k8s_namespace):
    """A ServiceAccount allowed to list nodes, and a one-hour token for it."""
    rbac = client.RbacAuthorizationV1Api(k8s_cluster.api_client())
    name = f"gpuctl-node-reader-{k8s_namespace}"
    k8s_cluster.core.create_namespaced_service_account(k8s_namespace, {"metadata": {"name": "reader"}})
    rbac.create_cluster_role({"metadata": {"name": name},
                              "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}]})
    rbac.create_cluster_role_binding({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": k8s_namespace}]})
    answer = k8s_cluster.core.create_namespaced_service_account_token(
        "reader", k8s_namespace, {"spec": {"expirationSeconds": 3600}})
    yield answer.status.token
    rbac.delete_cluster_role_binding(name)
    rbac.delete_cluster_role(name)


def test_gke_up_kubeconfig_reaches_a_real_api_server(k8s_cluster, node_reader_token, real_engine_env,
                                                     gke_iam, monkeypatch):
    from gpuctl.adapters.pulumi_engine import AutomationEngine
    from gpuctl.gke.cluster import GKE_PROJECT

    server = k8s_cluster.server.removeprefix("https://")
    with ContainerStandIn(project=PROJECT, endpoint_ip=server,
                          ca_pem=k8s_cluster.ca_cert.read_text()) as gke:
        monkeypatch.setenv("GPUCTL_CONTAINER_ENDPOINT", gke.endpoint)
        deps = GkeDeps(engine=AutomationEngine(GKE_PROJECT),
                       container=ContainerApi(PROJECT, endpoint=gke.endpoint, compute_endpoint=gke.endpoint),
                       project=PROJECT, sleep=lambda s: None, poll_s=0.01)
        result = gke_up(SPEC, deps)
        kube_access.cache_token(node_reader_token,
                                dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=50))

        api = config.new_client_from_config(config_file=str(kubeconfig_path()), context=result.context)
        nodes = client.CoreV1Api(api).list_node().items
        accelerators = {n.metadata.labels.get("cloud.google.com/gke-accelerator") for n in nodes}
        assert "nvidia-l4" in accelerators  # the KWOK nodes shaped like GKE's spot GPU nodes
        assert api.configuration.host == k8s_cluster.server

        # The token is what authorises: without it the same kubeconfig is refused.
        kube_access.token_cache_path().unlink()
        kube_access.cache_token("not-a-token", dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=50))
        refused = config.new_client_from_config(config_file=str(kubeconfig_path()), context=result.context)
        with pytest.raises(client.ApiException) as err:
            client.CoreV1Api(refused).list_node()
        assert err.value.status == 401

        gke_down("real", deps)
        assert gke.clusters == {}
