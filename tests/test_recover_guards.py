"""Guards of `run --recover` across every replacement together: the worst case the plan prints
(gpuctl.recovery.guards), and the two server-side limits that hold it with no laptop: the Cloud
Scheduler job that deletes the whole group (gpuctl.recovery.deadline, through the real
google-cloud-scheduler client and the Scheduler stand-in, which sends the request itself), and
the template's terminationTime, which GCE enforces on every replacement."""

from __future__ import annotations

import datetime as dt

import pytest
from google.cloud import compute_v1

from gpuctl.errors import UsageError
from gpuctl.jobspec import JobSpec
from gpuctl.recovery.bundle import recover_document
from gpuctl.recovery.deadline import GroupDeadlineApi
from gpuctl.recovery.guards import plan_recovery, termination_time
from tests.standins.compute import ComputeStandIn
from tests.standins.scheduler import SchedulerStandIn
from tests.test_recover_standin import REGION, mig_body, template_body

A100_SPOT = 1.928  # a2-highgpu-1g whole VM, us-central1 spot (GCP_FACTS.md)


def test_the_worst_case_is_the_deadline_at_one_vm_at_a_time_however_often_google_preempts():
    plan = plan_recovery(A100_SPOT, budget_usd=20, ttl_hours=24, run_hours=6, preemptions=3,
                         restart_minutes=10, checkpoint_minutes=30)
    assert plan.deadline_reason == "budget" and plan.deadline_hours == pytest.approx(20 / A100_SPOT)
    assert plan.worst_case_usd == pytest.approx(20.0)
    # Each preemption: 10 min to come back + 30 min of steps since the last checkpoint.
    assert plan.hours_with_preemptions == pytest.approx(6 + 3 * 40 / 60)
    assert plan.cost_with_preemptions_usd == pytest.approx((6 + 2) * A100_SPOT, rel=1e-3)
    assert plan.finishes is True and plan.preemptions_absorbed == 6  # (10.37 h - 6 h) / 40 min
    tight = plan_recovery(A100_SPOT, ttl_hours=7, run_hours=6, preemptions=3, checkpoint_minutes=30)
    assert tight.deadline_reason == "ttl" and tight.finishes is False and tight.preemptions_absorbed == 1
    assert tight.worst_case_usd == pytest.approx(7 * A100_SPOT)


@pytest.mark.parametrize("kwargs, words", [
    ({}, "needs a limit across all replacements"),
    ({"ttl_hours": 4, "preemptions": -1}, "--preemptions"),
])
def test_a_recover_plan_without_a_limit_is_refused(kwargs, words):
    with pytest.raises(UsageError) as caught:
        plan_recovery(A100_SPOT, **kwargs)
    assert words in caught.value.message


def test_secrets_are_refused_with_recover():
    spec = JobSpec(name="llama", command=["python", "train.py"], secrets={"HF_TOKEN": "env:HF_TOKEN"},
                   checkpoints="gs://team-ckpts/p")
    with pytest.raises(UsageError) as caught:
        recover_document(spec, "llama", "gs://team-ckpts/p/llama", user="gpuctl")
    assert "HF_TOKEN" in caught.value.message and "Secret Manager" in caught.value.hint


@pytest.fixture
def clouds(monkeypatch):
    start = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    with ComputeStandIn(clock=lambda: start) as compute, SchedulerStandIn("gpuctl-test", clock=lambda: start) as cron:
        monkeypatch.setenv("GPUCTL_SCHEDULER_ENDPOINT", cron.endpoint)
        yield compute, cron, start


def make_group(compute: ComputeStandIn, cap: str):
    templates = compute.client(compute_v1.InstanceTemplatesClient)
    migs = compute.client(compute_v1.RegionInstanceGroupManagersClient)
    body = template_body()
    body.properties.scheduling.termination_time = cap
    templates.insert(project=compute.project, instance_template_resource=body).result()
    migs.insert(project=compute.project, region=REGION, instance_group_manager_resource=mig_body()).result()
    [vm_name] = compute.mig_members("llama")
    return vm_name


def test_three_preemptions_in_a_row_and_the_deadline_deletes_the_group_within_the_worst_case(clouds):
    compute, cron, start = clouds
    plan = plan_recovery(A100_SPOT, budget_usd=20)
    vm_name = make_group(compute, termination_time(start, plan))
    deadlines = GroupDeadlineApi("gpuctl-test", REGION, "gpuctl-deadline@gpuctl-test.iam.gserviceaccount.com")
    fires = deadlines.set("llama", "", start + dt.timedelta(hours=plan.deadline_hours))
    assert cron.jobs[deadlines.job_name("llama")]["httpTarget"]["uri"].endswith(
        "/projects/gpuctl-test/regions/us-central1/instanceGroupManagers/llama")

    billed_s, born = 0.0, compute.now()
    for stay_h in (2.0, 0.5, 3.0):  # preempted after 2 h, 30 min, 3 h, each time in another zone
        compute.advance_clock(stay_h * 3600)
        compute.begin_preemption(vm_name)
        compute.advance_clock(30)  # the notice
        compute.finish_preemption(vm_name)
        billed_s += (compute.now() - born).total_seconds()
        assert compute.instances() == []  # deleted on preemption: nothing bills meanwhile
        compute.advance_clock(600)  # capacity comes back after a while
        [event] = compute.reconcile_migs()
        assert event["event"] == "recreated"
        born = compute.now()
    # The deadline comes; Cloud Scheduler deletes the whole group and its VM.
    compute.advance_clock((fires - compute.now()).total_seconds())
    billed_s += (compute.now() - born).total_seconds()
    assert cron.fire_due(compute.now(), compute.endpoint) == [deadlines.job_name("llama")]
    assert cron.fired == [(deadlines.job_name("llama"), 200)]
    assert compute.migs() == [] and compute.instances() == []
    assert compute.reconcile_migs() == []  # no group: no replacement, ever
    total_usd = billed_s / 3600 * A100_SPOT
    assert total_usd <= plan.worst_case_usd + A100_SPOT / 60  # within a minute's rounding of the cron
    assert len(compute.operations("compute.instances.preempted")) == 3
    assert compute.contract_violations == []


def test_if_the_job_never_runs_the_template_cap_ends_every_replacement(clouds):
    """Cloud Scheduler off (permissions, API disabled): GCE's own terminationTime, the same for
    every replacement, deletes the VM at the cap, and the group cannot make another after it."""
    compute, _, start = clouds
    plan = plan_recovery(A100_SPOT, ttl_hours=5)
    vm_name = make_group(compute, termination_time(start, plan))
    assert compute.advance_clock(5 * 3600) == [vm_name]  # the cap fired (action DELETE)
    assert compute.instances() == []
    assert compute.reconcile_migs() == []  # refused: the termination time has passed
    [member] = compute.mig_members("llama").values()
    assert member["action"] == "RECREATING" and "future" in member["errors"][0]["message"]
    assert compute.instances() == []
