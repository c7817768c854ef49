"""Stage (a) of `run --recover`: the Compute stand-in serves instance templates and regional
managed instance groups to the real google-cloud-compute client, checked against compute.v1.json,
makes the group's spot VM from the template, preempts it as Google does (metadata `preempted`,
30 s notice, TERMINATED or deleted) and lets the MIG recreate it: same name, same template, in
another zone when the group may change zones and the first one has no capacity."""

from __future__ import annotations

import json
import urllib.request

import pytest
from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from tests.standins.compute import ComputeStandIn
from tests.standins.compute_migs import SPOT_NOTICE_S, InstanceMetadataServer

REGION = "us-central1"
ZONES = ["us-central1-a", "us-central1-b", "us-central1-c"]


def template_body(name: str = "llama-tpl", *, machine_type: str = "g2-standard-8", action: str = "DELETE",
                  service_account: bool = True) -> compute_v1.InstanceTemplate:
    props = {
        "machineType": machine_type,
        "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
            "sourceImage": "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts",
            "diskSizeGb": "100", "diskType": "pd-ssd"}}],
        "networkInterfaces": [{"network": "global/networks/default", "accessConfigs": [{"type": "ONE_TO_ONE_NAT"}]}],
        "scheduling": {"provisioningModel": "SPOT", "preemptible": True, "automaticRestart": False,
                       "onHostMaintenance": "TERMINATE", "instanceTerminationAction": action},
        "metadata": {"items": [{"key": "gpuctl-recover", "value": "gs://ckpts/llama/.gpuctl/recover.json"}]},
        "labels": {"gpuctl-managed": "true"},
    }
    if service_account:
        props["serviceAccounts"] = [{"email": "gpuctl-run@gpuctl-test.iam.gserviceaccount.com",
                                     "scopes": ["https://www.googleapis.com/auth/devstorage.read_write"]}]
    return compute_v1.InstanceTemplate.from_json(json.dumps({"name": name, "properties": props}))


def mig_body(name: str = "llama", *, allow_changing_zone: bool = True) -> compute_v1.InstanceGroupManager:
    body = {"name": name, "baseInstanceName": name, "targetSize": 1,
            "instanceTemplate": "projects/gpuctl-test/global/instanceTemplates/llama-tpl",
            "distributionPolicy": {"targetShape": "ANY",
                                   "zones": [{"zone": f"zones/{z}"} for z in ZONES]},
            "instanceLifecyclePolicy": {"defaultActionOnFailure": "REPAIR",
                                        "onRepair": {"allowChangingZone": "YES" if allow_changing_zone else "NO"}}}
    return compute_v1.InstanceGroupManager.from_json(json.dumps(body))


@pytest.fixture
def standin():
    with ComputeStandIn() as s:
        yield s


def make_group(standin: ComputeStandIn, **kwargs):
    templates = standin.client(compute_v1.InstanceTemplatesClient)
    migs = standin.client(compute_v1.RegionInstanceGroupManagersClient)
    templates.insert(project=standin.project, instance_template_resource=template_body(**kwargs)).result()
    return templates, migs


def managed(migs, name="llama"):
    return list(migs.list_managed_instances(project="gpuctl-test", region=REGION, instance_group_manager=name))


def test_a_mig_of_one_makes_its_spot_vm_from_the_template(standin):
    templates, migs = make_group(standin)
    migs.insert(project=standin.project, region=REGION, instance_group_manager_resource=mig_body()).result()

    got = migs.get(project=standin.project, region=REGION, instance_group_manager="llama")
    assert got.target_size == 1 and got.distribution_policy.target_shape == "ANY"
    assert got.instance_lifecycle_policy.on_repair.allow_changing_zone == "YES"
    [member] = managed(migs)
    assert member.current_action == "NONE" and member.instance_status == "RUNNING"
    assert member.name.startswith("llama-") and len(member.name) == len("llama-") + 4
    vm = standin.instance(member.name)
    assert vm["zone"].endswith("/us-central1-a") and vm["scheduling"]["provisioningModel"] == "SPOT"
    assert vm["machineType"].endswith("/zones/us-central1-a/machineTypes/g2-standard-8")
    keys = {i["key"]: i["value"] for i in vm["metadata"]["items"]}
    assert keys["gpuctl-recover"] == "gs://ckpts/llama/.gpuctl/recover.json"
    assert keys["created-by"] == "projects/gpuctl-test/regions/us-central1/instanceGroupManagers/llama"
    assert standin.contract_violations == []
    # A template in use cannot go; the group and its VM can, then the template.
    with pytest.raises(gexc.BadRequest, match="already being used"):
        templates.delete(project=standin.project, instance_template="llama-tpl").result()
    migs.delete(project=standin.project, region=REGION, instance_group_manager="llama").result()
    assert standin.instances() == [] and standin.migs() == []
    templates.delete(project=standin.project, instance_template="llama-tpl").result()
    assert standin.instance_templates() == []


def test_a_template_takes_a_machine_type_name_only(standin):
    templates = standin.client(compute_v1.InstanceTemplatesClient)
    body = template_body(machine_type="zones/us-central1-a/machineTypes/g2-standard-8")
    with pytest.raises(gexc.InternalServerError):
        templates.insert(project=standin.project, instance_template_resource=body).result()
    spot_restarting = template_body()
    spot_restarting.properties.scheduling.automatic_restart = True
    with pytest.raises(gexc.BadRequest):
        templates.insert(project=standin.project, instance_template_resource=spot_restarting).result()
    assert standin.instance_templates() == []


def test_a_stockout_moves_the_first_vm_to_a_zone_with_capacity(standin):
    _, migs = make_group(standin)
    standin.stockout("us-central1-a")
    migs.insert(project=standin.project, region=REGION, instance_group_manager_resource=mig_body()).result()
    [member] = managed(migs)
    assert standin.instance(member.name)["zone"].endswith("/us-central1-b")


def test_preemption_then_the_mig_recreates_the_vm_in_another_zone(standin):
    _, migs = make_group(standin)
    migs.insert(project=standin.project, region=REGION, instance_group_manager_resource=mig_body()).result()
    [member] = managed(migs)
    name = member.name

    with InstanceMetadataServer(standin, name) as metadata:
        def read(key: str) -> str:
            req = urllib.request.Request(f"http://{metadata.host}/computeMetadata/v1/instance/{key}",
                                         headers={"Metadata-Flavor": "Google"})
            with urllib.request.urlopen(req, timeout=5) as answer:
                return answer.read().decode()

        assert read("preempted") == "FALSE" and read("zone").endswith("/zones/us-central1-a")
        assert read("attributes/gpuctl-recover") == "gs://ckpts/llama/.gpuctl/recover.json"
        assert json.loads(read("service-accounts/default/token"))["token_type"] == "Bearer"

        notice = standin.begin_preemption(name)
        assert notice["notice_s"] == SPOT_NOTICE_S == 30
        assert read("preempted") == "TRUE" and standin.instance(name)["status"] == "STOPPING"
        standin.stockout("us-central1-a")  # Google took the capacity back in that zone
        standin.finish_preemption(name)
        # Action DELETE: the VM is gone, and GCE recorded why.
        assert standin.instances() == []
        assert [o["operationType"] for o in standin.operations("compute.instances.preempted")] == \
            ["compute.instances.preempted"]

        assert standin.reconcile_migs() == [{"event": "recreated", "vm": name, "zone": "us-central1-b"}]
        [again] = managed(migs)
        assert again.name == name and again.instance_status == "RUNNING"  # same name, same template
        assert again.version.instance_template.endswith("/global/instanceTemplates/llama-tpl")
        assert read("preempted") == "FALSE" and read("zone").endswith("/zones/us-central1-b")
    assert standin.contract_violations == []


def test_without_allow_changing_zone_the_repair_waits_for_its_zone(standin):
    """allowChangingZone NO (the default): the MIG retries in the same zone until it has capacity;
    meanwhile the managed instance is RECREATING with the stockout in lastAttempt."""
    _, migs = make_group(standin, action="STOP")
    migs.insert(project=standin.project, region=REGION,
                instance_group_manager_resource=mig_body(allow_changing_zone=False)).result()
    [member] = managed(migs)
    standin.begin_preemption(member.name)
    standin.finish_preemption(member.name)
    assert standin.instance(member.name)["status"] == "TERMINATED"  # action STOP keeps it, stopped
    standin.stockout("us-central1-a", times=1)
    assert standin.reconcile_migs() == []
    [waiting] = managed(migs)
    assert waiting.current_action == "RECREATING"
    assert waiting.last_attempt.errors.errors[0].code == "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"
    assert standin.reconcile_migs() == [{"event": "recreated", "vm": member.name, "zone": "us-central1-a"}]
    assert managed(migs)[0].current_action == "NONE"


def test_resize_to_zero_removes_the_vm_and_keeps_the_group(standin):
    _, migs = make_group(standin)
    migs.insert(project=standin.project, region=REGION, instance_group_manager_resource=mig_body()).result()
    migs.resize(project=standin.project, region=REGION, instance_group_manager="llama", size=0).result()
    assert standin.instances() == [] and managed(migs) == []
    assert migs.get(project=standin.project, region=REGION, instance_group_manager="llama").target_size == 0
    assert standin.reconcile_migs() == []  # a group of zero makes nothing


def test_a_vm_without_a_service_account_gets_no_token(standin):
    _, migs = make_group(standin, service_account=False)
    migs.insert(project=standin.project, region=REGION, instance_group_manager_resource=mig_body()).result()
    [member] = managed(migs)
    with InstanceMetadataServer(standin, member.name) as metadata:
        req = urllib.request.Request(f"http://{metadata.host}/computeMetadata/v1/instance/service-accounts/"
                                     "default/token", headers={"Metadata-Flavor": "Google"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 404
        no_header = urllib.request.Request(f"http://{metadata.host}/computeMetadata/v1/instance/preempted")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(no_header, timeout=5)
        assert err.value.code == 403
