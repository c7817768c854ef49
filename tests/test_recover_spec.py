"""`recover: true` in the job spec: `gpuctl run NAME job.yaml` takes the same path as
`--recover` (the plan from the same setup, the same refusals); on GKE the key is accepted and
noted, since a Job replaces its preempted pods by itself."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gpuctl.cli.main import cli

SPEC = "name: llama\ncommand: [python, train.py]\ncheckpoints: gs://alice-ckpts/runs\nrecover: true\n"
OPTIONS = ("--profile", "a100-spot", "--region", "us-central1", "--budget", "20")


@pytest.fixture
def job(tmp_path, monkeypatch):
    (tmp_path / "train.py").write_text("print('step 1 loss 1.0')\n")
    path = tmp_path / "job.yaml"
    path.write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli, ["run", *args])


def test_recover_true_in_the_spec_prints_the_same_plan_as_the_flag(job, monkeypatch):
    import datetime as dt

    import gpuctl.context

    # One clock for both plans, so the deadline minute cannot roll over between them.
    fixed = dt.datetime(2026, 12, 1, 8, 0, 30, tzinfo=dt.timezone.utc)
    real = gpuctl.context.load_context
    monkeypatch.setattr(gpuctl.context, "load_context", lambda now=None: real(now or fixed))
    by_key = invoke("llama", str(job), "--dry-run", *OPTIONS, "--json")
    assert by_key.exit_code == 0, by_key.output
    plan = json.loads(by_key.output)
    assert plan["dry_run"] is True and plan["name"] == "llama" and plan["run"] == "llama"
    assert "compute.RegionInstanceGroupManager" in {r["type"] for r in plan["resources"]}
    assert plan["cost"]["worst_case_usd"] == pytest.approx(20.0)
    by_flag = json.loads(invoke("llama", str(job), "--recover", "--dry-run", *OPTIONS, "--json").output)
    key = lambda r: (r["type"], r["name"])  # noqa: E731 (the mocks register in either order)
    assert sorted(plan.pop("resources"), key=key) == sorted(by_flag.pop("resources"), key=key)
    assert plan == by_flag and plan["guards"]["deadline"]["at"].startswith("2026-12-01T21:")

    human = invoke("llama", str(job), "--dry-run", *OPTIONS)
    assert human.exit_code == 0, human.output
    assert human.output.startswith("dry run: would start llama under a spot VM group llama")
    assert "RegionInstanceGroupManager llama" in human.output and "worst case: $20.00" in human.output


def test_yes_is_taken_with_recover_true_and_validate_is_refused(job):
    # -y confirms a --recover start, so the spec key must not meet "-y applies to GKE jobs".
    done = invoke("llama", str(job), "--dry-run", "-y", *OPTIONS, "--json")
    assert done.exit_code == 0, done.output and json.loads(done.output)["name"] == "llama"
    refused = invoke("llama", str(job), "--validate", *OPTIONS)
    assert refused.exit_code != 0 and "--validate applies to GKE jobs" in refused.output


def test_without_the_key_a_vm_run_still_refuses_gke_only_flags(job):
    job.write_text(SPEC.replace("recover: true", "recover: false"))
    done = invoke("llama", str(job), "-y")
    assert done.exit_code != 0 and "--validate and -y apply to GKE jobs" in done.output


@pytest.mark.parametrize("spec_text, words", [
    ("name: llama\ncommand: [python, train.py]\nrecover: true\n", "needs `checkpoints:`"),
    (SPEC.replace("recover: true", "recover: 'yes'"), "recover: must be true or false, not text (quoted?)"),
])
def test_refusals_are_one_line_with_a_hint(job, spec_text, words):
    job.write_text(spec_text)
    done = invoke("llama", str(job), "--dry-run", *OPTIONS)
    assert done.exit_code != 0 and words in done.output and "hint" in done.output.lower()
    assert "Traceback" not in done.output and done.output.count("\n") <= 2


def test_on_gke_recover_true_is_accepted_and_the_output_says_gke_recovers_anyway(job):
    done = invoke("--gke", str(job), "--dry-run")
    assert done.exit_code == 0, done.output
    assert "recover: true is not needed on GKE: a preempted pod is replaced by the Job itself" in done.output
    assert "kind: Job" in done.output and "InstanceGroupManager" not in done.output
    # The flag on GKE stays refused, as before: it asks for something GKE does not make.
    flag = invoke("llama", str(job), "--recover", "--gke", "--dry-run")
    assert flag.exit_code != 0 and "--recover is for VMs" in flag.output
