"""The VM Pulumi program under pulumi.runtime.set_mocks: the inputs every resource receives."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpuctl.errors import RuleViolation
from gpuctl_infra.gpu_vm import GpuVm
from gpuctl_infra.mock_run import run_under_mocks
from gpuctl_infra.spec import DailyStop, VmSpec

LABELS = {"gpuctl-managed": "true", "gpuctl-owner": "alice", "gpuctl-name": "alice-a100",
          "gpuctl-expiry": "20261123t1100z"}
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ9 alice@laptop"


def spec(**changes) -> VmSpec:
    base = VmSpec(name="alice-a100", zone="us-central1-a", machine_type="a2-highgpu-1g",
                  image="projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts",
                  boot_disk_gb=100, boot_disk_type="pd-ssd", spot=True, local_ssd_count=1,
                  max_run_seconds=6 * 3600, ssh_source_cidr="198.51.100.7/32",
                  ssh_public_key=PUBKEY, labels=LABELS)
    return replace(base, **changes)


def resources(vm_spec: VmSpec) -> dict[str, tuple[str, dict]]:
    return {r.name: (r.type, r.inputs) for r in run_under_mocks(lambda: GpuVm(vm_spec))}


def instance_inputs(vm_spec: VmSpec) -> dict:
    typ, inputs = resources(vm_spec)[vm_spec.name]
    assert typ == "gcp:compute/instance:Instance"
    return inputs


def test_a100_spot_instance_inputs():
    inputs = instance_inputs(spec())
    assert inputs["machineType"] == "a2-highgpu-1g"
    assert inputs["zone"] == "us-central1-a"
    assert "guestAccelerators" not in inputs  # the A100 is part of a2-highgpu-1g
    assert inputs["scratchDisks"] == [{"interface": "NVME"}]
    assert inputs["scheduling"] == {
        "provisioningModel": "SPOT", "preemptible": True, "automaticRestart": False,
        "onHostMaintenance": "TERMINATE", "instanceTerminationAction": "DELETE",
        "maxRunDuration": {"seconds": 21600},
    }
    boot = inputs["bootDisk"]
    assert boot["autoDelete"] is True
    assert boot["initializeParams"] == {
        "image": "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts",
        "size": 100, "type": "pd-ssd", "labels": LABELS}
    assert inputs["labels"] == LABELS
    assert inputs["tags"] == ["gpuctl-alice-a100"]
    assert inputs["networkInterfaces"] == [{"network": "default", "accessConfigs": [{}]}]
    assert "serviceAccount" not in inputs  # no cloud credentials on the box by default


def test_t4_gets_guest_accelerator_on_n1():
    inputs = instance_inputs(spec(machine_type="n1-highmem-8", accelerator_type="nvidia-tesla-t4",
                                  accelerator_count=1))
    assert inputs["guestAccelerators"] == [{"type": "nvidia-tesla-t4", "count": 1}]
    assert inputs["scheduling"]["onHostMaintenance"] == "TERMINATE"


def test_bundled_local_ssd_gets_no_scratch_disks():
    inputs = instance_inputs(spec(machine_type="a2-ultragpu-1g", local_ssd_count=0))
    assert "scratchDisks" not in inputs
    assert "guestAccelerators" not in inputs


def test_h100_uses_gvnic():
    inputs = instance_inputs(spec(machine_type="a3-highgpu-1g", local_ssd_count=0, zone="us-central1-b"))
    assert inputs["networkInterfaces"][0]["nicType"] == "GVNIC"


def test_four_scratch_disks_for_a100x4():
    inputs = instance_inputs(spec(machine_type="a2-highgpu-4g", local_ssd_count=4))
    assert inputs["scratchDisks"] == [{"interface": "NVME"}] * 4


def test_on_demand_scheduling_restarts_and_still_has_a_run_limit():
    sched = instance_inputs(spec(spot=False))["scheduling"]
    assert sched["provisioningModel"] == "STANDARD"
    assert sched["preemptible"] is False
    assert sched["automaticRestart"] is True
    assert sched["onHostMaintenance"] == "TERMINATE"
    assert sched["maxRunDuration"] == {"seconds": 21600}
    assert sched["instanceTerminationAction"] == "DELETE"


def test_stop_action_with_local_ssd_discards_it():
    sched = instance_inputs(spec(termination_action="STOP"))["scheduling"]
    assert sched["instanceTerminationAction"] == "STOP"
    assert sched["onInstanceStopAction"] == {"discardLocalSsd": True}


def test_termination_time_instead_of_duration():
    sched = instance_inputs(spec(max_run_seconds=None,
                                 termination_time="2026-11-24T06:00:00+09:00"))["scheduling"]
    assert sched["terminationTime"] == "2026-11-24T06:00:00+09:00"
    assert "maxRunDuration" not in sched


def test_firewall_open_only_to_caller_on_port_22():
    typ, fw = resources(spec())["alice-a100-ssh"]
    assert typ == "gcp:compute/firewall:Firewall"
    assert fw["sourceRanges"] == ["198.51.100.7/32"]
    assert fw["allows"] == [{"protocol": "tcp", "ports": ["22"]}]
    assert fw["direction"] == "INGRESS"
    assert fw["targetTags"] == ["gpuctl-alice-a100"]
    # Firewall rules take no labels in GCE: the labels travel in the description.
    for key, value in LABELS.items():
        assert f"{key}={value}" in fw["description"]


def test_daily_stop_policy_attached_in_the_vm_region():
    vm = spec(zone="asia-northeast1-a", daily_stop=DailyStop(6, 0, "Asia/Tokyo"))
    res = resources(vm)
    typ, policy = res["alice-a100-daily-stop"]
    assert typ == "gcp:compute/resourcePolicy:ResourcePolicy"
    assert policy["region"] == "asia-northeast1"
    assert policy["instanceSchedulePolicy"] == {"vmStopSchedule": {"schedule": "0 6 * * *"},
                                                "timeZone": "Asia/Tokyo"}
    assert "gpuctl-managed=true" in policy["description"]
    assert res["alice-a100"][1]["resourcePolicies"].endswith("alice-a100-daily-stop")


def test_no_policy_without_daily_stop():
    names = set(resources(spec()))
    assert names == {"alice-a100", "alice-a100-ssh"}


def test_metadata_holds_only_public_material():
    meta = instance_inputs(spec())["metadata"]
    assert meta == {"ssh-keys": f"gpuctl:{PUBKEY}", "enable-oslogin": "FALSE",
                    "block-project-ssh-keys": "TRUE", "enable-guest-attributes": "TRUE"}


def test_private_key_is_refused_before_any_resource():
    with pytest.raises(RuleViolation, match="public key"):
        run_under_mocks(lambda: GpuVm(spec(ssh_public_key="-----BEGIN OPENSSH PRIVATE KEY-----")))


def test_rule_violation_stops_the_program_before_any_resource():
    with pytest.raises(RuleViolation, match="built in"):
        GpuVm(spec(accelerator_type="nvidia-tesla-t4", accelerator_count=1))


def test_component_registers_firewall_policy_and_instance():
    found = run_under_mocks(lambda: GpuVm(spec(daily_stop=DailyStop(6, 0, "UTC"))))
    assert found[0].type == "gpuctl:vm:GpuVm"
    assert {r.type for r in found[1:]} == {"gcp:compute/firewall:Firewall",
                                           "gcp:compute/resourcePolicy:ResourcePolicy",
                                           "gcp:compute/instance:Instance"}


def test_flex_start_instance_has_the_documented_scheduling():
    inputs = instance_inputs(spec(spot=False, flex_start=True, max_run_seconds=3 * 86400))
    sched = inputs["scheduling"]
    assert sched["provisioningModel"] == "FLEX_START"
    assert sched["preemptible"] is False and sched["automaticRestart"] is False
    assert sched["maxRunDuration"] == {"seconds": 3 * 86400}
    assert sched["instanceTerminationAction"] == "DELETE"
    assert sched["onHostMaintenance"] == "TERMINATE"


@pytest.mark.parametrize("changes", [
    dict(max_run_seconds=8 * 86400),  # more than seven days
    dict(max_run_seconds=None, termination_time="2026-11-24T06:00:00Z"),
    dict(daily_stop=DailyStop(6, 0, "UTC")),  # a schedule would stop it
])
def test_flex_start_rules_stop_the_program_before_any_resource(changes):
    with pytest.raises(RuleViolation, match="flex-start"):
        resources(spec(spot=False, flex_start=True, **changes))


@pytest.mark.parametrize("machine,gpus,ssds", [("g2-standard-48", 4, 4), ("a3-highgpu-8g", 8, 16),
                                               ("a3-ultragpu-8g", 8, 32), ("a4-highgpu-8g", 8, 32)])
def test_big_shapes_get_no_accelerators_and_their_bundled_or_scratch_disks(machine, gpus, ssds):
    from gpuctl_infra.catalog import MACHINES

    zone = next(z for r in MACHINES[machine].regions for z in MACHINES[machine].zones_in(r, "SPOT"))
    inputs = instance_inputs(spec(machine_type=machine, zone=zone, accelerator_type=None,
                                  accelerator_count=0,
                                  local_ssd_count=0 if MACHINES[machine].bundled_local_ssd else ssds))
    assert not inputs.get("guestAccelerators")
    scratch = inputs.get("scratchDisks") or []
    assert len(scratch) == (0 if MACHINES[machine].bundled_local_ssd else ssds)
    assert MACHINES[machine].builtin_gpu_count == gpus
    assert inputs["networkInterfaces"][0].get("nicType") == "GVNIC" or machine.startswith("g2")
