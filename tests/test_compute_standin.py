"""The Compute Engine stand-in, driven through the real google-cloud-compute client (REST
transport, anonymous credentials): every endpoint gpuctl uses, every fault it can inject, and what
the client makes of each (exception class, message, retries)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import requests
from google.api_core import exceptions as gexc
from google.api_core import retry as retries
from google.api_core.future import polling
from google.cloud import compute_v1

from tests.standins.compute import ComputeStandIn, compute_standin  # noqa: F401 - the fixture gpuctl tests use
from tests.standins.compute_base import parse_timestamp

P = "gpuctl-test"
ZONE = "us-central1-a"
IMAGE = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts"
FAST = retries.Retry(predicate=polling.DEFAULT_POLLING._predicate, initial=0.01, maximum=0.02,
                     multiplier=1.0, timeout=10)
T0 = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.timezone.utc)
ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIHc2V0mRz9TnKXqS8yq4x1m1iS9lqz7bN3c4K8e3xYzN"


@pytest.fixture
def standin():
    with ComputeStandIn(P, clock=lambda: T0) as s:
        yield s


@pytest.fixture
def api(standin):
    return standin.clients()


def vm(name: str, zone: str = ZONE, machine: str = "n1-highmem-8", gpu: str | None = "nvidia-tesla-t4", *,
       labels: dict | None = None, action: str = "DELETE", max_run: int | None = 3600, auto_delete: bool = True,
       scratch: int = 1, metadata: dict | None = None, spot: bool = True, policies=(), **scheduling):
    sched = dict(provisioning_model="SPOT", automatic_restart=False, on_host_maintenance="TERMINATE",
                 instance_termination_action=action) if spot else dict(on_host_maintenance="TERMINATE")
    if max_run:
        sched["max_run_duration"] = compute_v1.Duration(seconds=max_run)
    sched.update(scheduling)
    disks = [compute_v1.AttachedDisk(boot=True, auto_delete=auto_delete, initialize_params=compute_v1.AttachedDiskInitializeParams(
        source_image=IMAGE, disk_size_gb=100, disk_type=f"zones/{zone}/diskTypes/pd-ssd", labels=labels or {}))]
    disks += [compute_v1.AttachedDisk(type_="SCRATCH", interface="NVME", auto_delete=True,
                                      initialize_params=compute_v1.AttachedDiskInitializeParams(
                                          disk_type=f"zones/{zone}/diskTypes/local-ssd")) for _ in range(scratch)]
    return compute_v1.Instance(
        name=name, machine_type=f"zones/{zone}/machineTypes/{machine}", labels=labels or {}, disks=disks,
        description=f"gpuctl run {name}",
        guest_accelerators=[compute_v1.AcceleratorConfig(
            accelerator_type=f"zones/{zone}/acceleratorTypes/{gpu}", accelerator_count=1)] if gpu else [],
        network_interfaces=[compute_v1.NetworkInterface(access_configs=[compute_v1.AccessConfig(name="External NAT")])],
        metadata=compute_v1.Metadata(items=[compute_v1.Items(key=k, value=v) for k, v in (metadata or {}).items()]),
        scheduling=compute_v1.Scheduling(**sched), resource_policies=list(policies))


def create(api, instance, zone: str = ZONE):
    op = api.instances.insert(project=P, zone=zone, instance_resource=instance)
    op.result(polling=FAST)
    return op


def managed(name: str, owner: str = "alice") -> dict:
    return {"gpuctl-managed": "true", "gpuctl-name": name, "gpuctl-owner": owner}


# ------------------------------------------------------------------ instances and disks

def test_insert_then_get_returns_the_instance_as_gce_describes_it(standin, api):
    op = create(api, vm("train-1", labels=managed("train-1"), metadata={"enable-guest-attributes": "TRUE"}))
    assert op.done() and op.error_code in (0, None) and op.name.startswith("operation-")
    got = api.instances.get(project=P, zone=ZONE, instance="train-1")
    base = f"https://www.googleapis.com/compute/v1/projects/{P}/zones/{ZONE}"
    assert (got.status, got.zone, got.self_link) == ("RUNNING", base, f"{base}/instances/train-1")
    assert got.machine_type == f"{base}/machineTypes/n1-highmem-8"
    assert dict(got.labels) == managed("train-1") and got.label_fingerprint
    assert int(got.id) > 0 and parse_timestamp(got.creation_timestamp) == T0
    assert got.creation_timestamp == "2026-11-22T19:00:00.000-08:00"  # GCE writes Pacific time
    s = got.scheduling
    assert (s.provisioning_model, s.automatic_restart, s.instance_termination_action, s.on_host_maintenance) == (
        "SPOT", False, "DELETE", "TERMINATE")
    assert s.max_run_duration.seconds == 3600
    assert parse_timestamp(got.resource_status.scheduling.termination_timestamp) == T0 + dt.timedelta(hours=1)
    assert [(a.accelerator_type, a.accelerator_count) for a in got.guest_accelerators] == [
        (f"{base}/acceleratorTypes/nvidia-tesla-t4", 1)]
    nic = got.network_interfaces[0]
    assert nic.network_i_p.startswith("10.128.0.") and nic.access_configs[0].nat_i_p.startswith("203.0.113.")
    boot, ssd = got.disks
    assert (boot.boot, boot.auto_delete, boot.source, boot.disk_size_gb) == (True, True, f"{base}/disks/train-1", 100)
    assert (ssd.type_, ssd.interface, ssd.disk_size_gb, ssd.boot) == ("SCRATCH", "NVME", 375, False)
    assert {i.key: i.value for i in got.metadata.items} == {"enable-guest-attributes": "TRUE"}
    # What the client sent is recorded as JSON, int64 as strings.
    sent = standin.calls("instances.insert")[0].body
    assert sent["scheduling"]["maxRunDuration"] == {"seconds": "3600"} and sent["name"] == "train-1"


def test_boot_disk_is_made_from_initialize_params_and_follows_auto_delete(standin, api):
    create(api, vm("keep", labels=managed("keep"), auto_delete=False))
    create(api, vm("drop", labels=managed("drop")))
    disk = api.disks.get(project=P, zone=ZONE, disk="keep")
    assert dict(disk.labels) == managed("keep") and disk.size_gb == 100 and disk.type_.endswith("/diskTypes/pd-ssd")
    assert list(disk.users) == [f"https://www.googleapis.com/compute/v1/projects/{P}/zones/{ZONE}/instances/keep"]
    with pytest.raises(gexc.BadRequest, match="already being used by"):
        api.disks.delete(project=P, zone=ZONE, disk="keep")
    for name in ("keep", "drop"):
        api.instances.delete(project=P, zone=ZONE, instance=name).result(polling=FAST)
    assert [d.name for d in api.disks.list(project=P, zone=ZONE)] == ["keep"]  # autoDelete false: left behind
    assert not api.disks.get(project=P, zone=ZONE, disk="keep").users
    with pytest.raises(gexc.Conflict, match=f"projects/{P}/zones/{ZONE}/disks/keep' already exists"):
        create(api, vm("keep"))  # the leftover disk blocks a new VM of the same name
    api.disks.delete(project=P, zone=ZONE, disk="keep").result(polling=FAST)
    create(api, vm("keep"))


def test_auto_delete_defaults_to_false_as_in_the_api(standin, api):
    instance = vm("bare")
    instance.disks[0]._pb.ClearField("auto_delete")
    create(api, instance)
    api.instances.delete(project=P, zone=ZONE, instance="bare").result(polling=FAST)
    assert [d["name"] for d in standin.disks()] == ["bare"]


def test_each_vm_gets_its_own_external_address_and_a_test_can_pin_one(standin, api):
    standin.nat_ips["ssh-box"] = "10.200.0.2"
    for name in ("a", "b", "ssh-box"):
        create(api, vm(name))
    ips = {n: api.instances.get(project=P, zone=ZONE, instance=n).network_interfaces[0].access_configs[0].nat_i_p
           for n in ("a", "b", "ssh-box")}
    assert ips["ssh-box"] == "10.200.0.2" and ips["a"] != ips["b"]
    api.instances.stop(project=P, zone=ZONE, instance="a").result(polling=FAST)
    stopped = api.instances.get(project=P, zone=ZONE, instance="a")
    assert stopped.status == "TERMINATED" and not stopped.network_interfaces[0].access_configs[0].nat_i_p
    assert not stopped.resource_status.scheduling.termination_timestamp
    api.instances.start(project=P, zone=ZONE, instance="a").result(polling=FAST)
    restarted = api.instances.get(project=P, zone=ZONE, instance="a").network_interfaces[0].access_configs[0]
    assert restarted.nat_i_p and restarted.nat_i_p != ips["a"]  # a new ephemeral address
    standin.set_nat_ip("b", "10.200.0.3")
    assert api.instances.get(project=P, zone=ZONE, instance="b").network_interfaces[0].access_configs[0].nat_i_p \
        == "10.200.0.3"


def test_status_goes_provisioning_staging_running_one_step_per_boot_steps_reads(standin, api):
    standin.boot_steps = 2
    create(api, vm("slow"))
    seen = [api.instances.get(project=P, zone=ZONE, instance="slow").status for _ in range(6)]
    assert seen == ["PROVISIONING", "PROVISIONING", "STAGING", "STAGING", "RUNNING", "RUNNING"]
    assert api.instances.get(project=P, zone=ZONE, instance="slow").last_start_timestamp


def test_set_scheduling_is_refused_on_a_running_vm_and_applies_to_a_stopped_one(standin, api):
    # compute.v1.json, instances.setScheduling: "You can only call this method on a stopped
    # instance, that is, a VM instance that is in a `TERMINATED` state" (GOOGLE_RULES.md).
    create(api, vm("s"))
    new = compute_v1.Scheduling(provisioning_model="SPOT", automatic_restart=False, on_host_maintenance="TERMINATE",
                                instance_termination_action="STOP", max_run_duration=compute_v1.Duration(seconds=7200))
    before = api.instances.get(project=P, zone=ZONE, instance="s").scheduling
    with pytest.raises(gexc.BadRequest, match="TERMINATED"):
        api.instances.set_scheduling(project=P, zone=ZONE, instance="s", scheduling_resource=new)
    assert api.instances.get(project=P, zone=ZONE, instance="s").scheduling == before  # nothing moved
    api.instances.stop(project=P, zone=ZONE, instance="s").result(polling=FAST)
    api.instances.set_scheduling(project=P, zone=ZONE, instance="s", scheduling_resource=new).result(polling=FAST)
    api.instances.start(project=P, zone=ZONE, instance="s").result(polling=FAST)
    got = api.instances.get(project=P, zone=ZONE, instance="s")
    assert (got.scheduling.instance_termination_action, got.scheduling.max_run_duration.seconds) == ("STOP", 7200)
    assert parse_timestamp(got.resource_status.scheduling.termination_timestamp) == T0 + dt.timedelta(hours=2)
    assert standin.calls("instances.setScheduling")[-1].body["maxRunDuration"] == {"seconds": "7200"}
    api.instances.stop(project=P, zone=ZONE, instance="s").result(polling=FAST)
    with pytest.raises(gexc.BadRequest, match="AutomaticRestart is true"):
        api.instances.set_scheduling(project=P, zone=ZONE, instance="s", scheduling_resource=compute_v1.Scheduling(
            provisioning_model="SPOT", on_host_maintenance="TERMINATE"))


def test_set_labels_needs_the_current_fingerprint(api):
    create(api, vm("l", labels=managed("l")))
    fp = api.instances.get(project=P, zone=ZONE, instance="l").label_fingerprint
    request = compute_v1.InstancesSetLabelsRequest(labels={**managed("l"), "gpuctl-expiry": "x"}, label_fingerprint=fp)
    api.instances.set_labels(project=P, zone=ZONE, instance="l", instances_set_labels_request_resource=request).result()
    assert api.instances.get(project=P, zone=ZONE, instance="l").labels["gpuctl-expiry"] == "x"
    with pytest.raises(gexc.PreconditionFailed, match="fingerprint"):
        api.instances.set_labels(project=P, zone=ZONE, instance="l", instances_set_labels_request_resource=request)


def test_guest_attributes_give_host_keys_once_the_guest_wrote_them(standin, api):
    create(api, vm("k", metadata={"enable-guest-attributes": "TRUE"}))
    with pytest.raises(gexc.NotFound):
        api.instances.get_guest_attributes(request={"project": P, "zone": ZONE, "instance": "k",
                                                   "query_path": "hostkeys/"})
    standin.set_host_keys("k", {"ssh-ed25519": ED25519, "ecdsa-sha2-nistp256": "AAAAE2Vj"})
    got = api.instances.get_guest_attributes(request={"project": P, "zone": ZONE, "instance": "k",
                                                   "query_path": "hostkeys/"})
    assert got.query_path == "hostkeys/"
    assert [(i.namespace, i.key, i.value) for i in got.query_value.items] == [
        ("hostkeys", "ecdsa-sha2-nistp256", "AAAAE2Vj"), ("hostkeys", "ssh-ed25519", ED25519)]
    assert standin.calls("instances.getGuestAttributes")[-1].query == {"queryPath": "hostkeys/"}
    one = api.instances.get_guest_attributes(request={"project": P, "zone": ZONE, "instance": "k",
                                                "variable_key": "hostkeys/ssh-ed25519"})
    assert one.variable_value == ED25519
    create(api, vm("no-attrs"))  # guest attributes not enabled: the agent cannot publish them
    standin.set_host_keys("no-attrs", {"ssh-ed25519": ED25519})
    with pytest.raises(gexc.NotFound, match="guestAttributes/hostkeys/"):
        api.instances.get_guest_attributes(request={"project": P, "zone": ZONE, "instance": "no-attrs",
                                                   "query_path": "hostkeys/"})


# ------------------------------------------------------------------ validation on insert

@pytest.mark.parametrize(("instance", "zone", "error", "text"), [
    (vm("Bad_Name"), ZONE, gexc.BadRequest, "Must be a match of regex"),
    (vm("h100", zone="asia-northeast1-a", machine="a3-highgpu-1g", gpu=None, scratch=0), "asia-northeast1-a",
     gexc.BadRequest, "Machine type with name 'a3-highgpu-1g' does not exist in zone 'asia-northeast1-a'."),
    (vm("a80", zone="asia-northeast1-c", machine="a2-ultragpu-1g", gpu=None, scratch=0), "asia-northeast1-c",
     gexc.BadRequest, "Machine type with name 'a2-ultragpu-1g' does not exist"),
    (vm("t4", zone="asia-northeast1-b"), "asia-northeast1-b", gexc.NotFound,
     f"'projects/{P}/zones/asia-northeast1-b/acceleratorTypes/nvidia-tesla-t4' was not found"),
    (vm("restart", automatic_restart=True), ZONE, gexc.BadRequest, "AutomaticRestart is true"),
    (vm("migrate", on_host_maintenance="MIGRATE"), ZONE, gexc.BadRequest, "do not support live migration"),
    (vm("caps", labels={"gpuctl-owner": "Alice"}), ZONE, gexc.BadRequest, "Label value 'Alice' violates format"),
    (vm("both", termination_time="2026-11-24T00:00:00Z"), ZONE, gexc.BadRequest, "Only one of maxRunDuration"),
    (vm("short", max_run=10), ZONE, gexc.BadRequest, "between 30 seconds and 120 days"),
    (vm("no-action", spot=False, max_run=3600), ZONE, gexc.BadRequest, "termination action must be specified"),
    (vm("ssd", machine="a2-ultragpu-1g", gpu=None, scratch=1), ZONE, gexc.BadRequest, "comes with 1 local SSD"),
    (vm("h100-od", machine="a3-highgpu-1g", gpu=None, scratch=0, spot=False, max_run=None), ZONE, gexc.BadRequest,
     "a3-highgpu-1g is not available with the STANDARD provisioning model"),
    (vm("zone-typo", zone="us-central1-z"), "us-central1-z", gexc.BadRequest,
     "Invalid value for field 'zone': 'us-central1-z'. Unknown zone."),
    (vm("policy", policies=["regions/us-central1/resourcePolicies/nope"]), ZONE, gexc.NotFound,
     "resourcePolicies/nope' was not found"),
])
def test_insert_refuses_what_gce_refuses(standin, api, instance, zone, error, text):
    with pytest.raises(error, match=re.escape(text)):
        api.instances.insert(project=P, zone=zone, instance_resource=instance)
    assert standin.instances() == [] and standin.disks() == []


def test_machine_shapes_follow_the_zone_catalog(standin, api):
    create(api, vm("h100", zone="asia-northeast1-b", machine="a3-highgpu-1g", gpu=None, scratch=0), "asia-northeast1-b")
    got = api.instances.get(project=P, zone="asia-northeast1-b", instance="h100")
    assert [(d.type_, d.interface) for d in got.disks[1:]] == [("SCRATCH", "NVME")] * 2  # bundled local SSD
    assert got.network_interfaces[0].network_i_p.startswith("10.146.0.")
    mt = api.machine_types.get(project=P, zone="asia-northeast1-b", machine_type="a3-highgpu-1g")
    assert (mt.guest_cpus, mt.accelerators[0].guest_accelerator_type, mt.bundled_local_ssds.partition_count) == (
        26, "nvidia-h100-80gb", 2)
    with pytest.raises(gexc.NotFound):
        api.machine_types.get(project=P, zone="asia-northeast1-a", machine_type="a3-highgpu-1g")
    accelerators = lambda z: sorted(a.name for a in api.accelerator_types.list(project=P, zone=z))  # noqa: E731
    assert accelerators("us-central1-f") == ["nvidia-tesla-a100", "nvidia-tesla-p100",
                                             "nvidia-tesla-t4", "nvidia-tesla-v100"]
    assert accelerators("asia-northeast1-b") == ["nvidia-b200", "nvidia-h100-80gb",
                                                 "nvidia-h100-mega-80gb", "nvidia-l4"]
    standin.remove_from_zone(ZONE, machine_type="g2-standard-8")
    with pytest.raises(gexc.BadRequest, match="'g2-standard-8' does not exist in zone 'us-central1-a'"):
        create(api, vm("l4", machine="g2-standard-8", gpu=None))


def test_flex_start_is_refused_where_google_refuses_it(standin, api):
    """GOOGLE_RULES.md, flex-start rows: accelerator-optimized types only, a run duration of at
    most seven days, never stopped by the user."""
    def flex(name, machine="a2-highgpu-1g", seconds=3600, gpu=None, scratch=0):
        body = vm(name, machine=machine, gpu=gpu, scratch=scratch)
        body.scheduling = compute_v1.Scheduling(
            provisioning_model="FLEX_START", automatic_restart=False,
            on_host_maintenance="TERMINATE", instance_termination_action="DELETE",
            **({"max_run_duration": compute_v1.Duration(seconds=seconds)} if seconds else {}))
        return body

    with pytest.raises(gexc.BadRequest, match="n1-highmem-8 is not available with the FLEX_START"):
        api.instances.insert(project=P, zone=ZONE, instance_resource=flex(
            "n1", machine="n1-highmem-8", gpu="nvidia-tesla-t4", scratch=1))
    with pytest.raises(gexc.BadRequest, match="needs a max run duration"):
        api.instances.insert(project=P, zone=ZONE, instance_resource=flex("forever", seconds=0))
    with pytest.raises(gexc.BadRequest, match="at most 7 days"):
        api.instances.insert(project=P, zone=ZONE, instance_resource=flex("long", seconds=8 * 86400))
    assert standin.instances() == []
    create(api, flex("ok", seconds=7 * 86400))
    with pytest.raises(gexc.BadRequest, match="cannot be stopped"):
        api.instances.stop(project=P, zone=ZONE, instance="ok")


# ------------------------------------------------------------------ operations

def test_operations_answer_pending_then_done_and_result_polls_them(standin, api):
    standin.operation_polls = 2
    op = api.instances.insert(project=P, zone=ZONE, instance_resource=vm("p"))
    assert op.status == compute_v1.Operation.Status.PENDING and not standin.calls("zoneOperations.get")
    assert op.result(polling=FAST) is None
    polls = standin.calls("zoneOperations.get")
    assert len(polls) == 2 and polls[0].path == f"/compute/v1/projects/{P}/zones/{ZONE}/operations/{op.name}"
    assert op.status == compute_v1.Operation.Status.DONE and op.end_time
    waited = api.instances.delete(project=P, zone=ZONE, instance="p")
    assert api.instances.get(project=P, zone=ZONE, instance="p").status == "STOPPING"
    done = api.zone_operations.wait(project=P, zone=ZONE, operation=waited.name)
    assert done.status == compute_v1.Operation.Status.DONE and done.operation_type == "delete"
    with pytest.raises(gexc.NotFound):
        api.instances.get(project=P, zone=ZONE, instance="p")
    with pytest.raises(gexc.NotFound, match="operations/operation-0' was not found"):
        api.zone_operations.get(project=P, zone=ZONE, operation="operation-0")


def test_a_client_not_wired_would_poll_the_real_endpoint(standin):
    plain = compute_v1.InstancesClient(**standin.client_kwargs())
    assert plain._transport._zone_operations_client._transport._host == "https://compute.googleapis.com"
    wired = standin.client(compute_v1.InstancesClient)
    assert wired._transport._zone_operations_client._transport._host == standin.endpoint
    firewalls = standin.client(compute_v1.FirewallsClient)
    assert firewalls._transport._global_operations_client._transport._host == standin.endpoint


def test_repeated_request_id_returns_the_first_operation(standin, api):
    first = api.instances.insert(request={"project": P, "zone": ZONE, "instance_resource": vm("once"),
                                          "request_id": "6f0c5f3e-0000-4000-8000-000000000001"})
    again = api.instances.insert(request={"project": P, "zone": ZONE, "instance_resource": vm("once"),
                                          "request_id": "6f0c5f3e-0000-4000-8000-000000000001"})
    assert again.name == first.name and len(standin.instances()) == 1


# ------------------------------------------------------------------ lists, filters, paging

def _names(pager) -> list[str]:
    return sorted(i.name for i in pager)


def test_list_filters_and_pages(standin, api):
    for i in range(5):
        create(api, vm(f"vm-{i}", labels=managed(f"vm-{i}") if i % 2 == 0 else {}))
    request = {"project": P, "zone": ZONE, "filter": 'labels.gpuctl-managed = "true"', "max_results": 2}
    assert _names(api.instances.list(request=request)) == ["vm-0", "vm-2", "vm-4"]
    calls = standin.calls("instances.list")
    assert len(calls) == 2 and "pageToken" not in calls[0].query and calls[1].query["pageToken"]
    assert calls[0].query == {"filter": 'labels.gpuctl-managed = "true"', "maxResults": "2"}
    with pytest.raises(gexc.BadRequest, match="pageToken"):
        api.instances.list(request={"project": P, "zone": ZONE, "page_token": "bogus"})
    with pytest.raises(gexc.BadRequest, match="maxResults"):
        api.instances.list(request={"project": P, "zone": ZONE, "max_results": 501})


def test_aggregated_list_pages_across_zones_with_warnings_for_empty_scopes(standin, api):
    placements = {"us-central1-a": 3, "us-central1-c": 2, "asia-northeast1-a": 2}
    for zone, count in placements.items():
        for i in range(count):
            create(api, vm(f"{zone}-{i}", zone=zone, labels=managed(f"{zone}-{i}")), zone)
    create(api, vm("stray", zone="us-central1-b"), "us-central1-b")
    pager = api.instances.aggregated_list(request={"project": P, "filter": "labels.gpuctl-managed = true",
                                                   "max_results": 3})
    pages = list(pager.pages)
    assert len(pages) == 3  # 7 managed instances, 3 per page
    seen = [(scope, i.name) for page in pages for scope, scoped in page.items.items() for i in scoped.instances]
    assert sorted(seen) == sorted((f"zones/{z}", f"{z}-{i}") for z, n in placements.items() for i in range(n))
    first = pages[0].items
    from tests.standins.compute_catalog import ZONES

    assert len(first) == len(ZONES) > 90  # every known zone appears on every page
    assert first["zones/us-central1-f"].warning.code == "NO_RESULTS_ON_PAGE"
    assert not first["zones/us-central1-f"].instances
    calls = standin.calls("instances.aggregatedList")
    assert len(calls) == 3 and not standin.calls("instances.list")
    assert [c.query.get("pageToken") is None for c in calls] == [True, False, False]
    assert all(c.query["maxResults"] == "3" for c in calls)


def test_aggregated_list_with_an_unreachable_zone(standin, api):
    create(api, vm("far", zone="asia-northeast1-c"), "asia-northeast1-c")
    create(api, vm("near"))
    standin.make_unreachable("asia-northeast1-c")
    # google-cloud-compute 1.57 cannot send returnPartialSuccess: the scope carries a warning.
    whole = api.instances.aggregated_list(request={"project": P})
    assert dict(whole)["zones/asia-northeast1-c"].warning.code == "UNREACHABLE" and not whole.unreachables
    assert [i.name for _, s in whole for i in s.instances] == ["near"]
    # Sent by hand (another client, or a later version), the zone is named in `unreachables`.
    answer = requests.get(f"{standin.endpoint}/compute/v1/projects/{P}/aggregated/instances",
                          params={"returnPartialSuccess": "true"}, timeout=5).json()
    assert answer["unreachables"] == ["zones/asia-northeast1-c"]
    assert "zones/asia-northeast1-c" not in answer["items"]


@pytest.mark.parametrize(("expression", "expected"), [
    ('labels.gpuctl-managed = "true"', ["a", "b", "c"]),
    ('labels.gpuctl-name = "b"', ["b"]),
    ('labels.gpuctl-managed="true" AND labels.gpuctl-owner = "bob"', ["c"]),
    ('(labels.gpuctl-managed = "true") AND (labels.gpuctl-name = "a")', ["a"]),
    ('(labels.gpuctl-managed = "true") (labels.gpuctl-owner = "alice")', ["a", "b"]),
    ('(name = "a") OR (name = "c") AND (labels.gpuctl-owner = "bob")', ["c"]),  # OR binds tighter
    ('(name = "a") OR (name = "d")', ["a", "d"]),
    ('name = "d"', ["d"]),
    ("name != a", ["b", "c", "d"]),
    ('description : "run b"', ["b"]),
    ("labels.gpuctl-owner:*", ["a", "b", "c"]),
    ('scheduling.instanceTerminationAction = "STOP"', ["d"]),
    ("scheduling.automaticRestart = false", ["a", "b", "c", "d"]),
    ('status = "RUNNING"', ["a", "b", "c", "d"]),
    ("name eq [ab]", ["a", "b"]),
    ("name ne a", ["b", "c", "d"]),
    ("labels.gpuctl-owner eq 'bo.*'", ["c"]),
    ('(name eq "[a-c]") (labels.gpuctl-owner ne alice)', ["c"]),
])
def test_filters_gpuctl_sends(api, expression, expected):
    for name, owner in (("a", "alice"), ("b", "alice"), ("c", "bob")):
        create(api, vm(name, labels=managed(name, owner)))
    create(api, vm("d", action="STOP"))
    assert _names(api.instances.list(request={"project": P, "zone": ZONE, "filter": expression})) == expected
    agg = api.instances.aggregated_list(request={"project": P, "filter": expression})
    assert sorted(i.name for _, s in agg for i in s.instances) == expected


@pytest.mark.parametrize("expression", [
    'NOT name = "a"', 'labels.gpuctl-name = "a*"', 'nosuchfield = "x"', 'name = "a" AND name eq b',
    '(name = "a"', 'name', 'name = "a")', "name ~ a",
])
def test_unsupported_filters_are_refused_never_read_as_match_all(standin, api, expression):
    create(api, vm("a", labels=managed("a")))
    with pytest.raises(gexc.BadRequest, match="Invalid list filter expression"):
        list(api.instances.list(request={"project": P, "zone": ZONE, "filter": expression}))


# ------------------------------------------------------------------ firewalls and resource policies

def _firewall(name: str, description: str = "gpuctl gpuctl-managed=true gpuctl-name=x", cidr: str = "198.51.100.7/32"):
    return compute_v1.Firewall(name=name, description=description, source_ranges=[cidr], target_tags=[name],
                               allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=["22"])])


def test_firewalls_insert_get_list_delete(standin, api):
    api.firewalls.insert(project=P, firewall_resource=_firewall("gpuctl-ssh-x")).result(polling=FAST)
    api.firewalls.insert(project=P, firewall_resource=_firewall("other", description="hand made")).result()
    got = api.firewalls.get(project=P, firewall="gpuctl-ssh-x")
    assert (list(got.source_ranges), got.allowed[0].I_p_protocol, list(got.allowed[0].ports)) == (
        ["198.51.100.7/32"], "tcp", ["22"])
    assert got.network == f"https://www.googleapis.com/compute/v1/projects/{P}/global/networks/default"
    assert got.direction == "INGRESS" and got.priority == 1000
    assert standin.calls("firewalls.insert")[0].body["allowed"] == [{"IPProtocol": "tcp", "ports": ["22"]}]
    found = api.firewalls.list(request={"project": P, "filter": 'description : "gpuctl-name=x"'})
    assert _names(found) == ["gpuctl-ssh-x"]
    with pytest.raises(gexc.Conflict):
        api.firewalls.insert(project=P, firewall_resource=_firewall("gpuctl-ssh-x"))
    with pytest.raises(gexc.BadRequest, match="sourceRanges"):
        api.firewalls.insert(project=P, firewall_resource=_firewall("bad", cidr="300.1.2.3/32"))
    op = api.firewalls.delete(project=P, firewall="gpuctl-ssh-x")
    op.result(polling=FAST)
    assert op.operation_type == "delete" and "global/operations/" in op.self_link
    assert _names(api.firewalls.list(project=P)) == ["other"]


def _policy(name: str, description: str = "gpuctl gpuctl-managed=true gpuctl-name=x"):
    return compute_v1.ResourcePolicy(name=name, description=description, instance_schedule_policy=(
        compute_v1.ResourcePolicyInstanceSchedulePolicy(
            time_zone="Asia/Tokyo",
            vm_stop_schedule=compute_v1.ResourcePolicyInstanceSchedulePolicySchedule(schedule="0 6 * * *"))))


def test_resource_policies_attach_and_cannot_be_deleted_while_used(standin, api):
    region = "us-central1"
    api.resource_policies.insert(project=P, region=region, resource_policy_resource=_policy("stop-x")).result(polling=FAST)
    policy = api.resource_policies.get(project=P, region=region, resource_policy="stop-x")
    assert policy.instance_schedule_policy.vm_stop_schedule.schedule == "0 6 * * *" and policy.status == "READY"
    create(api, vm("x", policies=[policy.self_link]))
    assert list(api.instances.get(project=P, zone=ZONE, instance="x").resource_policies) == [policy.self_link]
    with pytest.raises(gexc.BadRequest, match="already being used by 'projects/gpuctl-test/zones/us-central1-a/instances/x'"):
        api.resource_policies.delete(project=P, region=region, resource_policy="stop-x")
    assert standin.calls("resourcePolicies.delete")[-1].status == 400
    with pytest.raises(gexc.BadRequest, match="same region"):
        create(api, vm("tokyo", zone="asia-northeast1-a", policies=[policy.self_link]), "asia-northeast1-a")
    agg = api.resource_policies.aggregated_list(request={"project": P})
    assert [(scope, p.name) for scope, s in agg for p in s.resource_policies] == [("regions/us-central1", "stop-x")]
    with pytest.raises(gexc.Conflict):
        api.resource_policies.insert(project=P, region=region, resource_policy_resource=_policy("stop-x"))
    api.instances.delete(project=P, zone=ZONE, instance="x").result(polling=FAST)
    op = api.resource_policies.delete(project=P, region=region, resource_policy="stop-x")
    op.result(polling=FAST)
    assert "regions/us-central1/operations/" in op.self_link
    assert _names(api.resource_policies.list(project=P, region=region)) == []


def test_labelled_resources_reports_what_is_left(standin, api):
    create(api, vm("x", labels=managed("x"), auto_delete=False))
    api.firewalls.insert(project=P, firewall_resource=_firewall("gpuctl-ssh-x")).result()
    api.resource_policies.insert(project=P, region="us-central1", resource_policy_resource=_policy("stop-x")).result()
    create(api, vm("y", labels=managed("y")))
    assert standin.labelled_resources("gpuctl-name", "x") == {
        "instances": ["us-central1-a/x"], "disks": ["us-central1-a/x"], "firewalls": ["gpuctl-ssh-x"],
        "resourcePolicies": ["us-central1/stop-x"]}
    assert standin.labelled_resources("gpuctl-managed")["instances"] == ["us-central1-a/x", "us-central1-a/y"]
    api.instances.delete(project=P, zone=ZONE, instance="x").result()
    api.firewalls.delete(project=P, firewall="gpuctl-ssh-x").result()
    api.resource_policies.delete(project=P, region="us-central1", resource_policy="stop-x").result()
    assert standin.labelled_resources("gpuctl-name", "x") == {"disks": ["us-central1-a/x"]}  # autoDelete false
    api.disks.delete(project=P, zone=ZONE, disk="x").result()
    assert standin.labelled_resources("gpuctl-name", "x") == {}


# ------------------------------------------------------------------ faults

@pytest.mark.parametrize(("with_details", "code", "tail"), [
    (True, "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "request.  '(resource type:compute)'."),
    (False, "ZONE_RESOURCE_POOL_EXHAUSTED", "request.  Try a different zone, or try again later."),
])
def test_stockout_fails_the_insert_operation_with_503(standin, api, with_details, code, tail):
    standin.stockout(ZONE, with_details=with_details)
    op = api.instances.insert(project=P, zone=ZONE, instance_resource=vm("s"))  # the call itself succeeds
    with pytest.raises(gexc.ServiceUnavailable) as caught:
        op.result(polling=FAST)
    exc = caught.value
    message = f"The zone 'projects/{P}/zones/{ZONE}' does not have enough resources available to fulfill the {tail}"
    assert str(exc) == f"503 SERVICE UNAVAILABLE {code}: {message}"
    assert (exc.code, exc.message, exc.reason) == (503, "SERVICE UNAVAILABLE", None)
    assert [(e.code, e.message) for e in exc.errors] == [(code, message)]  # compute_v1.Errors, not dicts
    assert (op.error_code, op.error_message, op.error.errors[0].code) == (503, "SERVICE UNAVAILABLE", code)
    assert standin.instances() == [] and standin.disks() == []
    create(api, vm("s", zone="us-central1-b"), "us-central1-b")  # other zones have capacity


def test_stockout_for_some_attempts_then_capacity_returns(standin, api):
    standin.stockout(ZONE, times=1, machine_types=["n1-highmem-8"])
    with pytest.raises(gexc.ServiceUnavailable):
        create(api, vm("s"))
    create(api, vm("s"))
    assert api.instances.get(project=P, zone=ZONE, instance="s").status == "RUNNING"


def test_a_refused_vm_is_seen_provisioning_until_its_operation_ends(standin, api):
    standin.operation_polls, standin.boot_steps = 2, 5
    standin.stockout(ZONE)
    op = api.instances.insert(project=P, zone=ZONE, instance_resource=vm("ghost"))
    assert api.instances.get(project=P, zone=ZONE, instance="ghost").status == "PROVISIONING"
    with pytest.raises(gexc.ServiceUnavailable):
        op.result(polling=FAST)
    with pytest.raises(gexc.NotFound):
        api.instances.get(project=P, zone=ZONE, instance="ghost")


def test_stockout_on_start_leaves_the_vm_terminated(standin, api):
    create(api, vm("s", action="STOP"))
    api.instances.stop(project=P, zone=ZONE, instance="s").result()
    standin.stockout(ZONE, on=["start"])
    with pytest.raises(gexc.ServiceUnavailable, match="ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"):
        api.instances.start(project=P, zone=ZONE, instance="s").result(polling=FAST)
    assert api.instances.get(project=P, zone=ZONE, instance="s").status == "TERMINATED"


def test_gpu_quota_counts_gpus_in_use_in_the_region(standin, api):
    standin.set_quota("us-central1", "PREEMPTIBLE_NVIDIA_T4_GPUS", 1)
    create(api, vm("first"))
    with pytest.raises(gexc.Forbidden) as caught:
        create(api, vm("second", zone="us-central1-b"), "us-central1-b")
    message = "Quota 'PREEMPTIBLE_NVIDIA_T4_GPUS' exceeded.  Limit: 1.0 in region us-central1."
    assert str(caught.value) == f"403 FORBIDDEN QUOTA_EXCEEDED: {message}"
    assert caught.value.errors[0].code == "QUOTA_EXCEEDED" and caught.value.errors[0].message == message
    assert caught.value.errors[0].error_details[0].quota_info.dimensions["region"] == "us-central1"
    create(api, vm("tokyo", zone="asia-northeast1-a"), "asia-northeast1-a")  # another region's quota
    api.instances.stop(project=P, zone=ZONE, instance="first").result()  # stopped VMs hold no GPUs
    create(api, vm("second", zone="us-central1-b"), "us-central1-b")


def test_quota_for_on_demand_and_all_regions_and_answered_at_once(standin, api):
    standin.set_quota("us-central1", "NVIDIA_A100_GPUS", 0)
    with pytest.raises(gexc.Forbidden, match=r"Quota 'NVIDIA_A100_GPUS' exceeded.  Limit: 0.0 in region us-central1\."):
        create(api, vm("a100", machine="a2-highgpu-1g", gpu=None, spot=False, max_run=None))
    standin.clear_faults()
    standin.set_quota("global", "GPUS_ALL_REGIONS", 0)
    with pytest.raises(gexc.Forbidden, match=r"Quota 'GPUS_ALL_REGIONS' exceeded.  Limit: 0.0 globally\."):
        create(api, vm("t4", zone="asia-northeast1-a"), "asia-northeast1-a")
    standin.clear_faults()
    standin.set_quota("us-central1", "NVIDIA_L4_GPUS", 0, sync=True)  # the insert call itself answers 403
    with pytest.raises(gexc.Forbidden) as caught:
        api.instances.insert(project=P, zone=ZONE, instance_resource=vm("l4", machine="g2-standard-8", gpu=None))
    assert caught.value.errors == [{"message": "Quota 'NVIDIA_L4_GPUS' exceeded.  Limit: 0.0 in region us-central1.",
                                    "domain": "usageLimits", "reason": "quotaExceeded"}]
    assert standin.instances() == []


def test_503_burst_reads_are_retried_by_the_client_mutations_are_not(standin, api):
    create(api, vm("r"))
    standin.fail_next(2, 503, rpc="instances.get")
    assert api.instances.get(project=P, zone=ZONE, instance="r").name == "r"
    assert [c.status for c in standin.calls("instances.get")] == [503, 503, 200]
    standin.fail_next(1, 503, method="POST")
    with pytest.raises(gexc.ServiceUnavailable) as caught:
        api.instances.insert(project=P, zone=ZONE, instance_resource=vm("w"))
    assert caught.value.errors == [{"message": "The service is currently unavailable.", "domain": "global",
                                    "reason": "backendError"}]
    assert len(standin.calls("instances.insert")) == 2 and len(standin.instances()) == 1  # no retry, nothing made
    standin.fail_next(3, 503, path=r"/aggregated/instances$")
    assert [i.name for _, s in api.instances.aggregated_list(project=P) for i in s.instances] == ["r"]
    assert [c.status for c in standin.calls("instances.aggregatedList")] == [503, 503, 503, 200]


def test_a_lost_answer_after_the_create_happened(standin, api):
    standin.fail_next(1, 503, rpc="instances.insert", apply=True)
    with pytest.raises(gexc.ServiceUnavailable):
        api.instances.insert(project=P, zone=ZONE, instance_resource=vm("lost"))
    assert [i["name"] for i in standin.instances()] == ["lost"]
    with pytest.raises(gexc.Conflict, match="instances/lost' already exists"):
        api.instances.insert(project=P, zone=ZONE, instance_resource=vm("lost"))


def test_429_is_not_retried_by_the_client(standin, api):
    standin.fail_next(1, 429)
    with pytest.raises(gexc.TooManyRequests) as caught:
        list(api.instances.list(project=P, zone=ZONE))
    assert (caught.value.reason, caught.value.domain) == ("RATE_LIMIT_EXCEEDED", "googleapis.com")
    assert caught.value.errors[0]["reason"] == "rateLimitExceeded"
    assert len(standin.calls("instances.list")) == 1
    assert list(api.instances.list(project=P, zone=ZONE)) == []


def test_permission_denied_names_the_permission(standin, api):
    standin.deny_permission("compute.instances.create")
    with pytest.raises(gexc.Forbidden) as caught:
        api.instances.insert(project=P, zone=ZONE, instance_resource=vm("p"))
    exc = caught.value
    assert exc.message.endswith(
        f"Required 'compute.instances.create' permission for 'projects/{P}/zones/{ZONE}/instances/p'")
    assert (exc.reason, exc.domain, exc.metadata["permission"]) == (
        "IAM_PERMISSION_DENIED", "iam.googleapis.com", "compute.instances.create")
    assert exc.errors[0]["reason"] == "forbidden"
    assert list(api.instances.list(project=P, zone=ZONE)) == []  # other permissions still held
    standin.deny_permission()
    with pytest.raises(gexc.Forbidden, match=f"Required 'compute.instances.list' permission for 'projects/{P}'"):
        list(api.instances.aggregated_list(project=P))
    with pytest.raises(gexc.Forbidden, match="'compute.firewalls.delete' permission for 'projects/gpuctl-test/global/firewalls/f'"):
        api.firewalls.delete(project=P, firewall="f")


def test_api_not_enabled(standin, api):
    standin.disable_api()
    with pytest.raises(gexc.Forbidden) as caught:
        api.instances.get(project=P, zone=ZONE, instance="x")
    exc = caught.value
    assert "Compute Engine API has not been used in project 123456789012 before or it is disabled." in exc.message
    assert (exc.reason, exc.domain, exc.metadata["service"]) == ("SERVICE_DISABLED", "googleapis.com",
                                                                 "compute.googleapis.com")
    assert exc.errors[0]["reason"] == "accessNotConfigured"


def test_preemption_stops_or_deletes_per_termination_action(standin, api):
    create(api, vm("stopper", action="STOP"))
    create(api, vm("deleter", action="DELETE"))
    standin.preempt("stopper")
    standin.preempt("deleter")
    assert api.instances.get(project=P, zone=ZONE, instance="stopper").status == "TERMINATED"
    with pytest.raises(gexc.NotFound):
        api.instances.get(project=P, zone=ZONE, instance="deleter")
    assert [d["name"] for d in standin.disks()] == ["stopper"]  # the deleted VM's boot disk went with it
    ops = api.zone_operations.list(request={"project": P, "zone": ZONE,
                                            "filter": 'operationType = "compute.instances.preempted"'})
    assert sorted(o.target_link.rsplit("/", 1)[-1] for o in ops) == ["deleter", "stopper"]
    create(api, vm("standard", spot=False, max_run=None))
    with pytest.raises(AssertionError, match="not a spot VM"):
        standin.preempt("standard")


def test_deleted_behind_gpuctls_back(standin, api):
    create(api, vm("gone", labels=managed("gone")))
    standin.delete_behind_back("gone")
    with pytest.raises(gexc.NotFound, match=f"projects/{P}/zones/{ZONE}/instances/gone' was not found"):
        api.instances.get(project=P, zone=ZONE, instance="gone")
    assert standin.labelled_resources("gpuctl-name", "gone") == {}


def test_time_limit_guard_fires_when_the_clock_passes_it(standin, api):
    create(api, vm("stop-me", action="STOP", max_run=3600))
    create(api, vm("delete-me", action="DELETE", max_run=7200))
    create(api, vm("no-limit", max_run=None))
    assert standin.advance_clock(3599) == []
    assert standin.advance_clock(2) == ["stop-me"]
    assert api.instances.get(project=P, zone=ZONE, instance="stop-me").status == "TERMINATED"
    assert standin.advance_clock(3600) == ["delete-me"]
    assert sorted(i["name"] for i in standin.instances()) == ["no-limit", "stop-me"]
    with pytest.raises(AssertionError, match="no time limit"):
        standin.fire_time_limit("no-limit")
    api.instances.start(project=P, zone=ZONE, instance="stop-me").result()  # the limit counts from the new start
    restarted = api.instances.get(project=P, zone=ZONE, instance="stop-me")
    assert parse_timestamp(restarted.resource_status.scheduling.termination_timestamp) == \
        T0 + dt.timedelta(seconds=7201 + 3600)
    standin.fire_time_limit("stop-me")
    assert standin.instance("stop-me")["status"] == "TERMINATED"


def test_termination_time_guard(standin, api):
    create(api, vm("until", max_run=None, termination_time="2026-11-23T05:00:00Z", action="DELETE"))
    got = api.instances.get(project=P, zone=ZONE, instance="until")
    assert parse_timestamp(got.resource_status.scheduling.termination_timestamp) == T0 + dt.timedelta(hours=2)
    assert standin.advance_clock(7200) == ["until"] and standin.instances() == []
    with pytest.raises(gexc.BadRequest, match="must be in the future"):
        create(api, vm("past", max_run=None, termination_time="2026-11-23T05:00:00Z"))


def test_unserved_paths_answer_404_and_are_recorded(standin, api):
    with pytest.raises(gexc.NotFound, match="not served by the Compute stand-in"):
        api.instances.reset(project=P, zone=ZONE, instance="x")
    assert standin.requests[-1].rpc is None and standin.requests[-1].status == 404


def test_order_by_name_or_newest_first_and_nothing_else(standin, api):
    for name in ("b", "a", "c"):
        create(api, vm(name))
        standin.advance_clock(60)
    assert [i.name for i in api.instances.list(project=P, zone=ZONE)] == ["a", "b", "c"]
    newest = api.instances.list(request={"project": P, "zone": ZONE, "order_by": "creationTimestamp desc"})
    assert [i.name for i in newest] == ["c", "a", "b"]
    with pytest.raises(gexc.BadRequest, match="only sorting by name or creationTimestamp desc"):
        list(api.instances.list(request={"project": P, "zone": ZONE, "order_by": "status"}))


def test_the_exported_fixture_serves_a_fresh_project(compute_standin):  # noqa: F811 - the imported fixture
    api = compute_standin.clients()
    assert compute_standin.project == "gpuctl-test" and compute_standin.endpoint.startswith("http://127.0.0.1:")
    create(api, vm("f"))
    assert api.instances.get(project="gpuctl-test", zone=ZONE, instance="f").status == "RUNNING"
    assert compute_standin.rpcs == ["instances.insert", "instances.get"]


def test_region_and_global_operations_are_polled_on_the_stand_in(standin, api):
    standin.operation_polls = 1
    fw = api.firewalls.insert(project=P, firewall_resource=_firewall("fw"))
    rp = api.resource_policies.insert(project=P, region="us-central1", resource_policy_resource=_policy("rp"))
    assert fw.status == rp.status == compute_v1.Operation.Status.PENDING
    fw.result(polling=FAST)
    rp.result(polling=FAST)
    assert [c.path for c in standin.calls("globalOperations.get")] == [
        f"/compute/v1/projects/{P}/global/operations/{fw.name}"]
    assert [c.path for c in standin.calls("regionOperations.get")] == [
        f"/compute/v1/projects/{P}/regions/us-central1/operations/{rp.name}"]
    assert api.global_operations.get(project=P, operation=fw.name).status == compute_v1.Operation.Status.DONE


def test_disks_list_and_aggregated_list_filter_on_labels(standin, api):
    create(api, vm("x", labels=managed("x"), auto_delete=False))
    create(api, vm("y", zone="asia-northeast1-a", labels=managed("y", "bob")), "asia-northeast1-a")
    create(api, vm("z"))
    agg = api.disks.aggregated_list(request={"project": P, "filter": 'labels.gpuctl-managed = "true"'})
    assert sorted((scope, d.name) for scope, s in agg for d in s.disks) == [
        ("zones/asia-northeast1-a", "y"), ("zones/us-central1-a", "x")]
    assert _names(api.disks.list(request={"project": P, "zone": ZONE, "filter": "labels.gpuctl-owner = alice"})) == ["x"]


def test_set_metadata_needs_the_current_fingerprint(api):
    create(api, vm("m", metadata={"startup-script": "true"}))
    fp = api.instances.get(project=P, zone=ZONE, instance="m").metadata.fingerprint
    new = compute_v1.Metadata(fingerprint=fp, items=[compute_v1.Items(key="enable-guest-attributes", value="TRUE")])
    api.instances.set_metadata(project=P, zone=ZONE, instance="m", metadata_resource=new).result()
    got = api.instances.get(project=P, zone=ZONE, instance="m").metadata
    assert [(i.key, i.value) for i in got.items] == [("enable-guest-attributes", "TRUE")] and got.fingerprint != fp
    with pytest.raises(gexc.PreconditionFailed, match="fingerprint does not match"):
        api.instances.set_metadata(project=P, zone=ZONE, instance="m", metadata_resource=new)
