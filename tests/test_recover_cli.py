"""Stage (e) of `run --recover`: `gpuctl run NAME job.yaml --recover --dry-run` prints the plan
before anything exists: the group's resources from the real program under mocks, what is
uploaded next to the checkpoints, the deadline and hard cap, and the worst case across every
replacement; refusals are one line with a hint."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gpuctl.cli.main import cli


@pytest.fixture
def job(tmp_path, monkeypatch):
    (tmp_path / "train.py").write_text("print('step 1 loss 1.0')\n")
    path = tmp_path / "job.yaml"
    path.write_text("name: llama\ncommand: [python, train.py]\ncheckpoints: gs://alice-ckpts/runs\n")
    monkeypatch.chdir(tmp_path)
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli, ["run", *args], catch_exceptions=False)


def test_the_dry_run_prints_the_group_the_uploads_and_the_worst_case(job):
    done = invoke("llama", str(job), "--recover", "--dry-run", "--profile", "a100-spot", "--region",
                  "us-central1", "--budget", "20", "--eta", "6h", "--checkpoint-every", "30m", "--json")
    assert done.exit_code == 0, done.output
    plan = json.loads(done.output)
    assert plan["region"] == "us-central1" and all(z.startswith("us-central1-") for z in plan["zones"])
    assert len(plan["zones"]) > 1  # the group may use any of them
    assert {r["type"] for r in plan["resources"]} == {"compute.Firewall", "compute.InstanceTemplate",
                                                      "compute.RegionInstanceGroupManager",
                                                      "serviceaccount.Account", "storage.BucketIAMMember",
                                                      "projects.IAMMember"}  # the group's own deletion
    assert plan["checkpoints"] == "gs://alice-ckpts/runs/llama"
    assert plan["uploads"][0] == "gs://alice-ckpts/runs/llama/.gpuctl/recover.json"
    cost = plan["cost"]
    assert cost["deadline_reason"] == "budget" and cost["worst_case_usd"] == pytest.approx(20.0)
    assert cost["deadline_hours"] == pytest.approx(20 / cost["price_per_hour"])
    assert cost["hours_with_preemptions"] == pytest.approx(6 + 3 * (10 + 30) / 60)
    assert cost["finishes"] is True
    assert plan["guards"]["hard_cap"]["termination_time"].endswith(":00Z")
    assert "deletes group llama" in plan["guards"]["deadline"]["action"]


def test_the_human_plan_says_the_worst_case_and_warns_when_preemptions_would_not_fit(job):
    done = invoke("llama", str(job), "--recover", "--dry-run", "--profile", "a100-spot", "--ttl", "7h",
                  "--eta", "6h30m", "--preemptions", "3")
    assert done.exit_code == 0, done.output
    assert "worst case: $" in done.output and "every replacement billed, one VM at a time" in done.output
    assert "RegionInstanceGroupManager llama" in done.output
    assert "past the deadline: raise --budget or --ttl" in done.output
    assert "from the ttl" in done.output


@pytest.mark.parametrize("spec_text, extra, words", [
    ("name: llama\ncommand: [python, train.py]\n", ("--dry-run",), "needs `checkpoints:`"),
    ("name: llama\ncommand: [python, train.py]\ncheckpoints: gs://alice-ckpts/runs\n"
     "secrets: {HF_TOKEN: 'env:HF_TOKEN'}\n", ("--dry-run",), "cannot carry secrets"),
    ("name: llama\ncommand: [python, train.py]\ncheckpoints: gs://alice-ckpts/runs\n",
     ("--dry-run", "--gke"), "--recover is for VMs"),
])
def test_refusals_are_one_line_with_a_hint(job, spec_text, extra, words, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_read")
    job.write_text(spec_text)
    done = CliRunner().invoke(cli, ["run", "llama", str(job), "--recover", "--profile", "a100-spot", *extra])
    assert done.exit_code != 0
    assert words in done.output and "hint" in done.output.lower()
    assert "hf_not_read" not in done.output


def test_a_budget_is_read_as_money_the_way_up_reads_it(job):
    done = invoke("llama", str(job), "--recover", "--dry-run", "--profile", "a100-spot", "--budget", "$20", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["cost"]["worst_case_usd"] == pytest.approx(20.0)


@pytest.mark.parametrize("extra, words", [
    (("--budget", "abc"), "is not an amount of money"),
    (("--budget", "0"), "must be more than zero"),
    (("--ttl", "zz"), "is not a duration"),
    (("--budget", "5", "--region", "mars-1"), "no GPU data for region mars-1"),
    (("--budget", "5", "--validate"), "--validate applies to GKE jobs"),
])
def test_bad_values_are_one_line_never_a_traceback(job, extra, words):
    done = CliRunner().invoke(cli, ["run", "llama", str(job), "--recover", "--profile", "a100-spot", *extra])
    assert done.exit_code != 0 and words in done.output
    assert "Traceback" not in done.output and done.output.count("\n") <= 2
