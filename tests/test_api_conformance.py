"""The stand-ins held to Google's own description of its APIs (the discovery documents shipped in
google-api-python-client): every route they serve is a documented method with the same verb and
path; what they are sent and what they answer validates against the document's schemas; the
documented preconditions in tests/standins/GOOGLE_RULES.md are refused as Google refuses them."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import requests
from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from tests.standins import container as container_standin
from tests.standins import discovery
from tests.standins.billing_catalog import BillingCatalogStandIn
from tests.standins.compute import ROUTES, ComputeStandIn
from tests.standins.container import ContainerStandIn

P, ZONE = "gpuctl-test", "us-central1-a"
T0 = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def compute():
    with ComputeStandIn(P, clock=lambda: T0) as standin:
        yield standin


# ------------------------------------------------------------------ routes

def _compute_route_problems(routes) -> list[str]:
    """Each stand-in route must be the documented method of its name: same verb, and the
    document's path template (every parameter filled in) must route back to it."""
    problems = []
    for verb, pattern, rpc in routes:
        names = [rpc.format(verb=v) for v in re.findall(r"\(\?P<verb>([^)]*)\)", pattern.pattern)[0].split("|")] \
            if "{verb}" in rpc else [rpc]
        for name in names:
            method = discovery.methods("compute.v1").get(f"compute.{name}")
            if method is None:
                problems.append(f"{name}: not in compute.v1.json")
                continue
            if method.verb != verb:
                problems.append(f"{name}: served as {verb}, documented as {method.verb}")
            rest = method.sample_path().removeprefix(f"/compute/v1/projects/x1/")
            if not pattern.fullmatch(rest):
                problems.append(f"{name}: the documented path {method.template} is not what the stand-in serves")
    return problems


def test_every_compute_route_is_a_documented_method_with_its_verb_and_path():
    assert len(ROUTES) >= 30
    assert _compute_route_problems(ROUTES) == []


def test_the_route_check_fails_a_route_google_does_not_document():
    made_up = [("PATCH", re.compile(r"zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)"), "instances.get"),
               ("POST", re.compile(r"zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)/extendRunLimit"),
                "instances.extendRunLimit"),
               ("GET", re.compile(r"zones/(?P<zone>[^/]+)/vms/(?P<name>[^/]+)"), "instances.get")]
    assert _compute_route_problems(made_up) == [
        "instances.get: served as PATCH, documented as GET",
        "instances.extendRunLimit: not in compute.v1.json",
        "instances.get: the documented path compute/v1/projects/{project}/zones/{zone}/instances/{instance} "
        "is not what the stand-in serves"]


def test_every_container_route_is_a_documented_method_with_its_verb_and_path():
    for verb, pattern, _handler, documented in container_standin._ROUTES:
        api = documented.split(".")[0] + ".v1"
        method = discovery.methods(api)[documented]
        assert method.verb == verb, documented
        assert re.fullmatch(pattern, method.sample_path()), (documented, method.template)
        assert discovery.match(api, verb, method.sample_path()).id == documented


def test_the_billing_catalog_route_is_the_documented_skus_list():
    method = discovery.match("cloudbilling.v1", "GET", "/v1/services/6F81-5844-456A/skus")
    assert method is not None and method.id == "cloudbilling.services.skus.list"
    assert discovery.match("cloudbilling.v1", "POST", "/v1/services/6F81-5844-456A/skus") is None


# ------------------------------------------------------------------ the schema checker

def test_the_checker_refuses_unknown_fields_wrong_types_bad_enums_and_numeric_int64():
    assert discovery.check("compute.v1", "Scheduling", {
        "provisioningModel": "SPOT", "automaticRestart": False, "onHostMaintenance": "TERMINATE",
        "instanceTerminationAction": "DELETE", "maxRunDuration": {"seconds": "3600"}}) == []
    assert discovery.check("compute.v1", "Scheduling", {
        "maxRunDurationSeconds": 3600, "automaticRestart": "false", "provisioningModel": "CHEAP",
        "maxRunDuration": {"seconds": 3600}}) == [
        "maxRunDurationSeconds: unknown field (not in schema Scheduling)",
        "automaticRestart: expected a boolean, got 'false'",
        "provisioningModel: 'CHEAP' is not one of ['FLEX_START', 'RESERVATION_BOUND', 'SPOT', 'STANDARD']",
        "maxRunDuration.seconds: expected a string (int64), got 3600"]
    # Maps (labels) take any key; arrays are checked item by item, with the index in the name.
    assert discovery.check("compute.v1", "Instance", {"labels": {"any-key": "v"},
                                                      "disks": [{"boot": True}, {"boot": "yes"}]}) == [
        "disks[1].boot: expected a boolean, got 'yes'"]


def test_firewalls_and_resource_policies_have_no_labels_in_the_document():
    # GOOGLE_RULES.md: labels on resources whose schema has no labels field.
    schemas = discovery.document("compute.v1")["schemas"]
    assert "labels" in schemas["Instance"]["properties"]
    assert "labels" not in schemas["Firewall"]["properties"]
    assert "labels" not in schemas["ResourcePolicy"]["properties"]


# ------------------------------------------------------------------ the checks run in every request

def _raw(standin, method: str, rest: str, body: dict) -> requests.Response:
    return requests.request(method, f"{standin.endpoint}/compute/v1/projects/{P}/{rest}", json=body, timeout=10)


@pytest.mark.parametrize(("rest", "body", "field"), [
    ("global/firewalls", {"name": "fw", "allowed": [{"IPProtocol": "tcp"}], "labels": {"gpuctl-managed": "true"}},
     "labels: unknown field (not in schema Firewall)"),
    ("regions/us-central1/resourcePolicies", {"name": "stop", "labels": {"gpuctl-managed": "true"},
                                              "instanceSchedulePolicy": {"timeZone": "UTC",
                                                                         "vmStopSchedule": {"schedule": "0 6 * * *"}}},
     "labels: unknown field (not in schema ResourcePolicy)"),
    (f"zones/{ZONE}/instances", {"name": "vm", "scheduling": {"maxRunDuration": {"seconds": 3600}}},
     "scheduling.maxRunDuration.seconds: expected a string (int64), got 3600"),
    (f"zones/{ZONE}/instances", {"name": "vm", "scheduling": {"provisioningModel": "CHEAP"}},
     "scheduling.provisioningModel: 'CHEAP' is not one of"),
])
def test_a_body_the_document_refuses_is_refused_with_400_naming_the_field(compute, rest, body, field):
    answer = _raw(compute, "POST", rest, body)
    assert answer.status_code == 400
    assert field in answer.json()["error"]["message"]
    assert compute.instances() == [] and compute.firewalls() == [] and compute.resource_policies() == []
    assert any(field in v for v in compute.contract_violations)


def test_what_the_real_client_sends_and_the_stand_in_answers_conforms(compute):
    api = compute.clients()
    policy = compute_v1.ResourcePolicy(name="stop", description="gpuctl gpuctl-managed=true",
                                       instance_schedule_policy=compute_v1.ResourcePolicyInstanceSchedulePolicy(
                                           time_zone="Asia/Tokyo", vm_stop_schedule=compute_v1.
                                           ResourcePolicyInstanceSchedulePolicySchedule(schedule="0 6 * * *")))
    api.resource_policies.insert(project=P, region="us-central1", resource_policy_resource=policy).result()
    link = api.resource_policies.get(project=P, region="us-central1", resource_policy="stop").self_link
    api.instances.insert(project=P, zone=ZONE, instance_resource=compute_v1.Instance(
        name="vm", machine_type=f"zones/{ZONE}/machineTypes/g2-standard-8", resource_policies=[link],
        disks=[compute_v1.AttachedDisk(boot=True, auto_delete=True, initialize_params=compute_v1.
                                       AttachedDiskInitializeParams(source_image="projects/x/global/images/y"))],
        scheduling=compute_v1.Scheduling(provisioning_model="SPOT", automatic_restart=False,
                                         on_host_maintenance="TERMINATE", instance_termination_action="DELETE",
                                         max_run_duration=compute_v1.Duration(seconds=3600)))).result()
    list(api.instances.aggregated_list(request={"project": P}))
    api.instances.get(project=P, zone=ZONE, instance="vm")
    assert [r.status for r in compute.requests] and all(r.status == 200 for r in compute.requests)
    assert compute.contract_violations == []


def test_a_stand_in_answer_the_document_refuses_fails_loudly(compute, monkeypatch):
    monkeypatch.setattr(ComputeStandIn, "_h_zones_list", lambda self, req: {"items": [{"name": 5}]}, raising=False)
    answer = requests.get(f"{compute.endpoint}/compute/v1/projects/{P}/zones", timeout=10)
    assert answer.status_code == 500 and "items[0].name: expected a string" in answer.json()["error"]["message"]


def test_container_stand_in_refuses_a_body_the_document_refuses():
    with ContainerStandIn() as gke:
        answer = requests.post(f"{gke.endpoint}/v1/projects/{gke.project}/locations/us-central1-a/clusters",
                               json={"cluster": {"name": "c", "nodePools": [{"name": "p", "spotty": True}]}},
                               timeout=10)
        assert answer.status_code == 400
        assert "cluster.nodePools[0].spotty: unknown field (not in schema NodePool)" in answer.json()["error"]["message"]
        assert gke.cluster_names() == []


def test_billing_stand_in_answers_conform():
    with BillingCatalogStandIn() as billing:
        answer = requests.get(f"{billing.endpoint}/v1/services/{billing.service}/skus", timeout=10)
        assert answer.status_code == 200 and answer.json()["skus"]
        assert billing.contract_violations == []
        method = discovery.methods("cloudbilling.v1")["cloudbilling.services.skus.list"]
        assert discovery.response_problems("cloudbilling.v1", method, {"skus": [{"skuId": 1}]}) == [
            "skus[0].skuId: expected a string (text), got 1"]


# ------------------------------------------------------------------ documented preconditions (GOOGLE_RULES.md)

def _instance(name: str, **scheduling) -> compute_v1.Instance:
    sched = dict(provisioning_model="SPOT", automatic_restart=False, on_host_maintenance="TERMINATE",
                 instance_termination_action="DELETE")
    sched.update(scheduling)
    return compute_v1.Instance(
        name=name, machine_type=f"zones/{ZONE}/machineTypes/g2-standard-8",
        disks=[compute_v1.AttachedDisk(boot=True, auto_delete=True, initialize_params=compute_v1.
                                       AttachedDiskInitializeParams(source_image="projects/x/global/images/y"))],
        scheduling=compute_v1.Scheduling(**sched))


@pytest.mark.parametrize(("scheduling", "text"), [
    ({"max_run_duration": compute_v1.Duration(seconds=29)}, "between 30 seconds and 120 days"),
    ({"max_run_duration": compute_v1.Duration(seconds=120 * 86400 + 1)}, "between 30 seconds and 120 days"),
    ({"automatic_restart": True}, "AutomaticRestart is true"),
    ({"on_host_maintenance": "MIGRATE"}, "do not support live migration"),
])
def test_documented_scheduling_preconditions_are_refused(compute, scheduling, text):
    with pytest.raises(gexc.BadRequest, match=re.escape(text)):
        compute.clients().instances.insert(project=P, zone=ZONE, instance_resource=_instance("vm", **scheduling))
    assert compute.instances() == []


def test_the_run_limit_bounds_are_inclusive(compute):
    api = compute.clients()
    for name, seconds in (("short", 30), ("long", 120 * 86400)):
        api.instances.insert(project=P, zone=ZONE, instance_resource=_instance(
            name, max_run_duration=compute_v1.Duration(seconds=seconds))).result()
    assert sorted(vm["name"] for vm in compute.instances()) == ["long", "short"]
