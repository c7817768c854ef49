"""The GKE Pulumi program under pulumi.runtime.set_mocks: the inputs every resource receives,
and the GKE rules that stop a bad spec before anything is registered."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuctl.errors import RuleViolation
from gpuctl_infra import gke_rules
from gpuctl_infra.catalog import GPUS, MACHINES, REGIONS
from gpuctl_infra.gke import GkeCluster
from gpuctl_infra.gke_spec import ACCELERATORS, PROJECT_PLACEHOLDER, GkeSpec, GpuPoolSpec
from gpuctl_infra.mock_run import run_under_mocks

LABELS = {"gpuctl-managed": "true", "gpuctl-owner": "alice", "gpuctl-name": "ml",
          "gpuctl-expiry": "none"}
CLUSTER = "gcp:container/cluster:Cluster"
POOL = "gcp:container/nodePool:NodePool"
L4 = GpuPoolSpec("nvidia-l4", "g2-standard-8", 3)
T4 = GpuPoolSpec("nvidia-tesla-t4", "n1-standard-8", 2)
A100 = GpuPoolSpec("nvidia-tesla-a100", "a2-highgpu-1g", 1)


def spec(**changes) -> GkeSpec:
    base = GkeSpec(name="ml", zone="us-central1-a", project="my-project-1", gpu_pools=(L4, T4),
                   labels=LABELS)
    return replace(base, **changes)


def planned(gke: GkeSpec) -> dict[str, tuple[str, dict]]:
    return {r.name: (r.type, r.inputs) for r in run_under_mocks(lambda: GkeCluster(gke))
            if r.type.startswith("gcp:")}  # the component shares the cluster's name


def inputs_of(gke: GkeSpec, name: str, typ: str) -> dict:
    found_type, inputs = planned(gke)[name]
    assert found_type == typ
    return inputs


# --- what each resource receives -----------------------------------------------------------


def test_resources_and_their_deterministic_names():
    found = [(r.type, r.name) for r in run_under_mocks(lambda: GkeCluster(spec()))]
    assert sorted(found) == [("gcp:container/cluster:Cluster", "ml"), (POOL, "ml-gpu-l4"),
                             (POOL, "ml-gpu-t4"), (POOL, "ml-system"),
                             ("gcp:projects/iAMMember:IAMMember", "ml-nodes-role"),
                             ("gcp:serviceaccount/account:Account", "ml-nodes"), ("gpuctl:gke:GkeCluster", "ml")]
    # Pools register concurrently under the engine, so only the set (not the order) is fixed.
    assert sorted(found) == sorted((r.type, r.name) for r in run_under_mocks(lambda: GkeCluster(spec())))


def test_secure_by_default_control_plane_dataplane_v2_and_a_node_account_of_its_own():
    secured = replace(spec(), control_plane_cidr="198.51.100.7/32")
    cluster = inputs_of(secured, "ml", CLUSTER)
    assert cluster["masterAuthorizedNetworksConfig"] == {
        "cidrBlocks": [{"cidrBlock": "198.51.100.7/32", "displayName": "gpuctl caller"}]}
    assert cluster["datapathProvider"] == "ADVANCED_DATAPATH"
    assert cluster["addonsConfig"] == {"gcsFuseCsiDriverConfig": {"enabled": True}}
    assert cluster["enableShieldedNodes"] is True
    account = inputs_of(secured, "ml-nodes", "gcp:serviceaccount/account:Account")
    assert account["accountId"] == "gpuctl-ml"
    role = inputs_of(secured, "ml-nodes-role", "gcp:projects/iAMMember:IAMMember")
    assert role["role"] == "roles/container.defaultNodeServiceAccount"  # only what nodes need
    for name in ("ml-system", "ml-gpu-l4"):  # never the project's default compute account
        assert inputs_of(secured, name, POOL)["nodeConfig"]["serviceAccount"] == \
            "gpuctl-ml@my-project-1.iam.gserviceaccount.com"
    with pytest.raises(RuleViolation, match="control plane would be open to 256 addresses"):
        GkeCluster(replace(spec(), control_plane_cidr="198.51.100.0/24"))


def test_cluster_is_zonal_regular_with_workload_identity_and_no_default_pool():
    cluster = inputs_of(spec(), "ml", CLUSTER)
    assert cluster["name"] == "ml"
    assert cluster["location"] == "us-central1-a"  # a zone: one control plane, one fee
    assert cluster["project"] == "my-project-1"
    assert cluster["releaseChannel"] == {"channel": "REGULAR"}
    assert cluster["workloadIdentityConfig"] == {"workloadPool": "my-project-1.svc.id.goog"}
    assert cluster["removeDefaultNodePool"] is True
    assert cluster["initialNodeCount"] == 1
    assert cluster["resourceLabels"] == LABELS
    assert cluster["deletionProtection"] is False  # or `gke down` could never succeed
    assert cluster["enableShieldedNodes"] is True
    assert cluster["networkingMode"] == "VPC_NATIVE"
    assert cluster["clusterAutoscaling"] == {"autoscalingProfile": "OPTIMIZE_UTILIZATION"}


def test_every_resource_and_node_carries_the_labels():
    for name, (typ, inputs) in planned(spec()).items():
        if typ == CLUSTER:
            assert inputs["resourceLabels"] == LABELS
        elif typ == POOL:
            node = inputs["nodeConfig"]
            assert node["resourceLabels"] == LABELS, name  # on the node VMs and their disks
            assert LABELS.items() <= node["labels"].items(), name  # on the Kubernetes nodes


def test_gpu_pool_is_spot_tainted_and_scales_from_zero():
    pool = inputs_of(spec(), "ml-gpu-l4", POOL)
    assert pool["name"] == "gpu-l4"
    assert pool["cluster"] == "ml"
    assert pool["location"] == "us-central1-a"
    assert pool["initialNodeCount"] == 0
    assert pool["autoscaling"] == {"totalMinNodeCount": 0, "totalMaxNodeCount": 3,
                                   "locationPolicy": "ANY"}
    node = pool["nodeConfig"]
    assert node["spot"] is True
    assert node["machineType"] == "g2-standard-8"
    assert node["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    assert node["guestAccelerators"] == [{
        "type": "nvidia-l4", "count": 1,
        "gpuDriverInstallationConfig": {"gpuDriverVersion": "DEFAULT"}}]
    assert node["ephemeralStorageLocalSsdConfig"] == {"localSsdCount": 1}
    assert node["labels"]["gpuctl-pool"] == "gpu-l4"
    assert node["labels"]["gpuctl-accelerator"] == "l4"
    assert pool["management"] == {"autoRepair": True, "autoUpgrade": True}


def test_nodes_get_minimal_scopes_gke_metadata_and_shielded_boot():
    for name in ("ml-system", "ml-gpu-l4", "ml-gpu-t4"):
        node = inputs_of(spec(), name, POOL)["nodeConfig"]
        assert node["oauthScopes"] == [
            "https://www.googleapis.com/auth/logging.write",
            "https://www.googleapis.com/auth/monitoring",
            "https://www.googleapis.com/auth/devstorage.read_only"], name
        assert node["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}
        assert node["shieldedInstanceConfig"] == {"enableSecureBoot": True,
                                                  "enableIntegrityMonitoring": True}
        assert node["serviceAccount"] == "gpuctl-ml@my-project-1.iam.gserviceaccount.com"  # its own
        assert node["metadata"] == {"disable-legacy-endpoints": "true"}


def test_system_pool_is_small_on_demand_untainted():
    pool = inputs_of(spec(), "ml-system", POOL)
    assert pool["name"] == "system"
    assert pool["initialNodeCount"] == 1
    assert pool["autoscaling"] == {"totalMinNodeCount": 1, "totalMaxNodeCount": 2,
                                   "locationPolicy": "BALANCED"}
    node = pool["nodeConfig"]
    assert node["machineType"] == "e2-standard-2"
    assert node["spot"] is False
    assert "taints" not in node and "guestAccelerators" not in node
    assert "ephemeralStorageLocalSsdConfig" not in node
    assert (node["diskSizeGb"], node["diskType"]) == (50, "pd-standard")


def test_t4_is_attached_to_n1_with_its_count():
    t4 = replace(T4, gpus_per_node=4, machine_type="n1-highmem-16")
    node = inputs_of(spec(gpu_pools=(t4,)), "ml-gpu-t4", POOL)["nodeConfig"]
    assert node["guestAccelerators"][0]["type"] == "nvidia-tesla-t4"
    assert node["guestAccelerators"][0]["count"] == 4
    assert node["machineType"] == "n1-highmem-16"


@pytest.mark.parametrize(("machine", "gpus", "ssds"), [
    ("a2-highgpu-1g", 1, 1), ("a2-highgpu-2g", 2, 2), ("a2-highgpu-4g", 4, 4)])
def test_a100_count_and_local_ssd_follow_the_machine(machine, gpus, ssds):
    pool = replace(A100, machine_type=machine)
    node = inputs_of(spec(gpu_pools=(pool,)), "ml-gpu-a100", POOL)["nodeConfig"]
    assert node["guestAccelerators"][0]["count"] == gpus
    assert node["ephemeralStorageLocalSsdConfig"] == {"localSsdCount": ssds}


def test_no_local_ssd_when_asked_for_none_and_latest_driver_on_cos():
    pool = replace(L4, local_ssd_count=0, driver_version="LATEST")
    node = inputs_of(spec(gpu_pools=(pool,)), "ml-gpu-l4", POOL)["nodeConfig"]
    assert "ephemeralStorageLocalSsdConfig" not in node
    assert node["guestAccelerators"][0]["gpuDriverInstallationConfig"] == {"gpuDriverVersion": "LATEST"}
    assert node["imageType"] == "COS_CONTAINERD"


def test_on_demand_gpu_pool_when_asked():
    node = inputs_of(spec(gpu_pools=(replace(L4, spot=False),)), "ml-gpu-l4", POOL)["nodeConfig"]
    assert node["spot"] is False


# --- rules -----------------------------------------------------------------------------------


def first_rule(gke: GkeSpec) -> str:
    found = gke_rules.violations(gke)
    assert found, "expected a violation"
    return found[0].rule


@pytest.mark.parametrize(("changes", "rule", "hint_part"), [
    ({"name": "ML"}, "gke-name", "lowercase"),
    ({"name": "x" * 41}, "gke-name", "at most 40"),
    ({"project": "Bad_Project"}, "project", "6-30"),
    ({"labels": {k: v for k, v in LABELS.items() if k != "gpuctl-owner"}}, "labels-required", "gpuctl-*"),
    ({"labels": {**LABELS, "Owner": "x"}}, "label-format", "lowercase"),
    ({"zone": "uscentral1"}, "zone-format", "us-central1-a"),
    ({"zone": "mars-north9-a"}, "region-known", "us-central1"),
    ({"release_channel": "NIGHTLY"}, "release-channel", "REGULAR"),
    ({"system_machine_type": "n1-standard-8"}, "system-machine", "e2-standard-2"),
    ({"system_min_nodes": 0}, "system-size", "kube-dns"),
    ({"system_min_nodes": 3, "system_max_nodes": 2}, "system-size", "min <= max"),
    ({"system_disk_type": "local-ssd"}, "disk-type", "pd-balanced"),
    ({"gpu_pools": ()}, "pools-empty", "--pools"),
    ({"gpu_pools": (L4, replace(L4, max_nodes=1))}, "pool-duplicate", "one pool per GPU"),
    ({"gpu_pools": (GpuPoolSpec("nvidia-h100-80gb", "a3-highgpu-1g", 1),)}, "gke-accelerator", "t4, l4, a100"),
    ({"gpu_pools": (replace(L4, machine_type="g9-standard-8"),)}, "machine-type", "g2-standard-*"),
    ({"gpu_pools": (replace(L4, machine_type="n1-standard-8"),)}, "gpu-pair", "L4 on g2-standard-*"),
    ({"gpu_pools": (replace(T4, machine_type="g2-standard-8"),)}, "gpu-pair", "T4 runs on n1-*"),
    ({"gpu_pools": (replace(A100, machine_type="a2-ultragpu-1g"),)}, "gpu-pair", "a2-highgpu-*"),
    ({"gpu_pools": (replace(T4, gpus_per_node=3),)}, "gpu-count", "1, 2, 4"),
    ({"gpu_pools": (replace(A100, gpus_per_node=2),)}, "gpu-count", "leave the GPU count out"),
    ({"zone": "asia-northeast1-b", "gpu_pools": (T4,)}, "gpu-zone", "asia-northeast1-a, asia-northeast1-c"),
    ({"zone": "us-central1-f", "gpu_pools": (L4,)}, "gpu-zone", "drop l4"),
    ({"gpu_pools": (replace(L4, max_nodes=0),)}, "pool-size", "1 to 16"),
    ({"gpu_pools": (replace(L4, max_nodes=17),)}, "pool-size", "1 to 16"),
    ({"gpu_pools": (replace(L4, local_ssd_count=2),)}, "local-ssd-count", "0 or one of: 1"),
    ({"gpu_pools": (replace(A100, local_ssd_count=3),)}, "local-ssd-count", "1, 2, 4, 8"),
    ({"gpu_pools": (replace(L4, driver_version="R535"),)}, "driver-version", "DEFAULT"),
    ({"gpu_pools": (replace(L4, driver_version="LATEST"),), "image_type": "UBUNTU_CONTAINERD"},
     "driver-version", "COS"),
    ({"gpu_pools": (replace(L4, disk_size_gb=5),)}, "disk-size", "10 to 65536"),
])
def test_each_rule_names_the_problem_and_a_fix(changes, rule, hint_part):
    found = gke_rules.violations(spec(**changes))
    assert rule in [v.rule for v in found]
    violation = next(v for v in found if v.rule == rule)
    assert hint_part in violation.hint


def test_a_valid_spec_breaks_no_rule():
    assert gke_rules.violations(spec()) == []
    assert gke_rules.violations(spec(project=PROJECT_PLACEHOLDER)) == []  # dry runs without a project
    tokyo = spec(zone="asia-northeast1-a", gpu_pools=(L4, T4, A100))
    assert gke_rules.violations(tokyo) == []


def test_program_refuses_a_bad_spec_before_registering_anything():
    registered = []

    def program():
        registered.append("started")
        GkeCluster(spec(gpu_pools=(replace(L4, machine_type="n1-standard-8"),)))

    with pytest.raises(RuleViolation) as err:
        run_under_mocks(program)
    assert "nvidia-l4 cannot run on n1-standard-8" in err.value.message
    assert "g2-standard-*" in err.value.hint
    assert err.value.exit_code == 2


def _oracle_ok(accel: str, machine: str, zone: str, max_nodes: int) -> bool:
    """An independent reading of the pairing and placement rules, from the catalog: the GPU
    pairs with the machine family, one GPU (the pool default) is a count the machine takes
    (N1 limits how many vCPUs one T4 may serve), the zone has the GPU, 1..16 nodes."""
    prefixes = {"nvidia-tesla-t4": "n1-", "nvidia-l4": "g2-standard-", "nvidia-tesla-a100": "a2-highgpu-"}
    region = zone.rsplit("-", 1)[0]
    shape = MACHINES[machine]
    count_ok = (shape.builtin_gpu_count >= 1 if shape.builtin_gpu else 1 in shape.attachable_gpus.get(accel, ()))
    return (machine.startswith(prefixes[accel]) and count_ok and zone in GPUS[accel].zones_in(region)
            and 1 <= max_nodes <= 16)


ZONES = sorted({z for g in GPUS.values() for r in REGIONS for z in g.zones_in(r)})


@settings(max_examples=200, deadline=None)
@given(accel=st.sampled_from([a.gpu for a in ACCELERATORS.values()]),
       machine=st.sampled_from(sorted(MACHINES)), zone=st.sampled_from(ZONES),
       max_nodes=st.integers(-2, 20))
def test_pool_rules_agree_with_the_catalog(accel, machine, zone, max_nodes):
    pool = GpuPoolSpec(accel, machine, max_nodes)
    found = gke_rules.violations(spec(zone=zone, gpu_pools=(pool,)))
    assert (found == []) == _oracle_ok(accel, machine, zone, max_nodes), found
