"""Training runs on real throwaway SSH hosts (a Debian 12 sshd in its own namespaces).

The run is tests/data/fake_train.py: pure Python printing what a Trainer + tqdm + DeepSpeed
run prints. The hosts have no systemd as PID 1, so runs start under the setsid'd supervisor
(the systemd-run command is unit-tested in test_runs_helper.py).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuctl.jobspec import parse_job_spec
from gpuctl.provision.host_scripts import idle_watchdog
from gpuctl.runs import registry, service
from gpuctl.runs.progress import parse_text

FAKE_TRAIN = Path(__file__).parent / "data" / "fake_train.py"
MOUNT = "/mnt/disks/nvme"


def target_text(host) -> str:
    return f"{host.user}@{host.address}:{host.port}"


@pytest.fixture
def project(tmp_path):
    """A small git project like a user's: the training script, a config, an ignored data dir."""
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(FAKE_TRAIN, root / "train.py")
    (root / "configs").mkdir()
    (root / "configs" / "lora.yaml").write_text("r: 32\nalpha: 64\n")
    (root / "README.md").write_text("# proj\n")
    (root / ".gitignore").write_text("data/\n*.ckpt\n")
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(b"\0" * 4096)
    (root / "old.ckpt").write_bytes(b"\0" * 100)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "train.py", "README.md", ".gitignore"], check=True)
    return root


def start(host, project, name, *args, price=1.65, **spec_extra) -> dict:
    spec = parse_job_spec({"name": name, "command": ["python3", "train.py", *args], **spec_extra})
    req = service.RunRequest(target=target_text(host), spec=spec, workdir=project,
                             ssh_key=host.key_path, known_hosts=host.known_hosts_path,
                             price_per_hour=price, price_source="--price-per-hour",
                             grace_seconds=2.0)
    return service.start_run(req)


def wait_state(name: str, states: tuple[str, ...], timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = service.list_runs([name])[0]
        if view["state"] in states or time.monotonic() > deadline:
            return view
        time.sleep(0.2)


def remote_log(host, name: str) -> bytes:
    record = registry.require(name)
    # base64: run_local reads text, whose universal newlines would turn tqdm's \r into \n.
    return base64.b64decode(host.run_local(f"base64 -w0 {record.log_path}").stdout)


def host_pids_of(host, pattern: str) -> list[str]:
    done = host.run_local(f"ps -eo pid,args | grep -F -- {pattern!r} | grep -v grep || true")
    return [line for line in done.stdout.splitlines() if line.strip()]


def test_run_survives_a_cut_connection_and_is_followed_to_the_end(throwaway_host, project):
    host = throwaway_host
    report = start(host, project, "survivor", "--steps", "40", "--sleep", "0.05")
    assert report["state"] in ("running", "starting") and report["launcher"] == "setsid"
    assert report["sync"]["upload"] == 4  # tracked + untracked-not-ignored: not data/ nor *.ckpt
    received, notices = bytearray(), []
    first_bytes = threading.Event()

    def on_data(data: bytes) -> None:
        received.extend(data)
        first_bytes.set()

    result: dict = {}
    follower = threading.Thread(target=lambda: result.update(
        service.follow_log("survivor", on_data, notices.append, poll_s=0.1)))
    follower.start()
    assert first_bytes.wait(10)
    assert host.cut_connections() >= 1  # the follower's session dies mid-run
    follower.join(30)
    assert not follower.is_alive()
    assert result["state"] == "succeeded" and result["exit_code"] == 0
    assert any("reconnecting" in n for n in notices) and any("reconnected" in n for n in notices)
    # Every byte once, in order: the follow resumed where it was cut.
    assert bytes(received) == remote_log(host, "survivor")
    progress = parse_text(bytes(received))
    assert progress.finished and (progress.step, progress.total_steps) == (40, 40)


def test_exit_status_and_progress_figures_from_the_remote_log(throwaway_host, project):
    host = throwaway_host
    start(host, project, "fails", "--steps", "10", "--sleep", "0.01", "--exit-code", "3")
    view = wait_state("fails", ("failed", "succeeded"))
    assert view["state"] == "failed" and view["exit_code"] == 3
    assert (view["step"], view["total_steps"], view["percent"]) == (10, 10, 100.0)
    assert view["loss"] == pytest.approx(8.6182 * 0.8 ** 2, abs=1e-3)
    assert view["eval_loss"] == 0.7646484375 and view["overflows"] == 1
    assert view["price_per_hour_usd"] == 1.65 and view["cost_to_complete_usd"] == 0
    assert view["cost_so_far_usd"] == pytest.approx(view["run_seconds"] / 3600 * 1.65, abs=1e-4)
    # A finished run whose log was read to the end is answered from the cache: no connection.
    assert registry.load_cache("fails").final
    host.run_local(f"rm -rf {registry.require('fails').run_dir}")
    assert service.list_runs(["fails"])[0]["state"] == "failed"


def test_running_figures_while_the_run_goes(throwaway_host, project):
    host = throwaway_host
    start(host, project, "midway", "--steps", "400", "--sleep", "0.02")
    time.sleep(1.0)
    view = service.list_runs(["midway"])[0]
    assert view["state"] == "running"
    assert 0 < view["step"] < 400 and view["total_steps"] == 400
    assert view["eta_seconds"] > 0 and view["cost_to_complete_usd"] > 0
    second = service.list_runs(["midway"])[0]
    assert second["step"] >= view["step"]  # read incrementally from the cached offset
    cancelled = service.cancel_run("midway", grace_seconds=5)
    assert cancelled["state"] == "cancelled"


def test_cancel_stops_cleanly_then_kills_a_run_that_ignores_sigterm(throwaway_host, project):
    host = throwaway_host
    start(host, project, "polite", "--steps", "1000", "--sleep", "0.05")
    start(host, project, "stubborn", "--steps", "1000", "--sleep", "0.05", "--ignore-sigterm")
    wait_state("polite", ("running",))
    wait_state("stubborn", ("running",))
    polite = service.cancel_run("polite", grace_seconds=5)
    assert polite["state"] == "cancelled" and not polite["killed"]
    assert polite["exit_code"] == 143  # its handler saved and exited on SIGTERM
    assert b"received SIGTERM" in remote_log(host, "polite")
    started = time.monotonic()
    stubborn = service.cancel_run("stubborn", grace_seconds=1)
    assert stubborn["state"] == "cancelled" and stubborn["killed"]
    assert stubborn["exit_code"] == 137 and time.monotonic() - started < 8
    assert host_pids_of(host, "train.py") == []
    again = service.cancel_run("stubborn", grace_seconds=1)
    assert again["already_ended"]


def test_idle_watchdog_counts_the_run_busy_while_it_lives(throwaway_host, project):
    host = throwaway_host
    watchdog = host.root / "tmp" / "idle_watchdog.py"
    watchdog.write_text(Path(idle_watchdog.__file__).read_text())
    config = host.root / "tmp" / "wd.json"
    config.write_text(json.dumps({"idle_minutes": 30, "log_file": "/tmp/wd.log",
                                  "state_dir": "/tmp/wd-state", "nvidia_smi": "/nonexistent"}))
    count = ("python3 -c 'import sys; sys.path.insert(0, \"/tmp\"); import idle_watchdog as w; "
             "print(w.count_active_jobs(\"/var/lib/gpuctl/jobs\", w.boot_time()))'")
    start(host, project, "busy", "--steps", "1000", "--sleep", "0.05")
    wait_state("busy", ("running",))
    assert host.run_local(count).stdout.strip() == "1"
    host.run_local("python3 /tmp/idle_watchdog.py --config /tmp/wd.json --dry-run")
    assert "busy" in host.run_local("tail -n 1 /tmp/wd.log").stdout
    assert "jobs=1" in host.run_local("tail -n 1 /tmp/wd.log").stdout
    service.cancel_run("busy", grace_seconds=3)
    assert host.run_local(count).stdout.strip() == "0"
    assert host.run_local("ls /var/lib/gpuctl/jobs").stdout.strip() == ""


def test_second_run_sends_only_what_changed_and_leaves_the_first_runs_code_alone(
        throwaway_host, project):
    host = throwaway_host
    first = start(host, project, "v1", "--steps", "2", "--sleep", "0.01")
    assert first["sync"]["source"] == "git"
    assert first["sync"]["upload"] == 4 and first["sync"]["delete"] == 0
    code_dir = first["sync"]["code_dir"]
    files = host.run_local(f"cd {code_dir} && find . -type f | sort").stdout.split()
    assert files == ["./.gitignore", "./README.md", "./configs/lora.yaml", "./train.py"]
    wait_state("v1", ("succeeded",))

    (project / "README.md").write_text("# proj, edited\n")
    (project / "configs" / "lora.yaml").unlink()
    second = start(host, project, "v2", "--steps", "2", "--sleep", "0.01")
    assert second["sync"]["upload"] == 1 and second["sync"]["delete"] == 1
    assert second["sync"]["unchanged"] == 2
    third = start(host, project, "v3", "--steps", "2", "--sleep", "0.01")
    assert third["sync"]["upload"] == 0 and third["sync"]["delete"] == 0
    assert third["round_trips"] == 2  # hello and start: nothing to send
    v1_dir = registry.require("v1").cwd
    assert host.run_local(f"cat {v1_dir}/README.md").stdout == "# proj\n"
    assert host.run_local(f"test -e {v1_dir}/configs/lora.yaml", check=False).returncode == 0
    assert host.run_local(f"cat {registry.require('v3').cwd}/README.md").stdout == "# proj, edited\n"


def test_secrets_travel_on_stdin_only(throwaway_host, project, monkeypatch):
    host = throwaway_host
    secret = "hf_s3cr3t_value_0123456789"
    monkeypatch.setenv("MY_HF_TOKEN", secret)
    start(host, project, "secretive", "--steps", "200", "--sleep", "0.02", "--print-env", "HF_TOKEN",
          secrets={"HF_TOKEN": "env:MY_HF_TOKEN"}, env={"WANDB_MODE": "offline"})
    wait_state("secretive", ("running",))
    run_dir = registry.require("secretive").run_dir
    ps = host.run_local("ps -eo args").stdout
    assert secret not in ps
    assert host.run_local(f"test -e {run_dir}/secrets.json", check=False).returncode != 0
    assert secret not in host.run_local(f"cat {run_dir}/run.json").stdout
    service.cancel_run("secretive", grace_seconds=3)
    log = remote_log(host, "secretive").decode()
    assert f"env HF_TOKEN: set, {len(secret)} chars" in log and secret not in log
    assert secret not in json.dumps(registry.require("secretive").as_dict())


def test_fetch_outputs_then_only_what_changed(throwaway_host, project, tmp_path):
    host = throwaway_host
    start(host, project, "outputs", "--steps", "3", "--sleep", "0.01", "--output_dir", "out")
    wait_state("outputs", ("succeeded",))
    dest = tmp_path / "fetched"
    first = service.fetch("outputs", "out", dest)
    assert first["files"] == 2 and (dest / "out" / "adapter_model.bin").stat().st_size == 1024
    assert json.loads((dest / "out" / "trainer_state.json").read_text()) == {"global_step": 3}
    again = service.fetch("outputs", "out", dest)
    assert again["files"] == 0 and again["unchanged"] == 2
    with pytest.raises(service.RunError, match="does not exist"):
        service.fetch("outputs", "nope", dest)


def test_timeout_stops_the_run(throwaway_host, project):
    start(throwaway_host, project, "slow", "--steps", "1000", "--sleep", "0.05", timeout="2s")
    view = wait_state("slow", ("timed-out", "succeeded", "failed", "lost"), timeout=20)
    assert view["state"] == "timed-out" and view["exit_code"] == 143


def test_nvme_mount_holds_the_run_and_a_boot_disk_output_dir_is_warned(throwaway_host, project):
    from gpuctl.adapters.ssh import RemoteHost, SshTarget
    from gpuctl.provision.nvme import NvmeStep
    from gpuctl.provision.runner import run_steps
    from gpuctl.provision.settings import ProvisionSettings

    host = throwaway_host
    no_nvme = start(host, project, "on-boot", "--steps", "1", "--sleep", "0")
    assert not no_nvme["base_on_nvme"] and "no NVMe is mounted" in no_nvme["warnings"][0]
    tgt = SshTarget(host.address, host.user, host.port, host.key_path, host.known_hosts_path)
    with RemoteHost(tgt) as remote:
        assert run_steps(remote, ProvisionSettings(login_user=host.user), [NvmeStep()]).ok
    report = start(host, project, "on-nvme", "--steps", "1", "--sleep", "0",
                   "--output_dir", "/home/gpuctl/checkpoints")
    assert report["base_on_nvme"] and report["run_dir"].startswith(f"{MOUNT}/gpuctl/runs/")
    assert report["warnings"] == [
        "output dir /home/gpuctl/checkpoints is on the boot disk, not the NVMe: checkpoints "
        f"(126 GB each for a 7.5B model) fill it; write under {MOUNT}"]
    fine = start(host, project, "nvme-out", "--steps", "1", "--sleep", "0",
                 "--output_dir", f"{MOUNT}/out")
    assert fine["warnings"] == []


def test_cli_run_jobs_logs_plot_on_a_host(throwaway_host, project, tmp_path, monkeypatch):
    from gpuctl.cli.main import cli

    host = throwaway_host
    monkeypatch.chdir(project)
    base = [target_text(host), "--ssh-key", str(host.key_path), "--known-hosts",
            str(host.known_hosts_path)]
    runner = CliRunner()
    started = runner.invoke(cli, ["run", *base, "--name", "cli-run", "--price-per-hour", "1.65",
                                  "--env", "WANDB_MODE=offline", "-f", "--",
                                  "python3", "train.py", "--steps", "12", "--sleep", "0.01"])
    assert started.exit_code == 0, started.output
    assert "started cli-run on" in started.stdout and "{'train_runtime'" in started.stdout
    assert "cli-run: succeeded (exit 0)" in started.stderr
    listed = runner.invoke(cli, ["jobs", "--json"])
    assert listed.exit_code == 0, listed.output
    view = json.loads(listed.stdout)[0]
    for key in ("step", "total_steps", "loss", "eval_loss", "eta_seconds", "cost_to_complete_usd"):
        assert key in view
    assert view["state"] == "succeeded" and view["step"] == 12
    table = runner.invoke(cli, ["jobs"])
    assert "cli-run" in table.stdout and "12/12" in table.stdout
    shown = runner.invoke(cli, ["logs", "cli-run", "--tail", "2"])
    assert shown.exit_code == 0 and "train_runtime" in shown.stdout
    png = tmp_path / "loss.png"
    plotted = runner.invoke(cli, ["plot", "cli-run", "-o", str(png)])
    assert plotted.exit_code == 0, plotted.output
    assert png.read_bytes().startswith(b"\x89PNG") and "train loss" in plotted.stdout
    failing = runner.invoke(cli, ["run", *base, "--name", "cli-fail", "-f", "--",
                                  "python3", "train.py", "--steps", "2", "--sleep", "0", "--exit-code", "5"])
    assert failing.exit_code == 5
    dry = runner.invoke(cli, ["run", *base, "--dry-run", "--json", "--", "python3", "train.py"])
    assert dry.exit_code == 0 and json.loads(dry.stdout)["sync"]["upload"] == 0
    unknown = runner.invoke(cli, ["logs", "no-such-run"])
    assert unknown.exit_code == 1 and unknown.stderr.startswith("error: gpuctl knows no run")



def test_remote_host_put_get_and_exec_stream(throwaway_host):
    from gpuctl import hosts

    host = throwaway_host
    remote, reached = hosts.connect(target_text(host), host.key_path, host.known_hosts_path)
    with remote:
        assert reached.vm is None and reached.target.port == host.port
        data = bytes(range(256)) * 100 + b"\r\n"
        remote.put(data, "/tmp/gpuctl-put/blob.bin", mode=0o600)
        assert remote.get("/tmp/gpuctl-put/blob.bin") == data
        seen = bytearray()
        done = remote.exec_stream("cat; echo err >&2; exit 3", stdin=b"abc", on_stdout=seen.extend)
        assert (done.exit_code, bytes(seen), done.stderr) == (3, b"abc", b"err\n")
        import pytest as _pytest

        from gpuctl.adapters.ssh import CommandFailed

        with _pytest.raises(CommandFailed):
            remote.get("/tmp/gpuctl-put/missing")


def test_a_command_that_exits_before_reading_its_stdin_reports_its_exit_not_a_drop(
        throwaway_host):
    # The run helper's first call on a fresh host exits 97 at once ("not installed") while
    # gpuctl still sends its JSON; the command can win that race. 8 MiB outlasts any window,
    # so here it always does: the write fails on a closed channel of a live connection.
    from gpuctl import hosts

    host = throwaway_host
    remote, _ = hosts.connect(target_text(host), host.key_path, host.known_hosts_path)
    with remote:
        big = b"x" * (8 << 20)
        done = remote.exec_stream("echo early >&2; exit 97", stdin=big)
        assert (done.exit_code, done.stderr) == (97, b"early\n")

        def stream(sink):
            for _ in range(64):
                sink.write(b"y" * (1 << 20))

        done = remote.exec_stream("exit 5", writer=stream)
        assert done.exit_code == 5
        assert remote.exec_stream("echo still-connected").stdout == b"still-connected\n"
