"""`gpuctl extend` on a RUNNING VM: the old call (instances.setScheduling) is refused as Google
refuses it; the new one moves the Cloud Scheduler deadline while the VM keeps running, its disks
untouched, and refuses to pass the hard cap GCE enforces, saying what it would take."""

from __future__ import annotations

import datetime as dt

import pytest
from google.cloud import compute_v1

from gpuctl.adapters.compute import ComputeApi
from gpuctl.adapters.deadline import DeadlineApi, cron_for, fires_at
from gpuctl.errors import GpuctlError, UsageError
from gpuctl.lifecycle import records
from gpuctl.lifecycle.deps import LiveDeps
from gpuctl.lifecycle.extend import extend_vm
from tests.standins.compute import ComputeStandIn
from tests.standins.scheduler import SchedulerStandIn

P, ZONE, NAME = "gpuctl-test", "us-central1-a", "train"
T0 = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.timezone.utc)
CAP_S = 10 * 3600  # the hard cap from the budget: 10 h, DELETE


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCTL_HOME", str(tmp_path / "home"))
    with ComputeStandIn(P, clock=lambda: T0) as compute, SchedulerStandIn(P, clock=lambda: T0) as scheduler:
        api = compute.clients()
        api.instances.insert(project=P, zone=ZONE, instance_resource=compute_v1.Instance(
            name=NAME, machine_type=f"zones/{ZONE}/machineTypes/n1-highmem-8",
            guest_accelerators=[compute_v1.AcceleratorConfig(
                accelerator_type=f"zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4", accelerator_count=1)],
            disks=[compute_v1.AttachedDisk(boot=True, auto_delete=True, initialize_params=compute_v1.
                                           AttachedDiskInitializeParams(source_image="projects/x/global/images/y")),
                   compute_v1.AttachedDisk(type_="SCRATCH", interface="NVME", auto_delete=True)],
            network_interfaces=[compute_v1.NetworkInterface(access_configs=[compute_v1.AccessConfig()])],
            scheduling=compute_v1.Scheduling(provisioning_model="SPOT", automatic_restart=False,
                                             on_host_maintenance="TERMINATE", instance_termination_action="DELETE",
                                             max_run_duration=compute_v1.Duration(seconds=CAP_S)))).result()
        records.save(records.VmRecord(
            name=NAME, profile="t4-spot", project=P, state="ready", stack=NAME, zones_to_try=[ZONE],
            created_at=T0.isoformat(), hourly_usd=0.5, stopped_hourly_usd=0.01, termination_action="DELETE",
            zone=ZONE, max_run_seconds=CAP_S, running_since=T0.isoformat()))
        deadlines = DeadlineApi(P, "us-central1", "sa@gpuctl-test.iam.gserviceaccount.com",
                                endpoint=scheduler.endpoint)
        deadlines.set(NAME, ZONE, T0 + dt.timedelta(hours=2))  # what `up` makes: the deadline of --ttl 2h
        deps = LiveDeps(engine=None, compute=ComputeApi(P, endpoint=compute.endpoint), project=P,
                        caller_cidr="203.0.113.9/32", clock=lambda: T0 + dt.timedelta(hours=1))
        yield compute, scheduler, deadlines, deps


def test_the_old_extend_call_is_refused_on_a_running_vm(world):
    compute, _, _, deps = world
    view = deps.compute.instance(ZONE, NAME)
    with pytest.raises(GpuctlError, match="TERMINATED"):
        deps.compute.set_run_limit(view, max_run_seconds=CAP_S + 3600)
    assert compute.calls("instances.setScheduling")[-1].status == 400
    assert compute.instance(NAME)["scheduling"]["maxRunDuration"] == {"seconds": str(CAP_S)}


def test_extend_moves_the_deadline_of_a_running_vm_without_touching_it(world):
    compute, scheduler, deadlines, deps = world
    disks_before, vm_before = compute.disks(), compute.instance(NAME)
    result = extend_vm(NAME, 3, deps, deadlines)
    assert (result["previous_deadline"], result["deadline"]) == ("2026-11-23T05:00:00Z", "2026-11-23T08:00:00Z")
    assert result["hard_cap"] == "2026-11-23T13:00:00Z"
    assert result["time_left_seconds"] == 4 * 3600 and result["worst_case_usd"] == 2.0  # now 04:00 -> 08:00
    assert result["then"] == "deleted" and result["status"] == "RUNNING"
    assert [(verb, code) for verb, _, _, code in scheduler.requests][-2:] == [("GET", 200), ("PATCH", 200)]
    assert deadlines.get(NAME, T0) == dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)
    after = compute.instance(NAME)
    assert after["status"] == "RUNNING" and after == vm_before  # nothing on the VM changed
    assert compute.disks() == disks_before
    assert compute.calls("instances.setScheduling") == [] and compute.calls("instances.stop") == []
    assert compute.contract_violations == [] and scheduler.contract_violations == []


def test_the_moved_deadline_is_what_deletes_the_vm_server_side(world):
    compute, scheduler, deadlines, deps = world
    extend_vm(NAME, 3, deps, deadlines)
    assert scheduler.fire_due(T0 + dt.timedelta(hours=4, minutes=59), compute.endpoint) == []
    assert compute.instance(NAME)["status"] == "RUNNING"  # the old 05:00 deadline no longer fires
    assert scheduler.fire_due(T0 + dt.timedelta(hours=5), compute.endpoint) == [deadlines.job_name(NAME)]
    assert scheduler.fired == [(deadlines.job_name(NAME), 200)]
    assert compute.instances() == []


def test_extend_past_the_hard_cap_says_what_it_would_take(world):
    compute, scheduler, deadlines, deps = world
    with pytest.raises(UsageError) as err:
        extend_vm(NAME, 9, deps, deadlines)  # 05:00 + 9 h = 14:00, past the 13:00 cap
    assert "past the VM's hard cap at 2026-11-23T13:00:00Z" in err.value.message
    assert "extend by at most 8.00h" in err.value.hint
    assert "`gpuctl down train` and `gpuctl up t4-spot --ttl 10h`" in err.value.hint
    assert deadlines.get(NAME, T0) == dt.datetime(2026, 11, 23, 5, 0, tzinfo=dt.timezone.utc)  # unchanged


def test_cron_lines_round_up_to_the_minute_and_read_back():
    line, fires = cron_for(dt.datetime(2026, 12, 31, 23, 59, 30, tzinfo=dt.timezone.utc))
    assert (line, fires) == ("0 0 1 1 *", dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc))
    assert fires_at(line, dt.datetime(2026, 12, 31, 12, tzinfo=dt.timezone.utc)) == fires


def test_scheduler_stand_in_refuses_what_the_document_refuses():
    import requests

    with SchedulerStandIn(P) as scheduler:
        base = f"{scheduler.endpoint}/v1/projects/{P}/locations/us-central1/jobs"
        job = {"name": f"projects/{P}/locations/us-central1/jobs/j", "schedule": "0 5 23 11 *",
               "httpTarget": {"uri": "https://example.com", "httpMethod": "DELETE", "body": "eA=="}}
        assert requests.post(base, json=job, timeout=10).status_code == 400  # a body on a DELETE
        assert requests.post(base, json={**job, "deadline": "soon"}, timeout=10).json()["error"]["message"] \
            == "deadline: unknown field (not in schema Job)"
        assert requests.patch(f"{base}/missing", json={"schedule": "0 5 23 11 *"}, timeout=10).status_code == 404
        assert scheduler.jobs == {}
