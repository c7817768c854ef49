"""The checkpoint saved in a spot VM's 30 s preemption notice reaches the bucket.

Google powers a Spot VM off 30 s after the ACPI soft off that starts the guest's shutdown
(compute.v1.json, Scheduling.skipGuestOsShutdown), so "finished = unchanged for 30 s" can never
hold for that checkpoint. The syncer (runs/host_scripts/checkpoint_sync.py) takes the writer's
word instead: trainer_state.json in a Hugging Face checkpoint-<N> folder, or the .gpuctl-complete
file any trainer can create last. The supervisor (run_host.py) gets SIGTERM, as in the guest's
shutdown, and bounds the last upload by run_host.NOTICE_FLUSH_S.

Real processes throughout: the run helper's setsid'd supervisor, a fake trainer, the syncer, the
Cloud Storage emulator (fake-gcs-server) and a stand-in GCE metadata server for the token.
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

from gpuctl.runs.host_scripts import checkpoint_sync as sync
from gpuctl.runs.host_scripts import run_host
from tests.gcs.metadata_server import MetadataStandIn

SCRIPT = Path(sync.__file__)
HELPER = SCRIPT.with_name("run_host.py")
BUCKET = "team-ckpts"
URL = f"gs://{BUCKET}/llama/run-1"
PREFIX = "llama/run-1/"
OLD = time.time() - 3600

# A trainer in the two styles the syncer recognises. It resumes from the newest folder it
# finished, saves one checkpoint at once (a regular save_steps save), then "trains" step 137.
# On SIGTERM it ends the step, saves checkpoint 137 (weights over one 8 MiB upload chunk, the
# optimizer, then after a moment the file that says "done": trainer_state.json or the marker)
# and exits 143, as examples/lora/train_lora.py does. HALF=1: on SIGTERM it starts a save it
# never finishes (weights growing, no last file), as with a checkpoint too big for the notice.
TRAINER = r"""
import os, signal, sys, time
d = os.environ["GPUCTL_CHECKPOINT_DIR"]
hf = os.environ["STYLE"] == "hf"
LAST = "trainer_state.json" if hf else ".gpuctl-complete"

def folder(step):
    return os.path.join(d, ("checkpoint-%d" if hf else "step-%06d") % step)

def save(step):
    path = folder(step)
    os.makedirs(path)
    with open(os.path.join(path, "model.safetensors"), "wb") as f:
        f.write(os.urandom(9 * 2**20))
    with open(os.path.join(path, "optimizer.pt"), "wb") as f:
        f.write(b"adam state at %d" % step)
    time.sleep(0.5)
    with open(os.path.join(path, LAST), "w") as f:
        f.write('{"global_step": %d}' % step)
    print("saved", step, flush=True)

done = sorted(int(n.split("-")[1]) for n in os.listdir(d) if os.path.exists(os.path.join(d, n, LAST)))
print("resumed from", done[-1] if done else 0, flush=True)
if os.environ.get("ONLY_REPORT"):
    sys.exit(0)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
save(100)
while not stop:
    time.sleep(0.05)  # step 137
time.sleep(1.0)  # the end of the step
if os.environ.get("HALF"):
    path = folder(200)
    os.makedirs(path)
    with open(os.path.join(path, "model.safetensors"), "ab") as f:
        while True:
            f.write(os.urandom(64 * 1024))
            f.flush()
            time.sleep(0.1)
save(137)
sys.exit(143)
"""


@pytest.fixture
def env(monkeypatch, tmp_path):
    with MetadataStandIn().start() as server:
        monkeypatch.setenv("GCE_METADATA_HOST", server.host)
        try:
            yield {**os.environ, "GCE_METADATA_HOST": server.host}
        finally:
            end_runs(tmp_path)


def end_runs(tmp_path: Path) -> None:
    """A failed test leaves no supervisor or trainer behind (the trainer loops until SIGTERM).
    Only processes whose command line shows they are this test's (a pid may have been reused)."""
    for run_dir in tmp_path.glob("*/runs/llama"):
        for name, mark in (("supervisor.pid", str(run_dir)), ("pid", "# step 137")):
            try:
                pid = int((run_dir / name).read_text())
                if mark in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass


@pytest.fixture
def bucket(gcs_emulator):
    return gcs_emulator.client().create_bucket(BUCKET)


def names(bucket) -> set[str]:
    return {blob.name for blob in bucket.client.list_blobs(bucket.name)}


def manifest(bucket, entry: str) -> dict:
    return json.loads(bucket.blob(f"{PREFIX}{entry}/{sync.MARKER}").download_as_bytes())


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout} s")


def start(tmp_path: Path, vm: str, env: dict, job_env: dict, grace: float = 10) -> Path:
    """The run helper's `start` (setsid'd supervisor with the syncer), as `gpuctl run` sends it."""
    from gpuctl.runs.service import syncer_source

    base = tmp_path / vm
    request = {"name": "llama", "base": str(base), "argv": [sys.executable, "-c", TRAINER],
               "launcher": "setsid", "jobs_dir": str(base / "jobs"), "env": job_env, "grace": grace,
               "checkpoints": {"dir": str(base / "checkpoints" / "llama"), "url": URL,
                               "syncer": syncer_source()}}
    done = subprocess.run([sys.executable, str(HELPER), "start"], input=json.dumps(request).encode(),
                          env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return base / "runs" / "llama"


def preempt(run_dir: Path) -> float:
    """SIGTERM to the supervisor, as the guest's shutdown sends it; returns how long the
    supervisor took to write the exit code and end."""
    supervisor = int((run_dir / "supervisor.pid").read_text())
    sent = time.monotonic()
    os.kill(supervisor, signal.SIGTERM)
    wait_for(lambda: not sync.pid_alive(supervisor), 40, "end of the supervisor")
    return time.monotonic() - sent


def log_of(run_dir: Path) -> str:
    return (run_dir / "output.log").read_text()


@pytest.mark.parametrize("style, entry, last", [
    ("hf", "checkpoint-{}", "trainer_state.json"),
    ("marker", "step-{:06d}", None),  # a non-Hugging Face trainer: the marker file is its word
])
def test_the_checkpoint_saved_in_the_notice_is_uploaded_and_resumed_from(
        tmp_path, gcs_emulator, env, bucket, style, entry, last):
    run_dir = start(tmp_path, "vm-1", env, {"STYLE": style})
    first, notice = entry.format(100), entry.format(137)

    # A finished checkpoint goes up while the run goes on: at once, not after 30 s of quiet.
    saved = time.monotonic()
    wait_for(lambda: "saved 100" in log_of(run_dir), 30, "first save")
    wait_for(lambda: f"{PREFIX}{first}/{sync.MARKER}" in names(bucket), 20, f"{first} in the bucket")
    assert time.monotonic() - saved < sync.SETTLE_S
    assert sync.pid_alive(int((run_dir / "pid").read_text()))

    took = preempt(run_dir)
    assert took < run_host.NOTICE_FLUSH_S, log_of(run_dir)
    log = log_of(run_dir)
    assert (run_dir / "exit_code").read_text().strip() == "143", log
    assert "saved 137" in log
    files = manifest(bucket, notice)["files"]
    assert files[f"{notice}/model.safetensors"] == 9 * 2**20
    assert set(files) == {f"{notice}/model.safetensors", f"{notice}/optimizer.pt"} | (
        {f"{notice}/{last}"} if last else set())  # the trainer's own marker is a signal, not data
    assert f"[gpuctl] checkpoints: uploaded {notice}" in log

    # A fresh VM (a new NVMe) resumes from the checkpoint of the notice.
    second = start(tmp_path, "vm-2", env, {"STYLE": style, "ONLY_REPORT": "1"})
    wait_for(lambda: (second / "exit_code").exists(), 60, "the second run's end")
    assert "resuming from " + notice in log_of(second)
    assert "resumed from 137" in log_of(second)


def test_a_half_written_checkpoint_is_never_marked_complete(tmp_path, gcs_emulator, env, bucket):
    """The notice comes while the trainer writes a checkpoint it cannot finish: the finished
    one before it is the one the next VM gets; nothing of the unfinished one goes up."""
    run_dir = start(tmp_path, "vm-1", env, {"STYLE": "hf", "HALF": "1"}, grace=3)
    wait_for(lambda: f"{PREFIX}checkpoint-100/{sync.MARKER}" in names(bucket), 30, "checkpoint-100")

    took = preempt(run_dir)
    assert took < run_host.NOTICE_FLUSH_S
    half = run_dir.parent.parent / "checkpoints" / "llama" / "checkpoint-200" / "model.safetensors"
    assert half.stat().st_size > 0  # it was being written
    assert not any(name.startswith(PREFIX + "checkpoint-200") for name in names(bucket))
    assert "not finished, not uploaded: checkpoint-200" in log_of(run_dir)

    gcs = sync.Gcs(URL)
    assert sync.pull(gcs, str(tmp_path / "vm-2"), str(tmp_path / "s.json")) == "checkpoint-100"


def write(path: Path, data: bytes, mtime: float = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def test_evidence_rules(tmp_path, gcs_emulator, env, bucket):
    """Which fresh folders (all written just now, far inside the 30 s settle time) are finished."""
    now = time.time()
    d = tmp_path / "ckpt"
    write(d / "checkpoint-300" / "model.bin", b"w300", now - 5)
    write(d / "checkpoint-300" / "trainer_state.json", b"{}", now - 3)  # last, and 3 s quiet
    write(d / "step-7" / "weights.pt", b"w7", now - 2.5)
    write(d / "step-7" / sync.MARKER, b"", now - 2.5)  # a non-HF trainer's word
    write(d / "checkpoint-400" / "model.bin", b"w400", now - 5)
    write(d / "checkpoint-400" / "trainer_state.json", b"{}", now - 4)
    write(d / "checkpoint-400" / "rng_state.pth", b"rng", now - 0.5)  # older Trainers: just after
    write(d / "tmp-checkpoint-500" / "trainer_state.json", b"{}", now - 3)  # a Trainer's staging folder
    write(d / "checkpoint-600" / "model.bin", b"half", now - 3)  # no word from the writer
    state = str(tmp_path / "state.json")
    gcs = sync.Gcs(URL)

    # While the writer runs: evidence and QUIET_S of quiet; newest first.
    assert sync.QUIET_S < 2.5
    assert sync.push(gcs, str(d), state) == ["step-7", "checkpoint-300"]
    got = names(bucket)
    assert manifest(bucket, "step-7")["files"] == {"step-7/weights.pt": 2}  # the marker file: not data
    assert manifest(bucket, "checkpoint-300")["files"] == {"checkpoint-300/model.bin": 4,
                                                           "checkpoint-300/trainer_state.json": 2}
    assert not any(n.startswith(PREFIX + p) for n in got
                   for p in ("checkpoint-400", "tmp-checkpoint-500", "checkpoint-600"))

    # The writer has ended: its evidence is enough, fresh or not; no evidence still waits.
    assert sync.push(gcs, str(d), state, now=time.time(), quiet_s=0) == ["checkpoint-400"]
    assert not any(n.startswith(PREFIX + p) for n in names(bucket) for p in ("tmp-checkpoint-500", "checkpoint-600"))


def test_the_marker_comes_back_with_the_checkpoint_for_a_non_hf_trainer(tmp_path, gcs_emulator, env, bucket):
    write(tmp_path / "a" / "step-9" / "weights.pt", b"nine", time.time())
    write(tmp_path / "a" / "step-9" / sync.MARKER, b"", time.time())
    gcs = sync.Gcs(URL)
    assert sync.push(gcs, str(tmp_path / "a"), str(tmp_path / "a.json"), quiet_s=0) == ["step-9"]
    assert sync.pull(gcs, str(tmp_path / "b"), str(tmp_path / "b.json")) == "step-9"
    assert (tmp_path / "b" / "step-9" / "weights.pt").read_bytes() == b"nine"
    # The trainer finds its own "finished" file on what it resumes from (gpuctl's manifest).
    assert json.loads((tmp_path / "b" / "step-9" / sync.MARKER).read_text())["files"] == {"step-9/weights.pt": 4}
    assert sync.push(gcs, str(tmp_path / "b"), str(tmp_path / "b.json"), quiet_s=0) == []  # not sent back


def test_the_replacement_takes_the_newest_checkpoint_not_the_last_marked(tmp_path, gcs_emulator, env, bucket):
    """Newest first means the older checkpoint's marker goes up last. The replacement still
    resumes from the newer one: markers carry when their checkpoint was written. A marker from
    an older syncer (no such metadata) counts by when it went up."""
    d = tmp_path / "ckpt"
    write(d / "checkpoint-100" / "trainer_state.json", b"{}", OLD)
    write(d / "checkpoint-200" / "trainer_state.json", b"{}", OLD + 60)
    gcs = sync.Gcs(URL)
    assert sync.push(gcs, str(d), str(tmp_path / "s.json")) == ["checkpoint-200", "checkpoint-100"]
    markers = {b.name: b for b in bucket.client.list_blobs(bucket.name) if b.name.endswith(sync.MARKER)}
    assert markers[PREFIX + "checkpoint-200/" + sync.MARKER].metadata == {sync.WRITTEN_AT: f"{OLD + 60:.6f}"}
    assert sync.pull(gcs, str(tmp_path / "vm-2"), str(tmp_path / "s2.json")) == "checkpoint-200"

    time.sleep(1.1)  # object times have one-second resolution on some servers
    legacy = bucket.blob(PREFIX + "checkpoint-300/" + sync.MARKER)
    legacy.upload_from_string(json.dumps({"files": {}}))  # no metadata, marked just now
    assert sync.newest_complete(gcs)[0] == "checkpoint-300"


def test_out_of_time_goes_newest_first_and_names_what_was_left(tmp_path, gcs_emulator, env, bucket):
    """The budget runs out inside the second checkpoint's big file: the newest is complete in the
    bucket, the one cut off has no marker, and both it and the one never started are named."""
    d = tmp_path / "ckpt"
    for step in (100, 200, 300):
        write(d / f"checkpoint-{step}" / "model.bin", os.urandom(sync.CHUNK * 2 + 1), OLD + step)
        write(d / f"checkpoint-{step}" / "trainer_state.json", b"{}", OLD + step + 1)
    gcs = sync.Gcs(URL)
    gcs.deadline = time.monotonic() + 600
    upload, send, cut = gcs.upload, gcs._send, []

    def upload_noting(rel, path, *metadata):
        cut[:] = [rel == "checkpoint-200/model.bin"]
        return upload(rel, path, *metadata)

    def send_then_run_out(method, url, *args, **kwargs):
        answer = send(method, url, *args, **kwargs)
        if cut == [True] and method == "PUT":  # one chunk of checkpoint-200 is up: time is up
            gcs.deadline = time.monotonic() - 1
        return answer

    gcs.upload, gcs._send = upload_noting, send_then_run_out
    with pytest.raises(sync.OutOfTime) as caught:
        sync.push(gcs, str(d), str(tmp_path / "state.json"))
    assert caught.value.pushed == ["checkpoint-300"]
    assert caught.value.left == ["checkpoint-200", "checkpoint-100"]
    got = names(bucket)
    assert PREFIX + "checkpoint-300/" + sync.MARKER in got
    assert not any(n.startswith(PREFIX + "checkpoint-200") for n in got)  # cut off: not even an object
    assert not any(n.startswith(PREFIX + "checkpoint-100") for n in got)


def test_the_cli_says_what_it_left_when_the_budget_is_spent(tmp_path, gcs_emulator, env, bucket):
    d = tmp_path / "ckpt"
    write(d / "checkpoint-1" / "trainer_state.json", b"{}", OLD)
    write(d / "checkpoint-2" / "trainer_state.json", b"{}", OLD + 1)
    write(d / "checkpoint-3" / "model.bin", b"half", time.time())
    done = subprocess.run([sys.executable, str(SCRIPT), "push", "--dir", str(d), "--url", URL, "--final",
                           "--budget", "0"], env=env, capture_output=True, timeout=60)
    assert done.returncode == sync.OUT_OF_TIME
    assert json.loads(done.stdout.decode().splitlines()[-1]) == {
        "pushed": [], "left": ["checkpoint-2", "checkpoint-1"], "incomplete": ["checkpoint-3"]}
    assert done.stderr.decode().strip() == \
        "checkpoint sync: out of time (0 s): not uploaded, newest first: checkpoint-2, checkpoint-1"
    assert names(bucket) == set()
