"""What `gpuctl jobs` / `gpuctl status` say of a `run --recover` run's steps: the step it is at,
the steps preemptions made it redo, and what finishing costs, read from what each VM's host left in
the run's bucket folder (the VM's own disk goes with it).

Host side: the checkpoint syncer (runs/host_scripts/checkpoint_sync.py) as real processes, under
the run helper's supervisor where it matters, against the Cloud Storage emulator (fake-gcs-server
behind the discovery-doc contract proxy) and a stand-in GCE metadata server that names the VM's
instance id: the run's log goes up while it runs and once more in the preemption notice, after the
checkpoint; each VM records the checkpoint it resumed from.

View side: the CLI over the `run --recover` stand-ins of test_recover_live (Compute, Scheduler,
IAM, the real Pulumi engine), with the syncer run as each incarnation of the group's VM, its
metadata server serving that incarnation's instance id: the second VM resumes from step 40 after
the first logged step 57, so 17 steps were redone; to finish = steps left x s/step x hourly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuctl.cli.main import cli
from gpuctl.recovery.view import HostLife, steps_figures
from gpuctl.runs.host_scripts import checkpoint_sync as sync
from gpuctl.runs.host_scripts import run_host
from gpuctl.runs.progress import parse_text
from tests.gcs.metadata_server import MetadataStandIn
from tests.standins.compute import compute_standin  # noqa: F401 (fixture)
from tests.standins.compute_migs import InstanceMetadataServer
from tests.test_checkpoints_notice import TRAINER, end_runs, log_of, names, wait_for
from tests.test_recover_live import BUCKET as GROUP_BUCKET
from tests.test_recover_live import cli_json, cloud, preempt, start, vm_of  # noqa: F401 (fixture)
from tests.test_vm_checkpoint_access_live import iam  # noqa: F401 (fixture)

SCRIPT = Path(sync.__file__)
HELPER = SCRIPT.with_name("run_host.py")
BUCKET = "team-ckpts"
URL = f"gs://{BUCKET}/llama/run-1"
PREFIX = "llama/run-1/"
FIRST_VM, SECOND_VM = "4410225338611712345", "7302188200094417123"


@pytest.fixture
def metadata(monkeypatch, tmp_path):
    with MetadataStandIn(instance_id=FIRST_VM).start() as server:
        monkeypatch.setenv("GCE_METADATA_HOST", server.host)
        try:
            yield server
        finally:
            end_runs(tmp_path)


@pytest.fixture
def bucket(gcs_emulator):
    return gcs_emulator.client().create_bucket(BUCKET)


def blob_text(bucket, name: str) -> str:
    return bucket.blob(name).download_as_bytes().decode()


def start_run(tmp_path: Path, vm: str, job_env: dict, keep_log: bool = True) -> Path:
    """The run helper's `start`, as the bootstrap sends it (keep_log: False is a plain `gpuctl run`)."""
    from gpuctl.runs.service import syncer_source

    base = tmp_path / vm
    request = {"name": "llama", "base": str(base), "argv": [sys.executable, "-c", TRAINER],
               "launcher": "setsid", "jobs_dir": str(base / "jobs"), "env": job_env, "grace": 10,
               "checkpoints": {"dir": str(base / "checkpoints" / "llama"), "url": URL,
                               "syncer": syncer_source(), "keep_log": keep_log}}
    done = subprocess.run([sys.executable, str(HELPER), "start"], input=json.dumps(request).encode(),
                          env=dict(os.environ), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return base / "runs" / "llama"


# --- host side -------------------------------------------------------------------------------------

def test_the_log_goes_up_while_the_run_runs(tmp_path, gcs_emulator, metadata, bucket):
    """push --every with --log: the log's copy in the bucket follows the log while the writer runs."""
    log = tmp_path / "output.log"
    log.write_text("first line\n")
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pusher = subprocess.Popen([sys.executable, str(SCRIPT), "push", "--dir", str(tmp_path / "ckpt"),
                                   "--url", URL, "--every", "0.2", "--while-pid", str(writer.pid),
                                   "--log", str(log), "--log-every", "0.5"], env=dict(os.environ),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        name = f"{PREFIX}.gpuctl/logs/{FIRST_VM}.log"
        wait_for(lambda: name in names(bucket), 20, "the log's first copy")
        assert blob_text(bucket, name) == "first line\n"
        with log.open("a") as f:
            f.write(" 12%|#         | 12/100 [00:24<02:56,  2.00s/it]\n")
        wait_for(lambda: "12/100" in blob_text(bucket, name), 20, "the grown log's copy")
        assert pusher.poll() is None  # still going: the writer runs
    finally:
        writer.kill()
        writer.wait()
    assert pusher.wait(timeout=30) == 0, pusher.stderr.read().decode()
    assert pusher.stderr.read() == b""


def test_the_notice_uploads_the_checkpoint_then_the_log_and_the_next_vm_records_where_it_resumed(
        tmp_path, gcs_emulator, metadata, bucket):
    run_dir = start_run(tmp_path, "vm-1", {"STYLE": "hf"})
    wait_for(lambda: f"{PREFIX}checkpoint-100/{sync.MARKER}" in names(bucket), 30, "checkpoint-100")
    # The first VM started fresh: step 0.
    first = json.loads(blob_text(bucket, f"{PREFIX}.gpuctl/resumed/{FIRST_VM}.json"))
    assert (first["checkpoint"], first["step"]) == (None, 0) and first["at"]

    supervisor = int((run_dir / "supervisor.pid").read_text())
    sent = time.monotonic()
    os.kill(supervisor, signal.SIGTERM)  # the guest's shutdown in the spot notice
    wait_for(lambda: not sync.pid_alive(supervisor), 40, "end of the supervisor")
    assert time.monotonic() - sent < run_host.NOTICE_FLUSH_S, log_of(run_dir)
    assert "saved 137" in log_of(run_dir)

    # The log in the bucket holds the notice's last lines: it went up in the notice, and only
    # after the checkpoint did (the checkpoint is what the next VM needs).
    blobs = {b.name: b for b in bucket.client.list_blobs(BUCKET)}
    copy = blobs[f"{PREFIX}.gpuctl/logs/{FIRST_VM}.log"]
    assert "saved 137" in copy.download_as_bytes().decode()
    assert copy.updated >= blobs[f"{PREFIX}checkpoint-137/{sync.MARKER}"].updated

    # A replacement (another instance id) resumes from checkpoint-137 and says so.
    metadata.instance_id = SECOND_VM
    second = start_run(tmp_path, "vm-2", {"STYLE": "hf", "ONLY_REPORT": "1"})
    wait_for(lambda: (second / "exit_code").exists(), 60, "the second run's end")
    assert "resumed from 137" in log_of(second)
    resumed = json.loads(blob_text(bucket, f"{PREFIX}.gpuctl/resumed/{SECOND_VM}.json"))
    assert (resumed["checkpoint"], resumed["step"]) == ("checkpoint-137", 137)
    # Its log went up at the end of its run (the last pass after the command), first line to last.
    text = blob_text(bucket, f"{PREFIX}.gpuctl/logs/{SECOND_VM}.log")
    assert "resuming from checkpoint-137" in text and "resumed from 137" in text


def test_a_plain_checkpointed_run_keeps_its_log_on_the_host(tmp_path, gcs_emulator, metadata, bucket):
    """Only a --recover run's log goes to the bucket: another run's may hold what its user would
    not put in a bucket that others can read."""
    run_dir = start_run(tmp_path, "vm-1", {"STYLE": "hf", "ONLY_REPORT": "1"}, keep_log=False)
    wait_for(lambda: (run_dir / "exit_code").exists(), 60, "the run's end")
    assert not [n for n in names(bucket) if "/.gpuctl/logs/" in n]


def test_a_huge_log_goes_up_as_its_tail_from_a_line_start(tmp_path, gcs_emulator, metadata, bucket, monkeypatch):
    monkeypatch.setattr(sync, "LOG_CAP", 1000)
    log = tmp_path / "output.log"
    log.write_text("".join(f"line {n:05d}\n" for n in range(2000)))  # 22 kB
    copy = sync.LogCopy(sync.Gcs(URL), str(log), str(tmp_path / "state.json"))
    assert copy.upload() is True
    text = blob_text(bucket, f"{PREFIX}.gpuctl/logs/{FIRST_VM}.log")
    assert len(text) <= 1000 and text.endswith("line 01999\n") and text.startswith("line ")
    assert copy.upload() is True and not list(tmp_path.glob(".gpuctl-record-*"))  # unchanged: kept


def test_no_instance_id_costs_the_log_one_line_and_never_a_checkpoint(tmp_path, gcs_emulator, metadata, bucket):
    metadata.instance_id = "not-a-number"
    checkpoint = tmp_path / "ckpt" / "checkpoint-5"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text('{"global_step": 5}')
    (tmp_path / "output.log").write_text("hello\n")
    done = subprocess.run([sys.executable, str(SCRIPT), "push", "--dir", str(tmp_path / "ckpt"), "--url", URL,
                           "--final", "--log", str(tmp_path / "output.log")], env=dict(os.environ),
                          capture_output=True, timeout=60)
    assert done.returncode == 0
    assert json.loads(done.stdout.decode().splitlines()[-1])["pushed"] == ["checkpoint-5"]
    assert done.stderr.decode().count("the run's log did not go up") == 1
    assert not any(".gpuctl/" in name for name in names(bucket))


# --- the figures, pure ---------------------------------------------------------------------------

def bar(first: int, last: int, rate: float = 2.0, total: int = 100) -> str:
    """tqdm's bar as the Trainer draws it, step by step, rewritten in place with \\r."""
    return "".join(f"\r {s}%|#####     | {s}/{total} [00:10<01:00, {rate:.2f}s/it]"
                   for s in range(first, last + 1)) + "\n"


def life(incarnation: str, resumed_step, log: str | None, checkpoint=None) -> HostLife:
    return HostLife(incarnation, None, checkpoint, resumed_step, parse_text(log) if log is not None else None)


def test_steps_redone_add_up_per_preemption_and_unknown_stays_unknown():
    lives = [life("1", 0, bar(1, 57)), life("2", 40, bar(41, 70), "checkpoint-40"),
             life("3", 70, bar(71, 80, rate=3.0), "checkpoint-70")]
    got = steps_figures(lives, hourly_usd=3.6)
    assert (got["step"], got["total_steps"], got["steps_redone"]) == (80, 100, 17)
    assert [row["steps_redone"] for row in got["lives"]] == [None, 17, 0]
    assert got["seconds_per_step"] == 3.0  # the newest rate
    assert got["eta_seconds"] == pytest.approx(20 * 3.0)
    assert got["cost_to_finish_usd"] == pytest.approx(20 * 3.0 / 3600 * 3.6)
    assert got["steps_note"] is None

    # A replacement that has resumed but logged no step yet: at the step it resumed from.
    assert steps_figures(lives[:2] + [life("3", 70, "loading the model\n")], 3.6)["step"] == 70
    # A missing side of a preemption: unknown, not 0 (and not the others' sum).
    assert steps_figures([lives[0], life("2", None, bar(41, 70))], 3.6)["steps_redone"] is None
    assert steps_figures([life("1", 0, None), lives[1]], 3.6)["steps_redone"] is None
    # The first recorded life resumed mid-run: what came before it is not known.
    assert steps_figures([lives[1]], 3.6)["steps_redone"] is None
    assert steps_figures([lives[0]], 3.6)["steps_redone"] == 0
    # Nothing recorded, no total, no price: unknown, with the reason.
    assert steps_figures([], 3.6) == {"steps_redone": None, "lives": [],
                                      "steps_note": "no host has recorded its steps yet"}
    no_total = steps_figures([life("1", 0, "{'loss': 1.5, 'learning_rate': 1e-05, 'epoch': 0.1}\n")], 3.6)
    assert no_total["cost_to_finish_usd"] is None and no_total["steps_note"] == "the logs name no total steps"
    assert steps_figures(lives, None)["cost_to_finish_usd"] is None


# --- jobs and status over the run --recover stand-ins ------------------------------------------------

def play_vm(cloud, workdir: Path, log: str, checkpoint_step: int | None) -> dict:
    """One incarnation of the group's VM, as its host does it: pull (and record where it resumed),
    run (the log), save, and the last push with the log. The metadata server follows the VM by
    name and answers this incarnation's instance id. Returns the pulled entry."""
    vm, _ = vm_of(cloud.standin)
    folder = f"gs://{GROUP_BUCKET}/runs/llama"
    with InstanceMetadataServer(cloud.standin, vm) as server:
        env = {**os.environ, "GCE_METADATA_HOST": server.host, "GPUCTL_STORAGE_ENDPOINT": cloud.gcs.endpoint}
        base = ["--dir", str(workdir / "ckpt"), "--url", folder]
        pulled = subprocess.run([sys.executable, str(SCRIPT), "pull", *base], env=env, capture_output=True,
                                timeout=60)
        assert pulled.returncode == 0 and pulled.stderr == b"", pulled.stderr.decode()
        (workdir / "output.log").write_text(log)
        if checkpoint_step is not None:
            saved = workdir / "ckpt" / f"checkpoint-{checkpoint_step}"
            saved.mkdir(parents=True)
            (saved / "trainer_state.json").write_text(json.dumps({"global_step": checkpoint_step}))
        pushed = subprocess.run([sys.executable, str(SCRIPT), "push", *base, "--final", "--settle", "0",
                                 "--log", str(workdir / "output.log")], env=env, capture_output=True, timeout=60)
        assert pushed.returncode == 0 and pushed.stderr == b"", pushed.stderr.decode()
    return json.loads(pulled.stdout)


def test_jobs_and_status_show_the_steps_redone_and_the_cost_to_finish(cloud, tmp_path):
    started = start()
    hourly = started["cost"]["price_per_hour"]

    # Before any host recorded anything: unknown, in words, never 0.
    [row] = cli_json("jobs")
    g = row["recover"]
    assert (g["step"], g["steps_redone"], g["cost_to_finish_usd"]) == (None, None, None)
    assert row["step"] is None and row["cost_to_complete_usd"] is None
    human = " ".join(CliRunner().invoke(cli, ["jobs"]).output.split())
    assert "step unknown, steps redone after preemptions unknown, to finish unknown" in human, human

    # The first VM starts fresh, saves at step 40, logs up to step 57 and is preempted.
    first = play_vm(cloud, tmp_path / "vm-1", bar(1, 57), checkpoint_step=40)
    assert first == {"pulled": None}
    first_id = cloud.standin.instance(vm_of(cloud.standin)[0])["id"]
    preempt(cloud.standin, 1.0)
    # Its replacement resumes from checkpoint-40 and logs on to step 70 at 2 s a step.
    second = play_vm(cloud, tmp_path / "vm-2", "[gpuctl] checkpoints: resuming from checkpoint-40\n"
                     + bar(41, 70), checkpoint_step=None)
    assert second == {"pulled": "checkpoint-40"}
    second_id = cloud.standin.instance(vm_of(cloud.standin)[0])["id"]

    [row] = cli_json("jobs")
    g = row["recover"]
    assert g["recreations"] == 1 and g["preemptions"] == 1
    assert (g["step"], g["total_steps"], g["steps_redone"]) == (70, 100, 17)
    # The hosts' records are the incarnations Compute Engine counts (instance id = targetId).
    assert [(x["incarnation"], x["resumed_step"], x["last_step"], x["steps_redone"]) for x in g["lives"]] == [
        (first_id, 0, 57, None), (second_id, 40, 70, 17)]
    assert g["seconds_per_step"] == 2.0
    assert g["cost_to_finish_usd"] == pytest.approx(30 * 2.0 / 3600 * hourly, abs=1e-4)
    assert (row["step"], row["total_steps"], row["percent"]) == (70, 100, 70.0)
    assert row["cost_to_complete_usd"] == g["cost_to_finish_usd"] and row["eta_seconds"] == 60.0

    [status] = cli_json("status")
    seen = status["recover"]
    assert seen["steps_redone"] == 17 and seen["cost_to_finish_usd"] == g["cost_to_finish_usd"]
    for command in (["jobs"], ["status"]):
        done = CliRunner().invoke(cli, command)
        text = " ".join(done.output.split())
        assert done.exit_code == 0, done.output
        assert "step 70/100 (70%), steps redone after preemptions 17, to finish $" in text, done.output
