"""`checkpoints:` in a job spec: validated, planned, its bucket made (real emulator), and the run
on the host started with GPUCTL_CHECKPOINT_DIR / GPUCTL_CHECKPOINT_URL (the real helper)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpuctl.adapters.storage import default_bucket_name, managed_labels
from gpuctl.checkpoints import plan_checkpoints, prepare_checkpoints
from gpuctl.jobspec import JobSpecError, check_for_target, parse_job_spec
from gpuctl.runs.host_scripts import run_host

HELPER = Path(run_host.__file__)


def spec(**extra):
    return parse_job_spec({"name": "llama-lora", "command": "python train.py", **extra})


def test_spec_takes_a_gs_url_in_one_form_or_auto():
    assert spec(checkpoints="gs://team-ckpts/llama/").checkpoints == "gs://team-ckpts/llama"
    assert spec(checkpoints="gs://team-ckpts").checkpoints == "gs://team-ckpts"
    assert spec(checkpoints="auto").checkpoints == "auto"
    assert spec().checkpoints is None


@pytest.mark.parametrize("value, words", [
    ("s3://team/llama", "is not a gs:// URL"),
    ("gs://Team/llama", "not a valid Cloud Storage bucket name"),
    ("gs://google-ckpts/x", "Google reserves"),
    ("gs://team-ckpts/run#2", "contains '#'"),
    ("/mnt/disks/nvme/ckpt", "is not a gs:// URL"),
    (3, "valid string"),
])
def test_bad_checkpoints_are_one_line_naming_the_key_with_the_fix(value, words):
    with pytest.raises(JobSpecError) as err:
        spec(checkpoints=value)
    assert err.value.message.startswith("job spec: checkpoints: ") and words in err.value.message
    assert "gs://BUCKET/PREFIX" in err.value.hint and "auto" in err.value.hint
    assert "\n" not in err.value.message


def test_vm_notes_the_env_and_gke_takes_checkpoints_too():
    problems, notes = check_for_target(spec(checkpoints="gs://team-ckpts/llama"), "vm")
    assert problems == [] and any("$GPUCTL_CHECKPOINT_DIR" in n for n in notes)
    problems, _ = check_for_target(spec(checkpoints="gs://team-ckpts/llama"), "gke")
    assert problems == []  # mounted through the FUSE CSI driver: tests/test_gke_checkpoints.py


def test_each_run_gets_its_own_folder_on_the_nvme_and_in_the_bucket():
    planned = plan_checkpoints(spec(checkpoints="gs://team-ckpts/llama"), "llama-lora-2",
                               "/mnt/disks/nvme/gpuctl", "proj-123456")
    assert planned.env() == {"GPUCTL_CHECKPOINT_DIR": "/mnt/disks/nvme/gpuctl/checkpoints/llama-lora-2",
                             "GPUCTL_CHECKPOINT_URL": "gs://team-ckpts/llama/llama-lora-2"}
    auto = plan_checkpoints(spec(checkpoints="auto"), "r1", "/b", "proj-123456")
    assert auto.location.url == f"gs://{default_bucket_name('proj-123456')}/r1"


def test_prepare_makes_the_auto_bucket_in_the_configured_region(gcs_emulator, monkeypatch):
    monkeypatch.setenv("GPUCTL_PROJECT", gcs_emulator.project)
    monkeypatch.setenv("GPUCTL_REGION", "asia-northeast1")
    dry = prepare_checkpoints(spec(checkpoints="auto"), "r1", "/b", vm=None, create=False)
    assert list(gcs_emulator.client().list_buckets()) == []  # a dry run makes nothing
    made = prepare_checkpoints(spec(checkpoints="auto"), "r1", "/b", vm=None)
    assert made == dry and made.location.bucket == default_bucket_name(gcs_emulator.project)
    bucket = gcs_emulator.client().get_bucket(made.location.bucket)
    assert bucket.location == "ASIA-NORTHEAST1" and bucket.labels == managed_labels("alice")


def test_host_refuses_a_checkpoint_folder_outside_its_run_base(tmp_path):
    with pytest.raises(run_host.HelperError):
        run_host.checkpoint_env({"dir": "/etc", "url": "gs://b-1/x"}, str(tmp_path), "r1")
    with pytest.raises(run_host.HelperError):
        run_host.checkpoint_env({"dir": str(tmp_path / "checkpoints" / "r1"), "url": "/x"}, str(tmp_path), "r1")
    assert run_host.checkpoint_env(None, str(tmp_path), "r1") == {}
    assert not (tmp_path / "checkpoints").exists()


def test_the_started_command_sees_its_checkpoint_folder(tmp_path):
    """The real helper's `start` (setsid launcher) on this machine: the command's environment
    carries both variables and the folder exists, on the run base."""
    base = tmp_path / "base"
    folder = base / "checkpoints" / "ckpt-run"
    request = {"name": "ckpt-run", "base": str(base), "argv": [
        "/bin/sh", "-c", 'echo "$GPUCTL_CHECKPOINT_DIR $GPUCTL_CHECKPOINT_URL" > "$GPUCTL_CHECKPOINT_DIR/seen"'],
        "env": {"WANDB_MODE": "offline"}, "launcher": "setsid", "jobs_dir": str(tmp_path / "jobs"),
        "checkpoints": {"dir": str(folder), "url": "gs://team-ckpts/llama/ckpt-run"}}
    done = subprocess.run([sys.executable, str(HELPER), "start"], input=json.dumps(request).encode(),
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    run_dir = base / "runs" / "ckpt-run"
    deadline = time.monotonic() + 20
    while not (run_dir / "exit_code").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (run_dir / "exit_code").read_text().strip() == "0", (run_dir / "output.log").read_text()
    assert (folder / "seen").read_text().split() == [str(folder), "gs://team-ckpts/llama/ckpt-run"]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["env"]["GPUCTL_CHECKPOINT_DIR"] == str(folder) and meta["env"]["WANDB_MODE"] == "offline"
