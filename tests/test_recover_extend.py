"""`gpuctl extend NAME` on a `run --recover` group: refused in one line with the reason, the run's
deadline and worst case, and the way to a longer run, before any cloud call; nothing moves.

Why a refusal and not a move (compute.v1.json, the discovery document shipped in
google-api-python-client, googleapiclient/discovery_cache/documents/compute.v1.json):
  * the hard cap is the instance template's scheduling.terminationTime, and instanceTemplates has
    no update or patch method (aggregatedList, delete, get, getIamPolicy, insert, list,
    setIamPolicy, testIamPermissions): a later cap needs a new template;
  * regionInstanceGroupManagers.setInstanceTemplate "Sets the instance template to use when
    creating new instances or recreating instances in this group. Existing instances are not
    affected.": a new template reaches only the next replacement;
  * the VM running now keeps its own terminationTime: instances.setScheduling "You can only call
    this method on astopped instance" (stopping loses the local NVMe);
  * the deadline job fires at the cap's minute (recovery/plan.py), so moving it alone buys nothing.
The end to end part runs the real CLI, the real Pulumi engine (AutomationEngine as shipped) with
the gcp provider double, and the Compute, IAM, Cloud Storage and Cloud Scheduler stand-ins, as
tests/test_recover_live.py does.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from google.cloud import compute_v1

from gpuctl.cli.main import cli
from gpuctl.errors import UsageError
from gpuctl.lifecycle import records
from gpuctl.lifecycle.extend import extend_vm
from tests.standins.compute import compute_standin  # noqa: F401 (fixture)
from tests.test_recover_live import BUCKET, PROJECT, recover_world
from tests.test_vm_checkpoint_access_live import iam  # noqa: F401 (fixture)

NAME, REGION = "llama-ext", "us-central1"
COMPUTE_DOC = "googleapiclient/discovery_cache/documents/compute.v1.json"


@pytest.fixture
def cloud(compute_standin, real_engine_env, iam, gcs_emulator, monkeypatch, tmp_path):  # noqa: F811
    """The world of tests/test_recover_live.py, with a job that asks for recovery in its spec."""
    with recover_world(compute_standin, iam, gcs_emulator, monkeypatch, tmp_path, "recover: true\n") as deps:
        yield deps


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def world(cloud) -> dict:
    """What extend could have changed: the deadline job, the templates, the group, the VM, the record."""
    standin = cloud.standin
    return {"jobs": json.dumps(cloud.scheduler.jobs, sort_keys=True, default=str),
            "templates": [(t["name"], t["properties"]["scheduling"]) for t in standin.instance_templates()],
            "groups": [(m["name"], m["instanceTemplate"]) for m in standin.migs()],
            "members": standin.mig_members(NAME), "record": records.load(NAME).as_dict()}


def test_extend_of_a_recover_run_is_one_line_with_its_deadline_and_changes_nothing(cloud):
    # Started by `recover: true` in job.yaml (no --recover flag), through the real engine.
    done = invoke("run", NAME, "job.yaml", "--profile", "a100-spot", "--region", REGION, "--budget", "20",
                  "-y", "--json")
    assert done.exit_code == 0, done.output
    started = json.loads(done.stdout)
    assert started["dry_run"] is False and started["vm"]
    before = world(cloud)
    [template] = cloud.standin.instance_templates()
    cap = template["properties"]["scheduling"]["terminationTime"]
    assert cap == started["guards"]["hard_cap"]["termination_time"]
    compute_calls, scheduler_calls = len(cloud.standin.requests), len(cloud.scheduler.requests)

    for extra in ((), ("--json",)):
        refused = invoke("extend", NAME, "--hours", "2", *extra)
        assert refused.exit_code != 0 and "Traceback" not in refused.output
        line = " ".join(refused.output.split())  # one line, however the terminal wraps it
        assert refused.output.strip().count("\n") == 0, refused.output
        assert f"{NAME} is a --recover run: it keeps its deadline ({started['guards']['deadline']['at']}, " \
               "worst case $20.00)" in line
        assert "instance template, which GCE cannot change" in line and "never the VM running now" in line
        assert f"`gpuctl down {NAME}` keeps the checkpoints in gs://{BUCKET}/runs/llama" in line
        assert "larger --ttl or --budget" in line
        assert "no longer exists" not in line and "None" not in line  # the old message

    # Nothing was asked of Google, and nothing moved: the job, the cap, the group, the VM, the record.
    assert len(cloud.standin.requests) == compute_calls and len(cloud.scheduler.requests) == scheduler_calls
    assert world(cloud) == before
    assert cloud.standin.contract_violations == [] and cloud.scheduler.contract_violations == []

    # Cancelled: nothing left to extend, said as such.
    assert invoke("cancel", NAME, "--json").exit_code == 0
    after = invoke("extend", NAME, "--hours", "1")
    assert after.exit_code != 0 and "was cancelled at" in " ".join(after.output.split())
    assert invoke("down", NAME, "-y", "--json").exit_code == 0


def test_the_library_refuses_before_touching_any_dependency(tmp_path, monkeypatch):
    """extend_vm is refused on the record alone: no credentials, no Compute, no Scheduler."""
    monkeypatch.setenv("GPUCTL_HOME", str(tmp_path / "home"))
    records.save(records.VmRecord(
        name=NAME, profile="a100-spot", project=PROJECT, state="ready", stack=NAME, zones_to_try=[f"{REGION}-a"],
        created_at="2026-12-01T08:00:00+00:00", hourly_usd=1.5, stopped_hourly_usd=0.0, termination_action="DELETE",
        termination_time="2026-12-01T21:00:00Z",
        group={"region": REGION, "template": f"{NAME}-tpl", "run": "llama", "checkpoints": f"gs://{BUCKET}/runs/llama",
               "deadline": "2026-12-01T21:00:00+00:00", "worst_case_usd": 19.5, "vm": None, "cancelled_at": None}))

    class NoCloud:
        def __getattr__(self, name):
            raise AssertionError(f"extend touched deps.{name} for a --recover run")

    with pytest.raises(UsageError, match=r"keeps its deadline \(2026-12-01T21:00:00\+00:00, worst case \$19.50\)"):
        extend_vm(NAME, 2, NoCloud(), deadlines=NoCloud())

    import gpuctl.lifecycle.deps as deps_module

    monkeypatch.setattr(deps_module, "live_deps", NoCloud().__getattr__)  # the CLI asks for none either
    done = invoke("extend", NAME, "--hours", "2")
    assert done.exit_code != 0 and "is a --recover run" in done.output and "hint" in done.output.lower()


def test_googles_documents_say_why_extend_cannot_move_the_cap():
    """The reasons in lifecycle/extend.py, read from compute.v1.json as shipped. If Google ever adds
    a way to change a template, or a running VM's termination time, this fails and extend for
    --recover runs deserves a second look."""
    import googleapiclient

    path = __import__("pathlib").Path(googleapiclient.__file__).parent.parent / COMPUTE_DOC
    doc = json.loads(path.read_text())["resources"]
    assert sorted(doc["instanceTemplates"]["methods"]) == [
        "aggregatedList", "delete", "get", "getIamPolicy", "insert", "list", "setIamPolicy", "testIamPermissions"]
    assert not hasattr(compute_v1.InstanceTemplatesClient, "patch")  # nor in the client library
    assert not hasattr(compute_v1.InstanceTemplatesClient, "update")
    assert "Existing instances are not affected." in \
        doc["regionInstanceGroupManagers"]["methods"]["setInstanceTemplate"]["description"]
    assert "You can only call this method on astopped instance" in \
        doc["instances"]["methods"]["setScheduling"]["description"]
