"""The GKE lifecycle end to end: the real program applied by a test engine through the real
google-cloud-container client into the GKE stand-in, then status, down, and what is left
(nothing). The kubeconfig written, and the kubernetes client running its exec plugin."""

from __future__ import annotations

import base64
import datetime as dt
import json
import stat
from dataclasses import replace

import pytest
import yaml

from gpuctl.adapters.compute import CloudAccessError
from gpuctl.errors import GpuctlError, UsageError
from gpuctl.gke import kube_access
from gpuctl.gke.cluster import GKE_PROJECT, gke_down, gke_status, gke_up
from gpuctl.gke.kubeconfig import kubeconfig_path
from gpuctl.prices.store import bundled_price_book
from gpuctl_infra.gke_spec import GkeSpec, GpuPoolSpec
from tests.standins.container_shapes import TEST_CA_PEM
from tests.gcp_provider.fixtures import stack_state, state_file
from tests.standins.gke_fixtures import PROJECT, gke_api, gke_deps_standin, gke_engine, gke_iam  # noqa: F401

LABELS = {"gpuctl-managed": "true", "gpuctl-owner": "alice", "gpuctl-name": "ml",
          "gpuctl-expiry": "none", "gpuctl-kind": "gke"}
SPEC = GkeSpec(control_plane_cidr="198.51.100.7/32", name="ml", zone="us-central1-a", project=PROJECT, labels=LABELS,
               gpu_pools=(GpuPoolSpec("nvidia-l4", "g2-standard-8", 3),
                          GpuPoolSpec("nvidia-tesla-t4", "n1-standard-8", 2)))


def events():
    seen: list[tuple[str, str]] = []
    return seen, lambda kind, text: seen.append((kind, text))


def mutating(api) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in api.requests if r.method in ("POST", "DELETE")]


# --- up --------------------------------------------------------------------------------------


def test_up_creates_the_cluster_and_pools_in_gke(gke_api, gke_deps_standin, gke_iam):
    result = gke_up(SPEC, gke_deps_standin)
    assert result.cluster.status == "RUNNING"
    assert result.cluster.endpoint == "203.0.113.10"
    stored = gke_api.clusters[(PROJECT, "us-central1-a", "ml")]
    assert stored["resourceLabels"] == LABELS
    assert stored["workloadIdentityConfig"] == {"workloadPool": "my-project-1.svc.id.goog"}
    assert stored["releaseChannel"] == {"channel": "REGULAR"}
    pools = {p["name"]: p for p in stored["nodePools"]}
    assert set(pools) == {"system", "gpu-l4", "gpu-t4"}  # GKE's default pool was removed
    l4 = pools["gpu-l4"]
    assert l4["config"]["spot"] is True
    assert l4["config"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    assert l4["config"]["accelerators"] == [{"acceleratorCount": "1", "acceleratorType": "nvidia-l4",
                                             "gpuDriverInstallationConfig": {"gpuDriverVersion": "DEFAULT"}}]
    # proto3 JSON leaves zeros out, as GKE does: no totalMinNodeCount means 0.
    assert l4["autoscaling"] == {"enabled": True, "totalMaxNodeCount": 3, "locationPolicy": "ANY"}
    assert l4["config"]["resourceLabels"] == LABELS
    assert l4["config"]["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}
    assert pools["system"]["config"]["machineType"] == "e2-standard-2"
    # Secure by default: the control plane answers the caller's address only, Dataplane V2
    # enforces NetworkPolicies, and every node runs as its own least-privilege account.
    assert stored["masterAuthorizedNetworksConfig"] == {
        "enabled": True, "cidrBlocks": [{"cidrBlock": "198.51.100.7/32", "displayName": "gpuctl caller"}]}
    assert stored["networkConfig"]["datapathProvider"] == "ADVANCED_DATAPATH"
    # Checkpoint buckets reach pods through the Cloud Storage FUSE CSI driver.
    assert stored["addonsConfig"] == {"gcsFuseCsiDriverConfig": {"enabled": True}}
    account = f"gpuctl-ml@{PROJECT}.iam.gserviceaccount.com"
    assert {p["config"]["serviceAccount"] for p in pools.values()} == {account}
    assert account in gke_iam.accounts
    assert gke_iam.members_of("roles/container.defaultNodeServiceAccount") == {f"serviceAccount:{account}"}
    assert gke_iam.members_of("roles/owner") == {"user:owner@example.com"}  # the rest of the policy kept
    # The provider's order: cluster, drop the default pool, then pools one at a time.
    assert mutating(gke_api)[:2] == [
        ("POST", "/v1/projects/my-project-1/locations/us-central1-a/clusters"),
        ("DELETE", "/v1/projects/my-project-1/locations/us-central1-a/clusters/ml/nodePools/default-pool")]
    assert gke_deps_standin.engine.list_stacks() == ["gke-ml"]
    # The engine's own record: the cluster and its three pools, under the gcp provider.
    types = [r["type"] for r in stack_state(GKE_PROJECT, "gke-ml")["checkpoint"]["latest"]["resources"]]
    assert types.count("gcp:container/cluster:Cluster") == 1
    assert types.count("gcp:container/nodePool:NodePool") == 3 and "pulumi:providers:gcp" in types


def test_kubeconfig_context_with_endpoint_ca_and_exec_plugin(gke_deps_standin, isolated_home):
    result = gke_up(SPEC, gke_deps_standin)
    path = kubeconfig_path()
    assert result.kubeconfig == path == isolated_home / "kube" / "config"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    config = yaml.safe_load(path.read_text())
    assert config["current-context"] == result.context == "gpuctl-ml"
    (context,) = config["contexts"]
    assert context == {"name": "gpuctl-ml", "context": {"cluster": "gpuctl-ml", "user": "gpuctl-ml",
                                                        "namespace": "default"}}
    (cluster,) = config["clusters"]
    assert cluster["cluster"]["server"] == "https://203.0.113.10"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]).decode() == TEST_CA_PEM
    (user,) = config["users"]
    plugin = user["user"]["exec"]
    assert plugin["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert plugin["command"].endswith("gpuctl") and plugin["args"] == ["gke", "token"]
    assert plugin["interactiveMode"] == "Never"
    assert "token" not in json.dumps(user["user"]).replace('"token"', "")  # no secret in the file


def test_up_keeps_other_kubeconfig_entries(gke_deps_standin):
    path = kubeconfig_path()
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kwok",
        "clusters": [{"name": "kwok", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "kwok", "user": {"token": "x"}}],
        "contexts": [{"name": "kwok", "context": {"cluster": "kwok", "user": "kwok"}}]}))
    gke_up(SPEC, gke_deps_standin)
    config = yaml.safe_load(path.read_text())
    assert [c["name"] for c in config["contexts"]] == ["kwok", "gpuctl-ml"]
    assert config["current-context"] == "kwok"  # never switched behind the user's back
    gke_down("ml", gke_deps_standin)
    config = yaml.safe_load(path.read_text())
    assert [c["name"] for c in config["contexts"]] == ["kwok"]
    assert [u["name"] for u in config["users"]] == ["kwok"]


def test_the_kubernetes_client_runs_the_exec_plugin(gke_deps_standin, isolated_home, monkeypatch):
    """What the workloads side does: load gpuctl's kubeconfig; the client runs `gpuctl gke
    token` as a subprocess (the real installed command), which answers from its token cache."""
    from kubernetes import client, config

    monkeypatch.setenv("GPUCTL_HOME", str(isolated_home))
    gke_up(SPEC, gke_deps_standin)
    expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=50)
    kube_access.cache_token("ya29.cached-token", expiry)
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig_path()), context="gpuctl-ml",
                            client_configuration=configuration)
    assert configuration.host == "https://203.0.113.10"
    assert configuration.api_key.get("BearerToken") == "Bearer ya29.cached-token"
    assert open(configuration.ssl_ca_cert).read() == TEST_CA_PEM


def test_up_twice_converges_without_recreating(gke_api, gke_deps_standin):
    gke_up(SPEC, gke_deps_standin)
    before = mutating(gke_api)
    again = gke_up(SPEC, gke_deps_standin)
    assert mutating(gke_api) == before  # no diff: nothing created or deleted
    assert again.cluster.status == "RUNNING"
    assert len(yaml.safe_load(kubeconfig_path().read_text())["contexts"]) == 1


def test_changed_pool_autoscaling_is_updated_in_place_and_the_cluster_kept(gke_api, gke_deps_standin):
    gke_up(SPEC, gke_deps_standin)
    bigger = replace(SPEC, gpu_pools=(replace(SPEC.gpu_pools[0], max_nodes=5), SPEC.gpu_pools[1]))
    gke_up(bigger, gke_deps_standin)
    stored = gke_api.clusters[(PROJECT, "us-central1-a", "ml")]
    l4 = next(p for p in stored["nodePools"] if p["name"] == "gpu-l4")
    assert l4["autoscaling"]["totalMaxNodeCount"] == 5
    assert sum(1 for m, p in mutating(gke_api) if m == "POST" and p.endswith("/clusters")) == 1
    # The pool was updated, not deleted and created again.
    assert [p.rsplit("/", 1)[-1] for m, p in mutating(gke_api) if "gpu-l4" in p] == ["gpu-l4:setAutoscaling"]


def test_failed_apply_is_rolled_back_and_reported_in_one_line(gke_api, gke_deps_standin):
    gke_api.fail_next(403, "PERMISSION_DENIED", 'Insufficient regional quota to satisfy request: '
                      'resource "GPUS_ALL_REGIONS"', method="POST", path_contains="/nodePools")
    seen, on_event = events()
    with pytest.raises(GpuctlError) as err:
        gke_up(SPEC, gke_deps_standin, on_event)
    assert "creating cluster ml failed" in err.value.message
    assert "GPUS_ALL_REGIONS" in err.value.message and "\n" not in err.value.message
    assert "gpuctl gke down --name ml" in err.value.hint
    assert ("rollback", "removing what was made for ml") in seen
    assert gke_api.clusters == {} and gke_api.igms == {}
    assert gke_deps_standin.engine.resource_count("gke-ml") == 0
    assert not kubeconfig_path().exists()


def test_up_refuses_the_placeholder_project(gke_api, gke_deps_standin):
    with pytest.raises(UsageError) as err:
        gke_up(replace(SPEC, project="your-project-id"), gke_deps_standin)
    assert "GPUCTL_PROJECT" in err.value.hint
    assert gke_api.requests == []


# --- status ----------------------------------------------------------------------------------


def test_status_idle_then_scaled_up(gke_api, gke_deps_standin):
    book = bundled_price_book()
    gke_up(SPEC, gke_deps_standin)
    (idle,) = gke_status(gke_deps_standin, book)
    pools = {p["name"]: p for p in idle["pools"]}
    assert (pools["system"]["nodes"], pools["gpu-l4"]["nodes"], pools["gpu-t4"]["nodes"]) == (1, 0, 0)
    assert (pools["gpu-l4"]["min_nodes"], pools["gpu-l4"]["max_nodes"]) == (0, 3)
    assert idle["usd_per_hour"] == pytest.approx(0.10 + pools["system"]["usd_per_node_hour"], abs=1e-4)
    assert idle["status"] == "RUNNING" and idle["kube_context"] == "gpuctl-ml"

    gke_api.set_pool_size("ml", "gpu-l4", 2)  # the autoscaler at work
    (busy,) = gke_status(gke_deps_standin, book)
    l4 = next(p for p in busy["pools"] if p["name"] == "gpu-l4")
    assert l4["nodes"] == 2
    assert l4["usd_per_hour"] == pytest.approx(2 * l4["usd_per_node_hour"], abs=1e-4)
    assert busy["usd_per_hour"] == pytest.approx(idle["usd_per_hour"] + 2 * l4["usd_per_node_hour"], abs=1e-3)
    # One GKE list call for all locations, one Compute call for every pool's size.
    lists = [r.path for r in gke_api.requests if r.method == "GET" and r.path.endswith(("/clusters", "/instanceGroupManagers"))]
    assert lists[-2:] == ["/v1/projects/my-project-1/locations/-/clusters",
                          "/compute/v1/projects/my-project-1/aggregated/instanceGroupManagers"]


def test_status_ignores_clusters_gpuctl_did_not_make(gke_api, gke_deps_standin):
    from tests.standins.gke_fixtures import container_client

    container_client(gke_api.endpoint).create_cluster(
        parent=f"projects/{PROJECT}/locations/us-central1-b",
        cluster={"name": "theirs", "initial_node_count": 1})
    assert gke_status(gke_deps_standin, bundled_price_book()) == []


def test_status_without_compute_access_shows_unknown_counts(gke_api, gke_deps_standin):
    gke_up(SPEC, gke_deps_standin)
    gke_api.deny_compute()
    (row,) = gke_status(gke_deps_standin, bundled_price_book())
    assert all(p["nodes"] is None for p in row["pools"])
    assert row["usd_per_hour"] is None
    assert any("node counts unknown" in note for note in row["notes"])


def test_status_with_the_api_disabled_names_the_fix(gke_api, gke_deps_standin):
    gke_api.disable_api()
    with pytest.raises(CloudAccessError) as err:
        gke_status(gke_deps_standin, bundled_price_book())
    assert err.value.message == "the Kubernetes Engine API is not enabled in project my-project-1"
    assert "gcloud services enable container.googleapis.com --project my-project-1" in err.value.hint


# --- down ------------------------------------------------------------------------------------


def test_up_status_down_leaves_nothing(gke_api, gke_deps_standin, gke_iam):
    gke_up(SPEC, gke_deps_standin)
    seen, on_event = events()
    result = gke_down("ml", gke_deps_standin, on_event)
    assert result.as_dict() == {"name": "ml", "existed": True, "deleted_directly": False,
                                "context_removed": True, "grants_removed": [], "grants_kept": None}
    assert gke_api.clusters == {} and gke_api.igms == {}
    assert gke_deps_standin.engine.list_stacks() == []
    assert gke_iam.accounts == {}  # the nodes' account and its role went with the cluster
    assert gke_iam.members_of("roles/container.defaultNodeServiceAccount") == set()
    assert yaml.safe_load(kubeconfig_path().read_text())["contexts"] == []
    assert gke_status(gke_deps_standin, bundled_price_book()) == []
    again = gke_down("ml", gke_deps_standin)
    assert (again.existed, again.context_removed) == (False, False)


def test_down_deletes_directly_what_a_lost_stack_left(gke_api, gke_deps_standin):
    gke_up(SPEC, gke_deps_standin)
    state_file(GKE_PROJECT, "gke-ml").write_text("{ not a state file")  # corrupt: destroy fails
    seen, on_event = events()
    result = gke_down("ml", gke_deps_standin, on_event)
    assert result.deleted_directly is True
    assert gke_api.clusters == {}
    assert any(kind == "warn" and "deleting through the GKE API" in text for kind, text in seen)


def test_down_finds_a_cluster_without_a_stack(gke_api, gke_deps_standin):
    gke_up(SPEC, gke_deps_standin)
    state_file(GKE_PROJECT, "gke-ml").unlink()  # the state is gone; the cluster is not
    result = gke_down("ml", gke_deps_standin)
    assert (result.existed, result.deleted_directly) == (True, True)
    assert gke_api.clusters == {}


def test_down_waits_while_the_cluster_is_stopping(gke_api, gke_deps_standin, monkeypatch):
    gke_up(SPEC, gke_deps_standin)
    slow = {"left": 3}
    real_destroy = gke_deps_standin.engine.destroy

    def destroy_that_returns_early(stack, on_output=None):
        # The engine returned while GKE still reports the cluster STOPPING (a timeout upstream).
        gke_api.clusters[(PROJECT, "us-central1-a", "ml")]["status"] = "STOPPING"

    def sleep(seconds):
        slow["left"] -= 1
        if slow["left"] == 0:
            real_destroy("gke-ml")

    monkeypatch.setattr(gke_deps_standin.engine, "destroy", destroy_that_returns_early)
    gke_deps_standin.sleep = sleep
    seen, on_event = events()
    result = gke_down("ml", gke_deps_standin, on_event)
    assert result.deleted_directly is False
    assert sum(1 for kind, _ in seen if kind == "wait") == 3
    assert gke_api.clusters == {}


def test_down_reports_a_cluster_that_will_not_go(gke_api, gke_deps_standin, monkeypatch):
    gke_up(SPEC, gke_deps_standin)
    monkeypatch.setattr(gke_deps_standin.engine, "destroy", lambda stack, on_output=None: None)
    monkeypatch.setattr(gke_deps_standin.container, "delete_cluster", lambda *a, **k: None)
    from gpuctl.gke.cluster import LeftoverError

    with pytest.raises(LeftoverError) as err:
        gke_down("ml", gke_deps_standin)
    assert err.value.message == "cluster ml is still present after down"
    assert "gpuctl gke down --name ml" in err.value.hint
    assert gke_deps_standin.engine.list_stacks() == ["gke-ml"]  # kept, so a rerun finds it


def test_gke_stacks_live_in_their_own_pulumi_project():
    assert GKE_PROJECT == "gpuctl-gke"
