"""Stages (b) and (c) of `run --recover`: the RecoveringVm program (infra/gpuctl_infra/recovering_vm.py)
under Pulumi's mocks (what each resource receives), and applied by the real Pulumi engine through
the gcp provider double (tests/gcp_provider/mig_types.py) against the Compute stand-in: the
template, the MIG of one and its spot VM exist; a preemption is repaired by the MIG, not by
gpuctl; destroy leaves nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from gpuctl_infra.errors import RuleViolation
from gpuctl_infra.mock_run import run_under_mocks
from gpuctl_infra.recovering_vm import RecoveringVm, RecoverSpec
from tests.standins.compute import compute_standin  # noqa: F401 (fixture)
from tests.test_vm_checkpoint_access_live import iam  # noqa: F401 (fixture)

# The hard cap: an absolute time GCE requires to be in the future (the stand-in checks it).
CAP = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:00Z")
BUCKET_RUN = "gs://alice-ckpts/llama/run-1/.gpuctl"


def spec(**changes) -> RecoverSpec:
    base = dict(
        name="alice-llama", region="us-central1", zones=("us-central1-a", "us-central1-b", "us-central1-c"),
        machine_type="g2-standard-8", image="projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts",
        boot_disk_gb=100, boot_disk_type="pd-ssd", termination_time=CAP,
        bootstrap_url=f"{BUCKET_RUN}/bootstrap.py", recover_url=f"{BUCKET_RUN}/recover.json",
        checkpoint_bucket="alice-ckpts", local_ssd_count=1,
        ssh_source_cidr="198.51.100.7/32", ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE test",
        labels={"gpuctl-managed": "true", "gpuctl-name": "alice-llama"}, project="gpuctl-test")
    base.update(changes)
    return RecoverSpec(**base)


def planned(s: RecoverSpec) -> dict[str, dict]:
    resources = run_under_mocks(lambda: RecoveringVm(s), project="gpuctl-test")
    return {r.short_type: r.inputs for r in resources}


def test_the_plan_is_a_template_and_a_regional_group_of_one_that_repairs_across_zones():
    got = planned(spec())
    assert set(got) == {"vm.RecoveringVm", "compute.Firewall", "compute.InstanceTemplate",
                        "compute.RegionInstanceGroupManager", "serviceaccount.Account", "storage.BucketIAMMember",
                        "projects.IAMMember"}
    # The run's own identity, shared with `up --checkpoints`: one account, one role on one bucket.
    assert got["serviceaccount.Account"]["accountId"] == "gpuctl-alice-llama"
    assert got["storage.BucketIAMMember"]["bucket"] == "alice-ckpts"
    assert got["storage.BucketIAMMember"]["role"] == "roles/storage.objectUser"
    mig = got["compute.RegionInstanceGroupManager"]
    assert mig["targetSize"] == 1 and mig["distributionPolicyTargetShape"] == "ANY"
    assert mig["distributionPolicyZones"] == ["us-central1-a", "us-central1-b", "us-central1-c"]
    assert mig["instanceLifecyclePolicy"] == {"defaultActionOnFailure": "REPAIR",
                                              "onRepair": {"allowChangingZone": "YES"}}
    tpl = got["compute.InstanceTemplate"]
    assert tpl["scheduling"] == {"provisioningModel": "SPOT", "preemptible": True, "automaticRestart": False,
                                 "onHostMaintenance": "TERMINATE", "instanceTerminationAction": "DELETE",
                                 "terminationTime": CAP}
    # Metadata: addresses and switches only; no code, no secret.
    assert tpl["metadata"]["startup-script-url"] == f"{BUCKET_RUN}/bootstrap.py"
    assert tpl["metadata"]["gpuctl-recover"] == f"{BUCKET_RUN}/recover.json"
    assert "startup-script" not in tpl["metadata"] and "metadataStartupScript" not in tpl
    # Exactly two scopes: the bucket's, and Compute's for the group's own deletion.
    assert tpl["serviceAccount"] == {"email": "gpuctl-alice-llama@gpuctl-test.iam.gserviceaccount.com",
                                     "scopes": ["https://www.googleapis.com/auth/devstorage.read_write",
                                                "https://www.googleapis.com/auth/compute"]}
    assert [d.get("type") for d in tpl["disks"]] == [None, "SCRATCH"]
    assert got["compute.Firewall"]["sourceRanges"] == ["198.51.100.7/32"]


def test_the_run_may_delete_its_own_group_and_nothing_else():
    """One project grant, cut down by an IAM condition to the run's own group: the VM deletes its
    group when the run finishes (bootstrap.py watch) and can touch no other resource with it."""
    grant = planned(spec())["projects.IAMMember"]
    assert grant["project"] == "gpuctl-test" and grant["role"] == "roles/compute.instanceAdmin.v1"
    assert grant["member"] == "serviceAccount:gpuctl-alice-llama@gpuctl-test.iam.gserviceaccount.com"
    assert grant["condition"]["expression"] == (
        'resource.name == "projects/gpuctl-test/regions/us-central1/instanceGroupManagers/alice-llama"')
    assert grant["condition"]["title"] == "gpuctl-alice-llama-self-delete"


@pytest.mark.parametrize("scopes, ok", [
    (["https://www.googleapis.com/auth/devstorage.read_write", "https://www.googleapis.com/auth/compute"], True),
    (["https://www.googleapis.com/auth/devstorage.read_write"], False),
    (["https://www.googleapis.com/auth/devstorage.read_write", "https://www.googleapis.com/auth/cloud-platform"],
     False),
    (["https://www.googleapis.com/auth/cloud-platform"], False),
    (["https://www.googleapis.com/auth/compute", "https://www.googleapis.com/auth/devstorage.read_write",
      "https://www.googleapis.com/auth/compute"], False),
])
def test_a_recovering_vm_may_carry_the_bucket_and_compute_scopes_only(scopes, ok):
    from gpuctl_infra import rules

    found = rules.service_account_violations(scopes, "roles/storage.objectUser", "alice-ckpts", self_delete=True)
    assert (found == []) is ok
    # A plain VM never gets the Compute scope.
    if "https://www.googleapis.com/auth/compute" in scopes:
        assert rules.service_account_violations(scopes, "roles/storage.objectUser", "alice-ckpts") != []


@pytest.mark.parametrize("changes, words", [
    ({"zones": ("us-central1-a", "europe-west4-a")}, "zone europe-west4-a is not in region us-central1"),
    ({"zones": ()}, "no zone to run in"),
    ({"recover_url": "https://example.com/recover.json"}, "is not a gs:// address"),
    ({"checkpoint_bucket": ""}, "needs a service account on its checkpoint bucket"),
    ({"ssh_public_key": "-----BEGIN OPENSSH PRIVATE KEY-----"}, "something other than a public key"),
])
def test_a_bad_spec_is_refused_before_anything_is_planned(changes, words):
    with pytest.raises(RuleViolation) as caught:
        planned(spec(**changes))
    assert words in caught.value.message and caught.value.hint


# --- the real engine ------------------------------------------------------------------------

@pytest.fixture
def engine(real_engine_env, compute_standin, iam, gcs_emulator, monkeypatch):
    from gpuctl.adapters.pulumi_engine import AutomationEngine

    monkeypatch.setenv("GPUCTL_COMPUTE_ENDPOINT", compute_standin.endpoint)
    gcs_emulator.client().create_bucket("alice-ckpts")
    return AutomationEngine("gpuctl-recover-test")


def test_the_engine_applies_the_group_and_google_not_gpuctl_replaces_the_preempted_vm(engine, compute_standin, iam,
                                                                                     gcs_emulator):
    s = spec()
    outputs = engine.up(s.name, lambda: RecoveringVm(s), {"gcp:project": "gpuctl-test"})
    assert outputs == {}  # nothing exported: gpuctl reads the group from the API
    standin = compute_standin
    [template] = standin.instance_templates()
    props = template["properties"]
    assert props["machineType"] == "g2-standard-8"  # a name, as templates take
    assert props["scheduling"]["terminationTime"] == CAP
    assert {i["key"]: i["value"] for i in props["metadata"]["items"]}["gpuctl-recover"] == f"{BUCKET_RUN}/recover.json"
    [group] = standin.migs()
    assert group["targetSize"] == 1 and group["distributionPolicy"]["targetShape"] == "ANY"
    assert group["instanceLifecyclePolicy"]["onRepair"] == {"allowChangingZone": "YES"}
    [(vm_name, member)] = standin.mig_members("alice-llama").items()
    vm = standin.instance(vm_name)
    assert vm["status"] == "RUNNING" and vm["zone"].endswith("/us-central1-a")
    assert vm["serviceAccounts"][0]["email"].startswith("gpuctl-alice-llama@")
    assert [d.get("type") for d in vm["disks"]][1:] == ["SCRATCH"]

    # Google takes the VM back; the group recreates it where there is capacity; no gpuctl call.
    calls_before = len(standin.requests)
    standin.begin_preemption(vm_name)
    standin.stockout("us-central1-a")
    standin.finish_preemption(vm_name)
    assert standin.reconcile_migs() == [{"event": "recreated", "vm": vm_name, "zone": "us-central1-b"}]
    assert len(standin.requests) == calls_before  # nobody asked over the API
    assert standin.instance(vm_name)["zone"].endswith("/us-central1-b")

    # The VM's identity: its own account, objectUser on the one bucket (as `up --checkpoints`).
    (account,) = iam.accounts.values()
    assert account["email"] == "gpuctl-alice-llama@gpuctl-test.iam.gserviceaccount.com"
    policy = gcs_emulator.contract.iam.policies["alice-ckpts"]
    assert policy["roles/storage.objectUser"] == [f"serviceAccount:{account['email']}"]

    # Its one project grant: the conditional binding, at policy version 3, on this group alone.
    group_name = "projects/gpuctl-test/regions/us-central1/instanceGroupManagers/alice-llama"
    member = f"serviceAccount:{account['email']}"
    assert iam.conditional_bindings() == [{
        "role": "roles/compute.instanceAdmin.v1", "members": [member],
        "condition": {"title": "gpuctl-alice-llama-self-delete", "expression": f'resource.name == "{group_name}"',
                      "description": "gpuctl: the run's VM may delete its own group alice-llama "
                                     "once the run finishes"}}]
    assert iam.allows(member, "compute.instanceGroupManagers.delete", group_name)
    assert not iam.allows(member, "compute.instanceGroupManagers.delete", group_name.replace("alice-llama", "bob"))
    assert not iam.allows(member, "compute.instances.delete", f"projects/gpuctl-test/zones/us-central1-a/instances/x")
    assert iam.bindings == {"roles/owner": {"user:owner@example.com"}}  # nothing unconditional added

    engine.destroy(s.name)
    assert iam.accounts == {} and "roles/storage.objectUser" not in gcs_emulator.contract.iam.policies["alice-ckpts"]
    assert iam.conditional_bindings() == [] and iam.contract_violations == []
    assert standin.migs() == [] and standin.instances() == [] and standin.instance_templates() == []
    assert standin.firewalls() == [] and standin.contract_violations == []
