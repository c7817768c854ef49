"""Runs, off-host: the host helper's pure parts and its apply/status run locally as the host
would run them, code sync planning, price and guard lookup, naming and warnings, the framed
stream decoder, and the offline CLI commands (progress, plot, argument errors)."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuctl.jobspec import JobSpecError, parse_job_spec
from gpuctl.runs import pricing, service
from gpuctl.runs.estimate import Guard
from gpuctl.runs.host_scripts import run_host
from gpuctl.runs.remote import Frames, helper_path
from gpuctl.runs.sync import SYNC_META, LocalTree, SyncError, plan_sync, scan, walk_files, write_tar

HELPER = Path(run_host.__file__)
LOGS = Path(__file__).parent / "data" / "logs"


# --- the host helper ----------------------------------------------------------------------------

def test_launcher_is_systemd_run_only_with_systemd_as_pid1_and_root_or_sudo():
    assert run_host.choose_launcher(True, True) == "systemd"
    assert run_host.choose_launcher(True, False) == "setsid"
    assert run_host.choose_launcher(False, True) == "setsid"


def test_systemd_run_command():
    argv = run_host.systemd_run_argv("llama-lora", 1000, 1000, "/usr/bin/python3",
                                     "/home/u/.cache/gpuctl/run_host-abc.py",
                                     "/mnt/disks/nvme/gpuctl/runs/llama-lora", 30, as_root=False)
    assert argv == [
        "sudo", "-n", "systemd-run", "--unit=gpuctl-run-llama-lora", "--uid=1000", "--gid=1000",
        "--collect", "--quiet", "--property=KillMode=mixed", "--property=TimeoutStopSec=40",
        "--working-directory=/mnt/disks/nvme/gpuctl/runs/llama-lora", "--", "/usr/bin/python3",
        "/home/u/.cache/gpuctl/run_host-abc.py", "supervise", "--run-dir",
        "/mnt/disks/nvme/gpuctl/runs/llama-lora"]
    assert run_host.systemd_run_argv("a", 0, 0, "p", "s", "/d", 5, as_root=True)[0] == "systemd-run"


@pytest.mark.parametrize("name, ok", [
    ("train.py", True), ("a/b/c.txt", True), ("/etc/passwd", False), ("../x", False),
    ("a/../../x", False), ("a//b", False), ("./a", False), ("", False), ("a\\b", False),
])
def test_safe_rel(name, ok):
    assert (run_host.safe_rel(name) is not None) == ok


def test_run_env_is_login_like_with_venv_caches_and_secrets(tmp_path, monkeypatch):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    caches = tmp_path / "caches.sh"
    caches.write_text("export HF_HOME=/mnt/disks/nvme/cache/huggingface\n# comment\nexport X='y'\n")
    monkeypatch.setattr(run_host, "CACHES_FILE", str(caches))
    env = run_host.build_env({"name": "r", "venv": str(venv), "env": {"WANDB_MODE": "offline"}},
                             {"HF_TOKEN": "t0k"}, base_env={"HOME": "/home/u", "SSH_CONNECTION": "x",
                                                            "PATH": "/weird"})
    assert env["PATH"].startswith(f"{venv}/bin:") and "/weird" not in env["PATH"]
    assert env["HF_HOME"] == "/mnt/disks/nvme/cache/huggingface" and env["X"] == "y"
    assert env["PYTHONUNBUFFERED"] == "1" and env["GPUCTL_RUN"] == "r"
    assert env["HF_TOKEN"] == "t0k" and env["WANDB_MODE"] == "offline"
    assert "SSH_CONNECTION" not in env


def test_exit_status_and_tail_offset(tmp_path):
    assert run_host.exit_status(-15) == 143 and run_host.exit_status(3) == 3
    (tmp_path / "output.log").write_bytes(b"one\ntwo\nthree\n")
    assert run_host.tail_offset(str(tmp_path), 2) == 4
    assert run_host.tail_offset(str(tmp_path), 10) == 0


def test_run_state_from_files(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"started_at": time.time() - 100}))
    assert run_host.run_state(str(tmp_path), None)["state"] == "lost"
    (tmp_path / "pid").write_text(f"{os.getpid()}\n")
    assert run_host.run_state(str(tmp_path), None)["state"] == "running"
    (tmp_path / "exit_code").write_text("0\n")
    assert run_host.run_state(str(tmp_path), None)["state"] == "succeeded"
    (tmp_path / "exit_code").write_text("137\n")
    (tmp_path / "cancelled").write_text("1\n")
    state = run_host.run_state(str(tmp_path), None)
    assert state["state"] == "cancelled" and state["exit_code"] == 137


def helper(*args, stdin: bytes = b"", cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HELPER), *args], input=stdin, capture_output=True,
                          cwd=cwd, timeout=60)


def tree_of(root: Path, files: dict[str, bytes]) -> LocalTree:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return scan(root)


def test_apply_writes_changes_atomically_and_deletes(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    tree = tree_of(src, {"train.py": b"print(1)\n", "cfg/a.yaml": b"a: 1\n", "old.txt": b"x"})
    sink = io.BytesIO()
    write_tar(sink, tree, plan_sync(tree, {}))
    done = helper("apply", "--dir", str(dest), stdin=sink.getvalue())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"written": 3, "deleted": 0, "bytes": 15}
    linked = tmp_path / "snapshot-of-train.py"
    os.link(dest / "train.py", linked)  # a run's hard-linked snapshot
    (src / "train.py").write_bytes(b"print(2)\n")
    (src / "old.txt").unlink()
    tree = scan(src)
    manifest = json.loads(helper("hello", stdin=json.dumps(
        {"mount": str(tmp_path / "no-nvme"), "code_key": None}).encode()).stdout)
    assert manifest["nvme_mounted"] is False
    remote = {rel: [size, sha] for rel, (size, _, sha) in
              json.loads((tmp_path / "dest.manifest.json").read_text()).items()}
    plan = plan_sync(tree, remote)
    assert (plan.upload, plan.delete, plan.unchanged) == (["train.py"], ["old.txt"], 1)
    sink = io.BytesIO()
    write_tar(sink, tree, plan)
    assert helper("apply", "--dir", str(dest), stdin=sink.getvalue()).returncode == 0
    assert (dest / "train.py").read_bytes() == b"print(2)\n"
    assert linked.read_bytes() == b"print(1)\n"  # the snapshot kept the old inode
    assert not (dest / "old.txt").exists() and (dest / "cfg" / "a.yaml").exists()


@pytest.mark.parametrize("evil", ["../escape.txt", "/tmp/abs.txt", "a/../../b.txt"])
def test_apply_refuses_paths_outside_the_code_dir(tmp_path, evil):
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w|") as tar:
        info = tarfile.TarInfo(evil)
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    done = helper("apply", "--dir", str(tmp_path / "dest"), stdin=raw.getvalue())
    assert done.returncode != 0 and "refusing tar member" in done.stderr.decode()
    assert not (tmp_path / "escape.txt").exists()


def test_status_frames_carry_state_and_log_bytes(tmp_path):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"started_at": time.time() - 5}))
    (run / "output.log").write_bytes(b"abc\r\ndef")
    (run / "exit_code").write_text("3\n")
    done = helper("status", stdin=json.dumps({"runs": [{"dir": str(run), "offset": 2},
                                                        {"dir": str(tmp_path / "gone")}]}).encode())
    frames = Frames().feed(done.stdout)
    assert [f[0] for f in frames] == [b"S", b"S", b"E"]
    assert frames[0][1]["state"] == "failed" and frames[0][2] == b"c\r\ndef"
    assert frames[1][1]["state"] == "missing"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=50), max_size=5), st.integers(1, 17))
def test_frames_decode_under_any_chunking(payloads, chunk):
    stream = b"".join(b"D " + json.dumps({"len": len(p)}).encode() + b"\n" + p for p in payloads)
    stream += b"H\nE {\"state\": \"succeeded\"}\n"
    decoder, got = Frames(), []
    for i in range(0, len(stream), chunk):
        got += decoder.feed(stream[i:i + chunk])
    assert b"".join(d for k, _, d in got if k == b"D") == b"".join(payloads)
    assert got[-1][0] == b"E" and got[-1][1]["state"] == "succeeded"


def test_helper_path_changes_with_its_content():
    assert helper_path().startswith("$HOME/.cache/gpuctl/run_host-") and helper_path().endswith(".py")


# --- sync -----------------------------------------------------------------------------------

def test_walk_honours_builtin_ignores_and_a_simple_gitignore(tmp_path):
    tree_of(tmp_path, {"train.py": b"", "data/x.bin": b"", "runs/a/b.log": b"", "src/m.py": b"",
                       "src/__pycache__/m.pyc": b"", ".venv/bin/python": b"", "w.ckpt": b"",
                       "docs/keep.md": b"", ".gitignore": b"data/\n*.ckpt\nruns/a\n!keep\n"})
    assert walk_files(tmp_path) == [".gitignore", "docs/keep.md", "src/m.py", "train.py"]


def test_sync_refuses_a_huge_upload_with_a_hint(tmp_path, monkeypatch):
    from gpuctl.runs import sync

    tree = tree_of(tmp_path, {"model.safetensors": b"\0" * 2048, "t.py": b""})
    monkeypatch.setattr(sync, "MAX_SYNC_BYTES", 1024)
    with pytest.raises(SyncError, match="model.safetensors") as err:
        plan_sync(tree, {})
    assert ".gitignore" in err.value.hint
    assert SYNC_META.startswith(".gpuctl")


# --- names, warnings, secrets ---------------------------------------------------------------

def test_default_and_unique_run_names():
    now = dt.datetime(2026, 11, 23, 3, 0)
    assert service.default_run_name(["python", "train_lora.py", "--x"], now) == "train-lora-1123-0300"
    assert service.default_run_name(["./1run.sh"], now) == "run-1run-1123-0300"
    assert service.pick_name("llama", {"llama", "llama-2"}) == "llama-3"
    assert service.pick_name("llama", set()) == "llama"


def test_output_dirs_from_spec_and_flags():
    spec = parse_job_spec({"name": "a", "output_dir": "/mnt/disks/nvme/o", "command":
                           ["python", "t.py", "--output_dir", "out", "--save-dir=/x", "--output-dir"]})
    assert service.output_dirs(spec) == ["/mnt/disks/nvme/o", "out", "/x"]
    shell = parse_job_spec({"name": "a", "command": "python t.py --output_dir 'my out'"})
    assert service.output_dirs(shell) == ["my out"]


def test_secrets_from_env_and_file(tmp_path):
    token = tmp_path / "hf"
    token.write_text("hf_abc\n")
    spec = parse_job_spec({"name": "a", "command": "x",
                           "secrets": {"HF_TOKEN": f"file:{token}", "W": "env:WANDB_KEY"}})
    assert service.resolve_secrets(spec, {"WANDB_KEY": "w"}) == {"HF_TOKEN": "hf_abc", "W": "w"}
    with pytest.raises(JobSpecError, match="not set here"):
        service.resolve_secrets(spec, {})


def test_disk_and_guard_warnings_before_a_run():
    spec = parse_job_spec({"name": "a", "command": ["python", "t.py", "--output_dir", "/home/u/out"],
                           "timeout": "12h"})
    facts = {"base_on_nvme": True, "mount": "/mnt/disks/nvme", "base": "/mnt/disks/nvme/gpuctl",
             "paths": {"/home/u/out": "boot"}, "base_disk": "nvme"}
    assert "is on the boot disk" in service.disk_warnings(facts, spec, "vm")[0]
    econ = pricing.Economics(1.65, "VM record", [Guard("run limit", 6 * 3600, "deletes the VM",
                                                       "`gpuctl extend a100 --hours {hours}`")])
    warnings, notes = service.guard_notes(econ, spec)
    assert warnings == ["the run may take up to ~12 h (timeout) but the run limit deletes the VM "
                        "in ~6 h: `gpuctl extend a100 --hours 7`"]
    no_timeout = parse_job_spec({"name": "a", "command": "x"})
    assert service.guard_notes(econ, no_timeout)[1][0].startswith("the VM's run limit ends it in ~6 h")


# --- prices and guards ----------------------------------------------------------------------

def test_shutdown_cron_guard_from_host_clock():
    cron = "# gpuctl\nSHELL=/bin/sh\n0 6 * * * root /sbin/shutdown -h now\n"
    guard = pricing.shutdown_cron_guard(cron, 3 * 3600, "u@h")
    assert guard.seconds_left == 3 * 3600 and guard.kind == "daily shutdown"
    assert pricing.shutdown_cron_guard(cron, 7 * 3600, "u@h").seconds_left == 23 * 3600
    assert pricing.shutdown_cron_guard("garbage", 0, "u@h") is None
    assert pricing.shutdown_cron_guard(None, 0, "u@h") is None


def test_vm_economics_from_the_vm_record():
    from gpuctl.lifecycle import records

    now = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.timezone.utc)
    records.save(records.VmRecord(
        name="a100", profile="a100-spot", project="p", state="ready", stack="s",
        zones_to_try=["us-central1-a"], created_at=now.isoformat(), hourly_usd=1.65,
        stopped_hourly_usd=0.02, termination_action="DELETE", max_run_seconds=8 * 3600,
        running_since=(now - dt.timedelta(hours=2)).isoformat(),
        daily_stop={"cron": "0 6 * * *", "time_zone": "Asia/Tokyo", "clock": "06:00"}))
    econ = pricing.vm_economics("a100", now)
    assert econ.price_per_hour == 1.65
    kinds = {g.kind: g.seconds_left for g in econ.guards}
    assert kinds["run limit"] == 6 * 3600
    assert kinds["daily stop"] == 18 * 3600  # 12:00 in Tokyo now
    assert pricing.vm_economics("unknown-vm", now) == pricing.Economics()


# --- CLI, offline -----------------------------------------------------------------------------

def invoke(*args, input=None):
    from gpuctl.cli.main import cli

    return CliRunner().invoke(cli, list(args), input=input)


def test_cli_progress_json_from_a_file_and_stdin():
    result = invoke("progress", str(LOGS / "users_md_snippet.log"), "--json",
                    "--price-per-hour", "1.65", "--time-left", "6h")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {k: data[k] for k in ("step", "total_steps", "loss", "eval_loss")} == {
        "step": 200, "total_steps": 2515, "loss": 8.6182, "eval_loss": 0.7646484375}
    assert data["eta_seconds"] == 32494 and data["cost_to_complete_usd"] == pytest.approx(14.8931)
    assert data["warnings"][0].startswith("needs ~9 h, the VM is capped at ~6 h")
    piped = invoke("progress", "-", input=(LOGS / "trainer_a100_lora.log").read_bytes())
    assert piped.exit_code == 0 and "230/2515" in piped.stdout and "ETA" in piped.stdout


def test_cli_progress_price_from_a_profile_and_bad_price():
    result = invoke("progress", str(LOGS / "users_md_snippet.log"), "--json", "--profile", "t4-spot")
    assert result.exit_code == 0 and 0.2 < json.loads(result.stdout)["price_per_hour_usd"] < 1
    both = invoke("progress", str(LOGS / "users_md_snippet.log"), "--profile", "t4-spot",
                  "--price-per-hour", "1")
    assert both.exit_code == 2 and both.stderr.startswith("error: give --price-per-hour or --profile")


def test_cli_plot_a_log_file(tmp_path):
    out = tmp_path / "loss.png"
    result = invoke("plot", str(LOGS / "deepspeed_zero2_finished.log"), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "train loss" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "a100"], "nothing to run"),
    (["run", "a100", "missing.yaml"], "job file missing.yaml not found"),
    (["run", "a100", "--env", "NOEQUALS", "--", "python", "t.py"], "is not KEY=VALUE"),
    (["run", "a100", "--name", "Bad Name", "--", "python"], "must be 1-40 lowercase"),
    (["run", "a100", "--secret", "T=plaintext", "--", "python"], "not a secret reference"),
    (["logs", "nope"], "gpuctl knows no run named nope"),
])
def test_cli_run_argument_errors_are_one_line(args, message):
    result = invoke(*args)
    assert result.exit_code != 0
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1


def test_cli_run_refuses_a_gke_only_job_on_a_vm(tmp_path, monkeypatch):
    job = tmp_path / "job.yaml"
    job.write_text("name: big\ncommand: [torchrun, t.py]\nnodes: 4\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "gpuctl@10.0.0.5", str(job))
    assert result.exit_code == 2 and "needs a cluster" in result.stderr


def test_runs_cli_module_imports_no_ssh_library():
    code = ("import sys, gpuctl.cli.runs_cmd, gpuctl.runs.progress, gpuctl.runs.estimate, "
            "gpuctl.runs.plot; bad = [m for m in ('fabric', 'paramiko', 'matplotlib', 'pulumi') "
            "if m in sys.modules]; print(bad)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_jobs_on_a_deleted_vm_answers_from_the_cache_without_connecting():
    from gpuctl.runs import registry

    registry.save(registry.RunRecord(
        name="old", target="a100", host="10.9.9.9", user="gpuctl", port=22,
        run_dir="/mnt/disks/nvme/gpuctl/runs/old", started_at="2026-11-23T03:00:00+00:00",
        command="python t.py", launcher="systemd", vm="a100", price_per_hour=1.65))
    parser = __import__("gpuctl.runs.progress", fromlist=["ProgressParser"]).ProgressParser()
    parser.feed((LOGS / "trainer_a100_lora.log").read_bytes())
    registry.save_cache("old", registry.RunCache(offset=10, parser=parser.state_dict(),
                                                 status={"state": "running", "log_size": 99999}))
    started = time.monotonic()
    view = service.list_runs()[0]
    assert time.monotonic() - started < 2
    assert view["state"] == "unreachable" and view["last_state"] == "running"
    assert "no longer exists" in view["error"] and view["step"] == 230


def test_progress_at_a_terminal_with_no_log_says_how_instead_of_waiting():
    import os
    import pty
    import subprocess
    import sys
    from pathlib import Path

    gpuctl = Path(sys.executable).parent / "gpuctl"
    leader, follower = pty.openpty()  # stdin is a terminal, as when a user types the command
    try:
        done = subprocess.run([str(gpuctl), "progress"], stdin=follower, capture_output=True,
                              text=True, timeout=30)
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode != 0
    assert done.stderr.startswith("error: no log given") and "gpuctl progress train.log" in done.stderr


def test_plot_of_a_log_with_no_loss_exits_non_zero_and_writes_nothing(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from gpuctl.cli.main import cli

    log = tmp_path / "setup.log"
    log.write_text("Downloading model...\nLoading checkpoint shards: 100%|##########| 2/2\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["plot", str(log)])
    assert result.exit_code != 0 and "no loss logged yet" in result.stderr
    assert not list(tmp_path.glob("*.png"))
