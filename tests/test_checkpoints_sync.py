"""The on-host checkpoint syncer (runs/host_scripts/checkpoint_sync.py) against the real Cloud
Storage emulator, with its token from a stand-in GCE metadata server: finished checkpoints go up,
half-written ones do not, and a replacement pulls the newest complete one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpuctl.runs.host_scripts import checkpoint_sync as sync
from tests.gcs.metadata_server import TOKEN, TOKEN_PATH, MetadataStandIn

SCRIPT = Path(sync.__file__)
BUCKET = "team-ckpts"
URL = f"gs://{BUCKET}/llama/run-1"
OLD = time.time() - 3600  # an mtime long settled


@pytest.fixture
def metadata(monkeypatch):
    with MetadataStandIn().start() as server:
        monkeypatch.setenv("GCE_METADATA_HOST", server.host)
        yield server


@pytest.fixture
def bucket(gcs_emulator):
    return gcs_emulator.client().create_bucket(BUCKET)


def write(path: Path, data: bytes, mtime: float = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def objects(bucket) -> dict[str, bytes]:
    return {blob.name: blob.download_as_bytes() for blob in bucket.client.list_blobs(bucket.name)}


def test_push_uploads_settled_checkpoints_with_the_metadata_token(tmp_path, gcs_emulator, metadata, bucket):
    folder = tmp_path / "checkpoints" / "run-1"
    big = os.urandom(sync.CHUNK + 300 * 1024)  # two resumable chunks
    write(folder / "checkpoint-100" / "model.safetensors", big)
    write(folder / "checkpoint-100" / "trainer_state.json", b'{"global_step": 100}')
    write(folder / "checkpoint-100" / "empty.flag", b"")
    write(folder / "checkpoint-200" / "model.safetensors", b"being written", mtime=time.time())
    state = str(tmp_path / "state.json")

    gcs = sync.Gcs(URL)
    before = len(gcs_emulator.contract.authorizations)  # the test's own (anonymous) calls
    assert sync.push(gcs, str(folder), state, settle_s=30) == ["checkpoint-100"]
    pushed = gcs_emulator.contract.authorizations[before:]
    got = objects(bucket)
    prefix = "llama/run-1/checkpoint-100/"
    assert got[prefix + "model.safetensors"] == big and got[prefix + "empty.flag"] == b""
    assert json.loads(got[prefix + sync.MARKER])["files"] == {
        "checkpoint-100/model.safetensors": len(big), "checkpoint-100/trainer_state.json": 20,
        "checkpoint-100/empty.flag": 0}
    assert not any(name.startswith("llama/run-1/checkpoint-200") for name in got)  # not settled

    # The token came from the metadata server, asked the way Google requires, and was used.
    assert [r.path for r in metadata.requests] == [TOKEN_PATH]
    # 4 uploads (3 files + the marker), each a session start and its chunks: all with the token.
    assert len(pushed) >= 8 and set(pushed) == {f"Bearer {TOKEN}"}

    # Nothing changed: nothing is sent again.
    sent = len(gcs_emulator.contract.authorizations)
    assert sync.push(gcs, str(folder), state, settle_s=30) == []
    assert len(gcs_emulator.contract.authorizations) == sent


def test_replacement_pulls_the_newest_complete_checkpoint_only(tmp_path, gcs_emulator, metadata, bucket):
    first = tmp_path / "vm-1"
    write(first / "checkpoint-100" / "model.bin", b"step 100")
    gcs = sync.Gcs(URL)
    sync.push(gcs, str(first), str(tmp_path / "s1.json"), settle_s=0)
    time.sleep(1.1)  # object times have one-second resolution on some servers
    big = os.urandom(sync.CHUNK + 12345)  # downloaded in a stream, not into memory
    write(first / "checkpoint-200" / "model.bin", b"step 200 weights")
    write(first / "checkpoint-200" / "optimizer.pt", big)
    write(first / "checkpoint-200" / "trainer_state.json", b"{}")
    sync.push(gcs, str(first), str(tmp_path / "s1.json"), settle_s=0)
    # A preemption in the middle of uploading checkpoint-300: files up, no marker.
    bucket.blob("llama/run-1/checkpoint-300/model.bin").upload_from_string(b"half")

    second = tmp_path / "vm-2"
    assert sync.pull(gcs, str(second), str(tmp_path / "s2.json")) == "checkpoint-200"
    # The files, and the writer's "finished" marker as the trainer left it (a trainer that picks
    # its resume point by that marker finds this one): it holds the manifest.
    assert sorted(p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file()) == [
        "checkpoint-200/" + sync.MARKER, "checkpoint-200/model.bin", "checkpoint-200/optimizer.pt",
        "checkpoint-200/trainer_state.json"]
    assert json.loads((second / "checkpoint-200" / sync.MARKER).read_text())["files"][
        "checkpoint-200/optimizer.pt"] == len(big)
    assert (second / "checkpoint-200" / "model.bin").read_bytes() == b"step 200 weights"
    assert (second / "checkpoint-200" / "optimizer.pt").read_bytes() == big
    # What was pulled is not pushed back.
    assert sync.push(gcs, str(second), str(tmp_path / "s2.json"), settle_s=0) == []


def test_pull_with_nothing_uploaded_yet_is_a_fresh_start(tmp_path, gcs_emulator, metadata, bucket):
    assert sync.pull(sync.Gcs(URL), str(tmp_path / "d"), str(tmp_path / "s.json")) is None


def test_push_loop_follows_the_run_and_the_last_pass_takes_what_is_final(tmp_path, gcs_emulator,
                                                                         metadata, bucket):
    """The script as the host runs it: repeated pushes while the trainer lives, ending with it;
    then the supervisor's last pass (--settle 0 after a clean exit) takes the last checkpoint."""
    folder = tmp_path / "ckpt"
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    env = {**os.environ, "GCE_METADATA_HOST": metadata.host}
    syncer = subprocess.Popen([sys.executable, str(SCRIPT), "push", "--dir", str(folder), "--url", URL,
                               "--every", "0.2", "--settle", "3600", "--while-pid", str(trainer.pid)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        write(folder / "checkpoint-7" / "model.bin", b"last words", mtime=time.time())
        time.sleep(0.6)
        assert not any(n.startswith("llama/run-1/checkpoint-7") for n in objects(bucket))  # unsettled
        trainer.kill()
        trainer.wait()
        out, err = syncer.communicate(timeout=30)
    finally:
        trainer.kill()
        syncer.kill()
    assert syncer.returncode == 0 and out == b"", err.decode()  # ended with the trainer
    assert not any(n.startswith("llama/run-1/checkpoint-7") for n in objects(bucket))
    last = subprocess.run([sys.executable, str(SCRIPT), "push", "--dir", str(folder), "--url", URL,
                           "--settle", "0"], env=env, capture_output=True, timeout=60)
    assert last.returncode == 0 and json.loads(last.stdout) == {"pushed": ["checkpoint-7"]}
    assert objects(bucket)["llama/run-1/checkpoint-7/model.bin"] == b"last words"


def test_a_missing_bucket_is_one_line_and_exit_1(tmp_path, gcs_emulator, metadata):
    write(tmp_path / "d" / "checkpoint-1" / "w.bin", b"x")
    env = {**os.environ, "GCE_METADATA_HOST": metadata.host}
    done = subprocess.run([sys.executable, str(SCRIPT), "push", "--dir", str(tmp_path / "d"),
                           "--url", "gs://no-such-bucket/x", "--settle", "0"],
                          env=env, capture_output=True, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("checkpoint sync: ") and "404" in lines[0]


def start_run(tmp_path: Path, vm: str, script: str, env: dict, job_env: dict | None = None) -> Path:
    """The real run helper's `start` (setsid launcher) as `gpuctl run` sends it, syncer included;
    returns the run dir once the run has ended."""
    from gpuctl.runs.service import syncer_source

    base = tmp_path / vm
    request = {"name": "llama", "base": str(base), "argv": [sys.executable, "-c", script],
               "launcher": "setsid", "jobs_dir": str(tmp_path / vm / "jobs"), "env": job_env or {},
               "checkpoints": {"dir": str(base / "checkpoints" / "llama"), "url": URL,
                               "syncer": syncer_source()}}
    helper = Path(sync.__file__).with_name("run_host.py")
    done = subprocess.run([sys.executable, str(helper), "start"], input=json.dumps(request).encode(),
                          env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    run_dir = base / "runs" / "llama"
    deadline = time.monotonic() + 60
    while not (run_dir / "exit_code").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return run_dir


TRAINER = """
import os, sys
d = os.environ["GPUCTL_CHECKPOINT_DIR"]
have = sorted(os.listdir(d))
print("found", have)
if have != [x for x in os.environ.get("EXPECT", "").split(",") if x]:
    sys.exit(3)  # not what the previous host left
step = os.path.join(d, "checkpoint-%d" % (100 * (len(have) + 1)))
os.makedirs(step)
open(os.path.join(step, "model.bin"), "wb").write(b"weights after " + step.encode())
"""


def test_a_replacement_host_resumes_from_what_the_first_one_uploaded(tmp_path, gcs_emulator, metadata, bucket):
    """Host 1 runs, writes checkpoint-100 and exits; its supervisor uploads it before recording
    the exit. Host 2 (a fresh NVMe) starts the same run: checkpoint-100 is fetched before the
    command, which finds it and writes checkpoint-200."""
    env = {**os.environ, "GCE_METADATA_HOST": metadata.host}
    first = start_run(tmp_path, "vm-1", TRAINER, env)
    assert (first / "exit_code").read_text().strip() == "0", (first / "output.log").read_text()
    assert "none yet, starting fresh" in (first / "output.log").read_text()
    assert "llama/run-1/checkpoint-100/" + sync.MARKER in objects(bucket)

    second = start_run(tmp_path, "vm-2", TRAINER, env, {"EXPECT": "checkpoint-100"})
    log = (second / "output.log").read_text()
    assert (second / "exit_code").read_text().strip() == "0", log
    assert "resuming from checkpoint-100" in log and "found ['checkpoint-100']" in log
    got = objects(bucket)
    assert got["llama/run-1/checkpoint-200/model.bin"].endswith(b"checkpoint-200")
    assert got["llama/run-1/checkpoint-100/model.bin"].endswith(b"checkpoint-100")


def test_a_cancelled_run_leaves_its_half_written_checkpoint_out(tmp_path, gcs_emulator, metadata, bucket):
    """Cancel kills the command in the middle of writing checkpoint-200: what it finished long
    ago (checkpoint-100) goes up, the fresh half checkpoint does not."""
    env = {**os.environ, "GCE_METADATA_HOST": metadata.host}
    script = """
import os, time
d = os.environ["GPUCTL_CHECKPOINT_DIR"]
os.makedirs(d + "/checkpoint-100")
open(d + "/checkpoint-100/model.bin", "wb").write(b"complete")
os.utime(d + "/checkpoint-100/model.bin", (time.time() - 3600, time.time() - 3600))
os.makedirs(d + "/checkpoint-200")
open(d + "/checkpoint-200/model.bin", "wb").write(b"half")
open(d + "/writing", "w").close()
time.sleep(60)
"""
    from gpuctl.runs.service import syncer_source

    base = tmp_path / "vm-1"
    request = {"name": "llama", "base": str(base), "argv": [sys.executable, "-c", script],
               "launcher": "setsid", "jobs_dir": str(base / "jobs"),
               "checkpoints": {"dir": str(base / "checkpoints" / "llama"), "url": URL, "syncer": syncer_source()}}
    helper = str(Path(sync.__file__).with_name("run_host.py"))
    assert subprocess.run([sys.executable, helper, "start"], input=json.dumps(request).encode(), env=env,
                          capture_output=True, timeout=60).returncode == 0
    run_dir = base / "runs" / "llama"
    deadline = time.monotonic() + 30
    while not (base / "checkpoints" / "llama" / "writing").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    cancel = subprocess.run([sys.executable, helper, "cancel", "--run-dir", str(run_dir), "--grace", "1"],
                            env=env, capture_output=True, timeout=60)
    assert cancel.returncode == 0, cancel.stderr.decode()
    supervisor = int((run_dir / "supervisor.pid").read_text())
    deadline = time.monotonic() + 30
    while sync.pid_alive(supervisor) and time.monotonic() < deadline:  # its last pass, then gone
        time.sleep(0.1)
    assert not sync.pid_alive(supervisor)
    names = set(objects(bucket))
    assert "llama/run-1/checkpoint-100/" + sync.MARKER in names
    assert not any(n.startswith("llama/run-1/checkpoint-200") for n in names)


def test_a_vm_without_a_service_account_gets_one_line_naming_it(tmp_path, gcs_emulator, bucket):
    write(tmp_path / "d" / "checkpoint-1" / "w.bin", b"x")
    with MetadataStandIn(service_account=False).start() as server:
        env = {**os.environ, "GCE_METADATA_HOST": server.host}
        done = subprocess.run([sys.executable, str(SCRIPT), "push", "--dir", str(tmp_path / "d"),
                               "--url", URL, "--settle", "0"], env=env, capture_output=True, timeout=60)
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and "service account" in lines[0]
    assert objects(bucket) == {}


def test_a_checkpoint_deleted_while_going_up_is_skipped_not_marked(tmp_path, gcs_emulator, metadata, bucket):
    """The Trainer's save_total_limit deletes an old checkpoint while the syncer uploads it: that
    one gets no marker, the syncer carries on with the next, and nothing crashes."""
    folder = tmp_path / "ckpt"
    for step in (100, 200):
        write(folder / f"checkpoint-{step}" / "model.bin", b"w%d" % step, OLD + step)
        write(folder / f"checkpoint-{step}" / "trainer_state.json", b"{}", OLD + step + 1)
    gcs = sync.Gcs(URL)
    upload = gcs.upload

    def upload_then_rotate(rel, path, *metadata):
        upload(rel, path, *metadata)
        if rel == "checkpoint-100/model.bin":
            for item in (folder / "checkpoint-100").iterdir():
                item.unlink()
            (folder / "checkpoint-100").rmdir()

    gcs.upload = upload_then_rotate
    assert sync.push(gcs, str(folder), str(tmp_path / "state.json"), settle_s=30) == ["checkpoint-200"]
    names = set(objects(bucket))
    assert "llama/run-1/checkpoint-200/" + sync.MARKER in names
    assert "llama/run-1/checkpoint-100/" + sync.MARKER not in names
