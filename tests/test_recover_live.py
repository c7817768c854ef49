"""`gpuctl run NAME job.yaml --recover` applied, end to end through real parts: the CLI, the real
Pulumi engine (AutomationEngine as shipped) with the gcp provider double creating the run's
service account (IAM stand-in), its bucket grant (the GCS contract proxy in front of the real
fake-gcs-server), the instance template and the regional managed instance group (Compute stand-in),
the bundle uploaded by the real google-cloud-storage client, and the group's deadline job (Cloud
Scheduler stand-in). The Compute stand-in then preempts the group's VM twice and the group, not
gpuctl, recreates it; `jobs` and `status` read the recreations and the cost from Compute Engine's
own records; `cancel` ends every future replacement; `down` and `sweep` leave nothing but the
bucket."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import pytest
from click.testing import CliRunner
from google.cloud import compute_v1

from gpuctl.adapters.compute import ComputeApi
from gpuctl.adapters.pulumi_engine import AutomationEngine
from gpuctl.adapters.storage import StorageApi
from gpuctl.cli.main import cli
from gpuctl.errors import GpuctlError
from gpuctl.lifecycle import records
from gpuctl.lifecycle.deps import VM_PROJECT, LiveDeps
from gpuctl.lifecycle.sweep import delete_leftovers, find_leftovers
from gpuctl_infra.spec import CHECKPOINT_ROLE, CHECKPOINT_SCOPE
from tests.standins.compute import compute_standin  # noqa: F401 (fixture)
from tests.standins.scheduler import SchedulerStandIn
from tests.test_vm_checkpoint_access_live import iam  # noqa: F401 (fixture)

PROJECT = "gpuctl-test"
NAME = "llama-rec"
BUCKET = "team-ckpts"
EMAIL = f"gpuctl-{NAME}@{PROJECT}.iam.gserviceaccount.com"
REGION = "us-central1"
SLACK = 60 / 3600  # hours: real time the test's own steps take on the stand-in's clock


@contextlib.contextmanager
def recover_world(compute_standin, iam, gcs_emulator, monkeypatch, tmp_path, job_extra: str = ""):
    """LiveDeps over every stand-in, on the Compute stand-in's clock (which tests move on), the
    CLI's live_deps answering with them, and a job with checkpoints in the working directory."""
    import gpuctl.lifecycle.deps as deps_module

    monkeypatch.setenv("GPUCTL_COMPUTE_ENDPOINT", compute_standin.endpoint)
    monkeypatch.setenv("GPUCTL_PROJECT", PROJECT)
    gcs_emulator.client().create_bucket(BUCKET)
    compute = ComputeApi(PROJECT, endpoint=compute_standin.endpoint)
    compute.retry_initial_s, compute.retry_timeout_s = 0.01, 5.0
    with SchedulerStandIn(PROJECT, clock=compute_standin.now) as scheduler:
        monkeypatch.setenv("GPUCTL_SCHEDULER_ENDPOINT", scheduler.endpoint)
        deps = LiveDeps(engine=AutomationEngine(VM_PROJECT), compute=compute, project=PROJECT,
                        caller_cidr="198.51.100.7/32", clock=compute_standin.now, sleep=lambda s: None,
                        storage=StorageApi(PROJECT, endpoint=gcs_emulator.endpoint))
        deps.standin, deps.scheduler, deps.iam, deps.gcs = compute_standin, scheduler, iam, gcs_emulator
        monkeypatch.setattr(deps_module, "live_deps", lambda ctx, ssh_from=None, need_engine=True, iap=False: deps)
        (tmp_path / "train.py").write_text("print('step 1 loss 1.0')\n")
        (tmp_path / "job.yaml").write_text(f"name: llama\ncommand: [python, train.py]\n"
                                           f"checkpoints: gs://{BUCKET}/runs\n{job_extra}")
        monkeypatch.chdir(tmp_path)
        yield deps


@pytest.fixture
def cloud(compute_standin, real_engine_env, iam, gcs_emulator, monkeypatch, tmp_path):
    with recover_world(compute_standin, iam, gcs_emulator, monkeypatch, tmp_path) as deps:
        yield deps


def cli_json(*args: str):
    done = CliRunner().invoke(cli, [*args, "--json"])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def start(*extra: str) -> dict:
    return cli_json("run", NAME, "job.yaml", "--recover", "--profile", "a100-spot", "--region", REGION,
                    "--budget", "20", "-y", *extra)


def vm_of(standin) -> tuple[str, str]:
    [(vm, member)] = standin.mig_members(NAME).items()
    return vm, member["zone"]


def preempt(standin, hours_before: float) -> str:
    """Let the VM run `hours_before`, then Google takes it back (30 s notice, DELETE) and its zone
    has no capacity left; the group recreates it elsewhere. Returns the new zone."""
    standin.advance_clock(hours_before * 3600)
    vm, zone = vm_of(standin)
    standin.begin_preemption(vm)
    standin.advance_clock(30)
    standin.stockout(zone)
    standin.finish_preemption(vm)
    [event] = standin.reconcile_migs()
    assert event["event"] == "recreated" and event["vm"] == vm and event["zone"] != zone
    return event["zone"]


def leftovers(deps) -> dict:
    return deps.standin.labelled_resources("gpuctl-name", NAME)


def test_run_recover_applies_survives_two_preemptions_and_cancel_then_down_leave_only_the_bucket(cloud):
    standin = cloud.standin
    started = start()
    assert started["dry_run"] is False and started["name"] == NAME and started["run"] == "llama"
    hourly, planned = started["cost"]["price_per_hour"], started["cost"]["worst_case_usd"]
    assert planned == pytest.approx(20.0)

    # The bundle is in the bucket, recover.json included, before any VM could read it.
    names = {b.name for b in cloud.gcs.client().list_blobs(BUCKET)}
    assert {"runs/llama/.gpuctl/recover.json", "runs/llama/.gpuctl/code.tar.gz",
            "runs/llama/.gpuctl/bootstrap.py", "runs/llama/.gpuctl/run_host.py"} <= names
    recover = json.loads(cloud.gcs.client().bucket(BUCKET).blob("runs/llama/.gpuctl/recover.json").download_as_bytes())
    assert recover["checkpoints"] == f"gs://{BUCKET}/runs/llama" and recover["argv"] == ["python", "train.py"]

    # The identity: the run's own account, objectUser on this bucket only; the read_write scope and
    # Compute's (for its own group's deletion, under one conditional grant) only.
    (account,) = cloud.iam.accounts.values()
    assert account["email"] == EMAIL
    assert cloud.gcs.contract.iam.policies[BUCKET][CHECKPOINT_ROLE] == [f"serviceAccount:{EMAIL}"]
    [template] = standin.instance_templates()
    assert template["properties"]["serviceAccounts"] == [
        {"email": EMAIL, "scopes": [CHECKPOINT_SCOPE, "https://www.googleapis.com/auth/compute"]}]
    vm, first_zone = vm_of(standin)
    assert started["vm"] == vm and standin.instance(vm)["serviceAccounts"][0]["email"] == EMAIL

    # The deadline job deletes the whole group, at the template's hard cap.
    [job] = cloud.scheduler.jobs.values()
    assert job["httpTarget"]["uri"].endswith(f"/regions/{REGION}/instanceGroupManagers/{NAME}")
    assert template["properties"]["scheduling"]["terminationTime"] == started["guards"]["hard_cap"]["termination_time"]
    record = records.load(NAME)
    assert record.state == "ready" and record.group["vm"] == vm and record.group["region"] == REGION

    # Google preempts twice; the group recreates the VM each time; gpuctl is not involved.
    second = preempt(standin, 1.0)
    third = preempt(standin, 1.0)
    standin.advance_clock(0.5 * 3600)
    assert len(standin.operations("compute.instances.preempted")) == 2

    [row] = cli_json("jobs")
    g = row["recover"]
    assert row["name"] == NAME and row["state"] == "running"
    assert (g["vm"], g["zone"], g["vm_status"]) == (vm, third, "RUNNING") and second != third
    assert g["recreations"] == 2 and g["preemptions"] == 2
    # Three lives: 1 h + 30 s notice, 1 h + 30 s, 0.5 h (the stand-in's clock is moved on; the
    # wall-clock seconds the test itself takes are allowed for: SLACK).
    lived_h = 1.0 + 30 / 3600 + 1.0 + 30 / 3600 + 0.5
    assert g["cost_so_far_usd"] == pytest.approx(lived_h * hourly, abs=SLACK * hourly)
    assert row["cost_so_far_usd"] == g["cost_so_far_usd"]
    assert g["cost_so_far_usd"] + g["worst_case_left_usd"] <= planned + 0.02 * hourly  # within the plan
    assert g["planned_worst_case_usd"] == planned

    [status] = cli_json("status")
    assert status["name"] == NAME and status["zone"] == third and status["recover"]["recreations"] == 2
    assert status["guards"][0]["kind"] == "deadline"
    assert status["cost_so_far_usd"] == pytest.approx(g["cost_so_far_usd"], abs=SLACK * hourly)
    for command in (["jobs"], ["status"]):  # the same line under both tables
        human = CliRunner().invoke(cli, command)
        text = " ".join(human.output.split())  # rich wraps at the terminal's width
        assert human.exit_code == 0 and "recreated 2 time(s) after 2 preemption(s)" in text, human.output
        assert f"VM {vm} in {third} (running)" in text and "worst case left $" in text

    # cancel: the group (and with it the VM), its template and the deadline job go; nothing recreates.
    cancelled = cli_json("cancel", NAME)
    assert cancelled["state"] == "cancelled" and cancelled["recreations"] == 2
    assert standin.migs() == [] and standin.instances() == [] and standin.instance_templates() == []
    assert cloud.scheduler.jobs == {} and standin.reconcile_migs() == []
    assert cancelled["cost_so_far_usd"] == pytest.approx(g["cost_so_far_usd"], abs=SLACK * hourly)
    [after] = cli_json("jobs", NAME)
    assert after["state"] == "cancelled" and after["recover"]["worst_case_left_usd"] == 0
    assert cli_json("cancel", NAME)["already_ended"] is True
    again = CliRunner().invoke(cli, ["cancel", NAME])
    assert again.exit_code == 0 and "already cancelled" in again.output

    # down: the account, its grants, the SSH rule, the stack and the record go; the bucket stays.
    [done] = cli_json("down", NAME, "-y")
    assert done["existed"] is True
    assert leftovers(cloud) == {} and cloud.iam.accounts == {} and cloud.iam.conditional_bindings() == []
    assert CHECKPOINT_ROLE not in cloud.gcs.contract.iam.policies[BUCKET]
    assert records.load(NAME) is None and cloud.engine.list_stacks() == []
    assert "runs/llama/.gpuctl/recover.json" in {b.name for b in cloud.gcs.client().list_blobs(BUCKET)}
    assert standin.contract_violations == [] and cloud.scheduler.contract_violations == []
    assert cloud.iam.contract_violations == []


def test_down_without_cancel_removes_the_running_group_and_its_deadline(cloud):
    start()
    assert cloud.scheduler.jobs and standin_has_group(cloud)
    [done] = cli_json("down", NAME, "-y")
    assert done["existed"] and done["final_cost_usd"] is not None
    assert leftovers(cloud) == {} and cloud.standin.instance_templates() == [] and cloud.standin.migs() == []
    assert cloud.scheduler.jobs == {} and cloud.iam.accounts == {} and records.load(NAME) is None


def standin_has_group(cloud) -> bool:
    return [m["name"] for m in cloud.standin.migs()] == [NAME]


def test_the_deadline_ends_every_replacement_with_the_laptop_closed(cloud):
    started = start()
    at = dt.datetime.fromisoformat(started["guards"]["deadline"]["at"])
    assert cloud.scheduler.fire_due(at, cloud.standin.endpoint) == [f"projects/{PROJECT}/locations/{REGION}"
                                                                    f"/jobs/gpuctl-deadline-{NAME}"]
    assert cloud.standin.migs() == [] and cloud.standin.instances() == []
    [row] = cli_json("jobs")
    assert row["state"].startswith("ended") and row["recover"]["worst_case_left_usd"] == 0
    cli_json("down", NAME, "-y")
    assert leftovers(cloud) == {} and cloud.standin.instance_templates() == []


def test_a_failed_apply_rolls_back_everything_it_made(cloud, ctx):
    """The deadline cannot be set (Cloud Scheduler refuses, 403): the run does not start unguarded;
    the stack, the account, its grant and the record are removed."""
    from gpuctl.jobspec import JobSpec
    from gpuctl.recovery.apply import start_recover_run
    from gpuctl.recovery.plan import RecoverOptions

    from tests.standins.scheduler import _error

    handle = cloud.scheduler._handle
    cloud.scheduler._handle = lambda verb, *a: (
        _error(403, "The principal lacks cloudscheduler.jobs.create.", "PERMISSION_DENIED") if verb == "create"
        else handle(verb, *a))
    spec = JobSpec(name="llama", command=["python", "train.py"], checkpoints=f"gs://{BUCKET}/runs")
    options = RecoverOptions(name=NAME, profile="a100-spot", region=REGION, budget="20")
    with pytest.raises(GpuctlError, match="Cloud Scheduler .* The principal lacks"):
        start_recover_run(ctx, spec, options, None, cloud)
    assert leftovers(cloud) == {} and cloud.standin.migs() == [] and cloud.standin.instance_templates() == []
    assert cloud.iam.accounts == {} and records.load(NAME) is None and cloud.engine.list_stacks() == []


def test_a_missing_bucket_is_one_line_and_nothing_is_made(cloud, tmp_path):
    (tmp_path / "job.yaml").write_text("name: llama\ncommand: [python, train.py]\ncheckpoints: gs://nope-ckpts/x\n")
    done = CliRunner().invoke(cli, ["run", NAME, "job.yaml", "--recover", "--profile", "a100-spot", "--budget",
                                    "20", "-y"])
    assert done.exit_code != 0 and "Traceback" not in done.output
    assert "gs://nope-ckpts does not exist" in done.output and "hint" in done.output.lower()
    assert records.load(NAME) is None and cloud.standin.migs() == [] and cloud.iam.accounts == {}


def test_sweep_finds_a_leftover_group_template_and_deadline_by_label_and_deletes_them(cloud, ctx):
    """A group made by a gpuctl whose laptop was lost: no stack, no record. Groups take no labels:
    found by the labels in their description; the template by its own labels."""
    standin = cloud.standin
    labels = {"gpuctl-managed": "true", "gpuctl-name": "bob-rec", "gpuctl-owner": "bob"}
    from tests.test_recover_standin import mig_body, template_body

    templates = standin.client(compute_v1.InstanceTemplatesClient)
    body = template_body("bob-rec-tpl")
    body.properties.labels = labels
    templates.insert(project=PROJECT, instance_template_resource=body).result()
    group = mig_body("bob-rec")
    group.instance_template = f"projects/{PROJECT}/global/instanceTemplates/bob-rec-tpl"
    group.description = "gpuctl " + " ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    standin.client(compute_v1.RegionInstanceGroupManagersClient).insert(
        project=PROJECT, region=REGION, instance_group_manager_resource=group).result()
    cloud.deadline_api(REGION).set("bob-rec", REGION, cloud.clock() + dt.timedelta(hours=3))

    found = {(f.kind, f.vm, f.resource.kind) for f in find_leftovers(ctx, cloud) if f.resource}
    assert {("orphan", "bob-rec", "instance-group"), ("orphan", "bob-rec", "instance-template"),
            ("orphan", "bob-rec", "deadline-job")} <= found
    deleted = delete_leftovers(find_leftovers(ctx, cloud), cloud)
    # The group went before its template (in use until then) and its VM went with the group.
    assert deleted.index("instance-group/bob-rec") < deleted.index("instance-template/bob-rec-tpl")
    assert standin.migs() == [] and standin.instance_templates() == [] and standin.instances() == []
    assert cloud.scheduler.jobs == {}
    assert [f for f in find_leftovers(ctx, cloud) if f.resource and f.resource.kind != "bucket"] == []
    assert standin.contract_violations == []


def test_a_finished_run_deletes_its_own_group_and_stops_billing_with_the_laptop_closed(cloud, tmp_path, monkeypatch):
    """The run's command exits 0 on the VM: the bootstrap's watcher marks it finished in the bucket
    and deletes the group with the VM's own token (its one conditional grant names that group alone).
    `jobs` then says finished, and the cost stays where the VM was deleted; `cancel` and `down`
    still work, and `down` leaves no project IAM binding behind."""
    from gpuctl.runs.host_scripts import bootstrap
    from tests.standins.compute_migs import InstanceMetadataServer

    standin = cloud.standin
    started = start()
    hourly = started["cost"]["price_per_hour"]
    member = f"serviceAccount:{EMAIL}"
    group_name = f"projects/{PROJECT}/regions/{REGION}/instanceGroupManagers/{NAME}"

    # What the program gave the run: the two scopes, one binding under its condition, and the group
    # named in recover.json for the VM to find.
    [template] = standin.instance_templates()
    assert template["properties"]["serviceAccounts"][0]["scopes"] == [CHECKPOINT_SCOPE,
                                                                      "https://www.googleapis.com/auth/compute"]
    [grant] = cloud.iam.conditional_bindings()
    assert grant["role"] == "roles/compute.instanceAdmin.v1" and grant["members"] == [member]
    assert grant["condition"]["expression"] == f'resource.name == "{group_name}"'
    assert cloud.iam.allows(member, "compute.instanceGroupManagers.delete", group_name)
    assert not cloud.iam.allows(member, "compute.instanceGroupManagers.delete", group_name + "-other")
    recover = json.loads(cloud.gcs.client().bucket(BUCKET).blob("runs/llama/.gpuctl/recover.json").download_as_bytes())
    assert (recover["group"], recover["region"], recover["project"]) == (NAME, REGION, PROJECT)

    # Two hours on, the command exits 0 on the VM; its watcher runs as on the VM, with the VM's token.
    standin.advance_clock(2 * 3600)
    vm, _ = vm_of(standin)
    run_dir = tmp_path / "vm-run"
    run_dir.mkdir()
    (run_dir / "exit_code").write_text("0\n")
    with InstanceMetadataServer(standin, vm) as metadata:
        monkeypatch.setenv("GCE_METADATA_HOST", metadata.host)
        assert bootstrap.watch(str(run_dir), f"gs://{BUCKET}/runs/llama", poll_s=0.01) == 0
    assert standin.migs() == [] and standin.instances() == []  # nothing bills now
    assert standin.reconcile_migs() == []

    [row] = cli_json("jobs")
    assert row["state"].startswith("finished") and row["recover"]["worst_case_left_usd"] == 0
    cost = row["recover"]["cost_so_far_usd"]
    assert cost == pytest.approx(2 * hourly, abs=SLACK * hourly)
    standin.advance_clock(5 * 3600)  # the laptop stays closed: the cost does not move
    [later] = cli_json("jobs", NAME)
    assert later["state"].startswith("finished") and later["recover"]["cost_so_far_usd"] == cost
    for command in ("status", "jobs"):  # the human tables too (a state they do not style)
        human = CliRunner().invoke(cli, [command])
        assert human.exit_code == 0 and "finished" in human.output, human.output

    # cancel on a finished run: nothing to stop; the template and the deadline job go; still finished.
    cancelled = cli_json("cancel", NAME)
    assert cancelled["state"].startswith("finished") and "instance-group/" + NAME not in cancelled["deleted"]
    assert standin.instance_templates() == [] and cloud.scheduler.jobs == {}

    [done] = cli_json("down", NAME, "-y")
    assert done["existed"] and done["final_cost_usd"] == pytest.approx(cost, abs=0.01)
    assert leftovers(cloud) == {} and cloud.iam.accounts == {} and cloud.iam.conditional_bindings() == []
    assert cloud.iam.bindings == {"roles/owner": {"user:owner@example.com"}}
    assert records.load(NAME) is None and cloud.engine.list_stacks() == []
    assert standin.contract_violations == [] and cloud.iam.contract_violations == []


def test_down_after_the_vm_deleted_its_group_leaves_nothing(cloud, tmp_path, monkeypatch):
    """No cancel first: `down` destroys a stack whose group is already gone (404 is deleted),
    takes the deadline job and the conditional binding with it."""
    from gpuctl.runs.host_scripts import bootstrap
    from tests.standins.compute_migs import InstanceMetadataServer

    start()
    vm, _ = vm_of(cloud.standin)
    (tmp_path / "exit_code").write_text("0\n")
    with InstanceMetadataServer(cloud.standin, vm) as metadata:
        monkeypatch.setenv("GCE_METADATA_HOST", metadata.host)
        bootstrap.watch(str(tmp_path), f"gs://{BUCKET}/runs/llama", poll_s=0.01)
    assert cloud.standin.migs() == [] and cloud.scheduler.jobs
    cli_json("down", NAME, "-y")
    assert leftovers(cloud) == {} and cloud.standin.instance_templates() == [] and cloud.scheduler.jobs == {}
    assert cloud.iam.conditional_bindings() == [] and cloud.iam.accounts == {} and records.load(NAME) is None
