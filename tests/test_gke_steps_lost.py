"""`gpuctl jobs --gke`: the steps each restart of a Job with `checkpoints:` lost.

The pod's log goes with a preempted node, so rank 0's trainer runs under gke/log_keeper.py's few
lines of sh, which leave in the mounted bucket folder where each pod resumed and its log. Here the
keeper runs as real processes (/bin/sh, a fake trainer, SIGTERM as the kubelet sends it) over a
local folder; the Cloud Storage FUSE driver, which does not exist on the test control plane, is
played by copying that folder's `.gpuctl/` files to the Cloud Storage emulator. The Job, its
preempted pod and the replacement are the real control plane's (tests/k8s/).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from gpuctl.cli.main import cli
from gpuctl.gke import jobs
from gpuctl.gke.log_keeper import wrap
from tests.gke_helpers import kube_flags
from tests.test_gke_workloads import kube, manifests, pods_of, wait_for  # noqa: F401

BUCKET = "team-ckpt"
URL = f"gs://{BUCKET}/llama"  # the job `train` keeps its checkpoints in gs://team-ckpt/llama/train

# A trainer as the Hugging Face Trainer behaves: it resumes from the newest checkpoint-N, draws
# its bar (from the step it resumed at), saves checkpoint-40 on the way, and ends its step and
# exits 42 on SIGTERM (HOLD=1: its own status, not the shell's 143 for a signal), or finishes
# (exit code EXIT).
TRAINER = r"""
import os, signal, sys, time
d, first, last = os.environ["GPUCTL_CHECKPOINT_DIR"], int(sys.argv[1]), int(sys.argv[2])
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
for step in range(first, last + 1):
    sys.stdout.write(f"\r {step}%|#####     | {step}/100 [00:10<01:00,  2.00s/it]")
    sys.stdout.flush()
    if step == 40:
        os.makedirs(f"{d}/checkpoint-40")
        open(f"{d}/checkpoint-40/trainer_state.json", "w").write('{"global_step": 40}')
print(flush=True)
while os.environ.get("HOLD") and not stop:
    time.sleep(0.05)
if stop:
    time.sleep(0.5)  # the end of the step: the shell waits for it
sys.exit(42 if stop else int(os.environ.get("EXIT", "0")))
"""


def keep(mount: Path, scratch: Path, pod: str, first: int, last: int, **env) -> subprocess.Popen:
    """Rank 0's container command as the Job runs it (manifests.mount_checkpoints)."""
    scratch.mkdir(parents=True, exist_ok=True)
    command = wrap([sys.executable, "-c", TRAINER, str(first), str(last)], str(scratch / "gpuctl-output.log"))
    return subprocess.Popen(command, env={**os.environ, "GPUCTL_CHECKPOINT_DIR": str(mount),
                                          "GPUCTL_POD": pod, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def records(mount: Path) -> dict:
    return {str(p.relative_to(mount)): p.read_text() for p in (mount / ".gpuctl").rglob("*") if p.is_file()}


def test_the_keeper_records_where_each_pod_resumed_and_its_log_and_keeps_the_exit_status(tmp_path):
    mount = tmp_path / "mount"
    mount.mkdir()
    first = keep(mount, tmp_path / "pod-a", "train-a", 1, 57, HOLD="1")
    log = tmp_path / "pod-a" / "gpuctl-output.log"
    deadline = time.monotonic() + 20
    while "57/100" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)  # the kubelet's, to the container's first process
    out, err = first.communicate(timeout=20)
    assert first.returncode == 42 and err == b"", err.decode()
    assert b"57/100" in out  # the output still goes to the container's log
    got = records(mount)
    assert json.loads(got[".gpuctl/resumed/train-a.json"])["checkpoint"] is None
    assert json.loads(got[".gpuctl/resumed/train-a.json"])["step"] == 0
    assert "57/100" in got[".gpuctl/logs/train-a.log"]  # copied once more at the end

    second = keep(mount, tmp_path / "pod-b", "train-b", 41, 70, EXIT="3")
    assert second.wait(timeout=20) == 3  # the trainer's own exit status: the Job's failure policy reads it
    resumed = json.loads(records(mount)[".gpuctl/resumed/train-b.json"])
    assert (resumed["checkpoint"], resumed["step"]) == ("checkpoint-40", 40)
    assert not list(tmp_path.rglob("*.fifo"))

    # Ranks other than 0 run the command alone: one log speaks for the job.
    other = keep(mount, tmp_path / "pod-c", "train-c", 1, 2, JOB_COMPLETION_INDEX="1")
    assert other.wait(timeout=20) == 0 and "train-c" not in " ".join(records(mount))


def test_a_child_the_trainer_left_running_does_not_hold_the_pod(tmp_path):
    """A background process that keeps the trainer's stdout (tensorboard started with &) must not
    keep the container, and its GPU node, alive after the trainer ends."""
    mount = tmp_path / "mount"
    mount.mkdir()
    command = wrap(["/bin/sh", "-c", "sleep 120 & echo trained; exit 5"], str(tmp_path / "gpuctl-output.log"))
    started = time.monotonic()
    keeper = subprocess.Popen(command, env={**os.environ, "GPUCTL_CHECKPOINT_DIR": str(mount), "GPUCTL_POD": "p"},
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert keeper.wait(timeout=30) == 5
        assert time.monotonic() - started < 20  # the 5 s drain, not the child's 120 s
        assert "trained" in records(mount)[".gpuctl/logs/p.log"]
    finally:
        os.killpg(keeper.pid, signal.SIGKILL)  # the leftover sleep


def test_jobs_gke_shows_the_steps_each_restart_lost(kube, k8s_cluster, k8s_namespace, gcs_emulator,  # noqa: F811
                                                     tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GPUCTL_PROJECT", "gpuctl-test-project")
    bucket = gcs_emulator.client().create_bucket(BUCKET)
    jobs.submit(kube, manifests(k8s_namespace, outcome="hold", max_retries=2, checkpoints=URL))
    where = kube_flags(k8s_cluster, k8s_namespace)

    def running(other_than=None):
        return next((p for p in pods_of(kube, k8s_namespace, "train") if p["status"].get("phase") == "Running"
                     and p["metadata"]["name"] != other_than), None)

    first = wait_for(running, what="running")["metadata"]["name"]
    mount = tmp_path / "mount"
    mount.mkdir()
    pod = keep(mount, tmp_path / "a", first, 1, 57, HOLD="1")
    deadline = time.monotonic() + 20
    while not (tmp_path / "a" / "gpuctl-output.log").exists() or \
            "57/100" not in (tmp_path / "a" / "gpuctl-output.log").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pod.send_signal(signal.SIGTERM)
    assert pod.wait(timeout=20) == 42
    k8s_cluster.preempt_pod(k8s_namespace, first)

    # Restarted, and no records yet: unknown, never 0.
    second = wait_for(lambda: running(other_than=first), what="a replacement pod")["metadata"]["name"]
    listed = CliRunner().invoke(cli, ["jobs", "--gke", "--json", *where])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert row["restarts"] == 1 and row["checkpoints"] == f"{URL}/train"
    assert row["steps_lost"] == [] and "no host has recorded its steps yet" in row["steps_note"]

    time.sleep(1.1)  # the records' times have one-second resolution: the replacement's come later
    assert keep(mount, tmp_path / "b", second, 41, 70).wait(timeout=20) == 0
    for path in (mount / ".gpuctl").rglob("*"):  # what Cloud Storage FUSE does on close
        if path.is_file():
            bucket.blob(f"llama/train/{path.relative_to(mount)}").upload_from_filename(str(path))

    listed = CliRunner().invoke(cli, ["jobs", "--gke", "--json", *where])
    (row,) = json.loads(listed.stdout)
    assert (row["restarts"], row["steps_lost"], row["steps_note"]) == (1, [17], None)
    table = CliRunner().invoke(cli, ["jobs", "--gke", *where])
    assert table.exit_code == 0 and "steps lost" in table.stdout
    (line,) = [line for line in table.stdout.splitlines() if "train" in line and "active" in line]
    assert "│ 1 " in line and "│ 17 " in line, table.stdout
