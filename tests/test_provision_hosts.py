"""Provisioning on real throwaway hosts: a Debian 12 sshd in its own netns, loop-device NVMe."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from click.testing import CliRunner

from gpuctl.adapters.ssh import RemoteHost, SshError, SshTarget
from gpuctl.provision.gpu_steps import CudaStep, DriverStep, VerifyStep
from gpuctl.provision.runner import default_steps, run_steps
from gpuctl.provision.service import provision_host
from gpuctl.provision.settings import ProvisionSettings
from tests.hosts.fixtures import stock_host, venv_debs  # noqa: F401

from tests.hosts.provisioning import MOUNT, settings, target  # noqa: E402


def statuses(report) -> dict[str, str]:
    return {s.id: s.status for s in report.steps}


def inside(host, command: str) -> str:
    return host.run_local(command).stdout


def test_full_provision_then_a_rerun_changes_nothing(stock_host):
    host = stock_host
    first = provision_host(target(host), settings(host))
    assert first.ok, first.as_dict()
    assert statuses(first) == {
        "nvme": "changed", "caches": "changed", "timezone": "changed", "shutdown-cron": "changed",
        "idle-watchdog": "changed", "nvidia-driver": "skipped", "cuda": "skipped",
        "python": "changed", "verify": "skipped"}
    # NVMe: ext4 with our label, mounted, one fstab line by the UUID read after mkfs.
    disk = host.disks[0]
    uuid = inside(host, f"blkid -s UUID -o value {disk}").strip()
    assert uuid
    fstab = [line for line in inside(host, "cat /etc/fstab").splitlines() if MOUNT in line]
    assert fstab == [f"UUID={uuid} {MOUNT} ext4 discard,defaults,nofail 0 2"]
    assert inside(host, f"findmnt -n -o SOURCE {MOUNT}").strip() == disk
    assert inside(host, f"stat -c %U {MOUNT}").strip() == host.user
    assert "HF_HOME=/mnt/disks/nvme/cache/huggingface" in inside(host, "cat /etc/profile.d/gpuctl-caches.sh")
    assert inside(host, "readlink /etc/localtime").strip().endswith("Asia/Tokyo")
    assert "0 6 * * * root /sbin/shutdown -h now" in inside(host, "cat /etc/cron.d/gpuctl-shutdown")
    assert "gpuctl-idle-watchdog" in inside(host, "cat /etc/cron.d/gpuctl-idle-watchdog")
    assert "Python 3.11" in inside(host, f"/home/{host.user}/venv/bin/python --version")
    # The stock image had no python3.11-venv: the step installed it, and pip works for the user.
    assert "pip " in inside(host, f"su {host.user} -c '/home/{host.user}/venv/bin/pip --version'")
    reasons = {s.id: s.reason for s in first.steps}
    assert reasons["nvidia-driver"] == "no NVIDIA GPU on this host"

    second = provision_host(target(host), settings(host))
    assert second.changed == 0, second.as_dict()
    assert {s for s in statuses(second).values()} == {"unchanged", "skipped"}
    assert second.round_trips == 1  # every step's check answered by one batched command


def test_gpu_steps_in_check_mode_show_the_install_and_change_nothing(throwaway_host):
    host = throwaway_host
    steps = [DriverStep(check_only_without_gpu=False), CudaStep(check_only_without_gpu=False),
             VerifyStep()]
    with RemoteHost(target(host)) as remote:
        report = run_steps(remote, settings(host, cuda="12.4"), steps, check=True)
    by_id = {s.id: s for s in report.steps}
    assert by_id["nvidia-driver"].status == "changed"
    assert any("cuda-drivers-535" in a for a in by_id["nvidia-driver"].actions)  # Debian 12: NVIDIA repo
    assert any("cuda-toolkit-12-4" in a for a in by_id["cuda"].actions)
    assert by_id["verify"].status == "skipped"
    assert host.run_local("test -e /etc/apt/sources.list.d/cuda-debian12-x86_64.list",
                          check=False).returncode != 0
    assert host.run_local("dpkg -s cuda-keyring", check=False).returncode != 0


def test_cuda_11_8_on_debian_12_is_refused_with_a_reason(throwaway_host):
    with RemoteHost(target(throwaway_host)) as remote:
        report = run_steps(remote, settings(throwaway_host), [CudaStep(check_only_without_gpu=False)],
                           check=True)
    assert report.steps[0].status == "skipped"
    assert "not packaged for Debian" in report.steps[0].reason


def test_check_mode_changes_nothing(throwaway_host):
    host = throwaway_host
    report = provision_host(target(host), settings(host), check=True)
    assert report.changed >= 5
    assert host.run_local(f"mountpoint -q {MOUNT}", check=False).returncode != 0
    assert host.run_local("test -e /etc/cron.d/gpuctl-shutdown", check=False).returncode != 0


class CuttingHost(RemoteHost):
    """Drops the SSH connection right after a chosen command, as a flaky network would.

    The sessions really die on the host; the client then reports the drop itself, because
    Fabric may reconnect silently if it notices the EOF before the next command, and this
    test is about the run that stops half-way.
    """

    def __init__(self, target: SshTarget, test_host, after: str):
        super().__init__(target)
        self.test_host, self.after, self.cut = test_host, after, False

    def run(self, command: str, **kwargs):
        result = super().run(command, **kwargs)
        if not self.cut and self.after in command:
            self.cut = True
            assert self.test_host.cut_connections() >= 1
            raise SshError(f"the connection dropped after `{command}`")
        return result


@pytest.mark.parametrize("cut_after", ["mkfs.ext4", "gpuctl-shutdown.gpuctl-tmp"])
def test_connection_cut_mid_run_then_rerun_completes_without_duplicates(stock_host, cut_after):
    host = stock_host
    with CuttingHost(target(host), host, cut_after) as flaky:
        with pytest.raises(SshError):
            run_steps(flaky, settings(host), default_steps())
    assert flaky.cut
    report = provision_host(target(host), settings(host))
    assert report.ok, report.as_dict()
    fstab = inside(host, "cat /etc/fstab")
    assert fstab.count(MOUNT) == 1
    assert inside(host, "cat /etc/cron.d/gpuctl-shutdown").count("shutdown -h now") == 1
    assert inside(host, f"findmnt -n -o SOURCE {MOUNT}").strip() == host.disks[0]
    again = provision_host(target(host), settings(host))
    assert again.changed == 0


def test_a_disk_that_holds_data_is_left_alone(stock_host):
    host = stock_host
    disk = host.disks[0]
    host.run_local(f"mkfs.ext4 -q -F -L precious {disk}")
    before = inside(host, f"blkid -s UUID -o value {disk}").strip()
    report = provision_host(target(host), settings(host))
    nvme = next(s for s in report.steps if s.id == "nvme")
    assert nvme.status == "skipped" and "already holds data" in nvme.reason
    assert inside(host, f"blkid -s UUID -o value {disk}").strip() == before
    assert inside(host, f"blkid -s LABEL -o value {disk}").strip() == "precious"
    caches = next(s for s in report.steps if s.id == "caches")
    assert caches.status == "skipped"


def _timed_error(tgt: SshTarget) -> tuple[SshError, float]:
    started = time.monotonic()
    with pytest.raises(SshError) as err:
        provision_host(tgt, ProvisionSettings(login_user=tgt.user))
    return err.value, time.monotonic() - started


def test_wrong_host_key_is_refused_quickly(throwaway_host, tmp_path):
    other = tmp_path / "known_hosts"
    fake_key = "AAAAC3NzaC1lZDI1NTE5AAAAIOq3sV0k1n9vZl0r8rQ2b8xq6mX3rYy8m3a8m2nXq2Zk"
    other.write_text(f"{throwaway_host.address} ssh-ed25519 {fake_key}\n")
    tgt = SshTarget(throwaway_host.address, throwaway_host.user, throwaway_host.port,
                    throwaway_host.key_path, other)
    error, seconds = _timed_error(tgt)
    assert "different host key" in error.message and seconds < 15


def test_unknown_host_key_is_not_trusted(throwaway_host, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    tgt = SshTarget(throwaway_host.address, throwaway_host.user, throwaway_host.port,
                    throwaway_host.key_path, empty)
    error, seconds = _timed_error(tgt)
    assert "no pinned host key" in error.message and seconds < 15


def new_key(path):
    """A fresh key pair the host has never seen."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def test_wrong_key_is_refused_quickly(throwaway_host, tmp_path):
    wrong = new_key(tmp_path / "wrong_key")
    tgt = SshTarget(throwaway_host.address, throwaway_host.user, throwaway_host.port, wrong,
                    throwaway_host.known_hosts_path)
    error, seconds = _timed_error(tgt)
    assert "refused the SSH key" in error.message and seconds < 15


def test_unreachable_address_fails_within_a_bounded_time(tmp_path):
    import socket

    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error, seconds = _timed_error(SshTarget("127.0.0.1", "gpuctl", port, None, None))
    assert "cannot reach" in error.message and seconds < 15


def test_cli_provision_json_and_guards(stock_host, monkeypatch):
    from gpuctl.cli.main import cli

    host = stock_host
    base = [f"{host.user}@{host.address}:{host.port}", "--ssh-key", str(host.key_path),
            "--known-hosts", str(host.known_hosts_path)]
    result = CliRunner().invoke(cli, ["provision", *base, "--tz", "Asia/Tokyo", "--stop-at", "06:00",
                                      "--python", "3.11", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] and data["changed"] >= 5
    assert {s["status"] for s in data["steps"]} <= {"changed", "skipped"}
    assert all("reason" in s for s in data["steps"] if s["status"] == "skipped")

    # The watchdog runs on the host (cron is not running in the chroot: run it once by hand).
    host.run_local("/usr/local/sbin/gpuctl-idle-watchdog --config /etc/gpuctl/idle-watchdog.json "
                   "--dry-run")
    shown = CliRunner().invoke(cli, ["guards", *base, "--json"])
    assert shown.exit_code == 0, shown.output
    guards = json.loads(shown.stdout)
    assert "0 6 * * * root /sbin/shutdown -h now" in guards["shutdown_cron"]
    assert json.loads(guards["idle_watchdog_config"])["idle_minutes"] == 30
    assert len(guards["idle_watchdog_log"]) == 1 and "idle" in guards["idle_watchdog_log"][0]


def test_cli_wrong_key_is_one_line(throwaway_host, tmp_path):
    from gpuctl.cli.main import cli

    host = throwaway_host
    wrong = new_key(tmp_path / "k")
    result = CliRunner().invoke(cli, ["provision", f"{host.user}@{host.address}:{host.port}",
                                      "--ssh-key", str(wrong), "--known-hosts",
                                      str(host.known_hosts_path), "--json"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_wait_for_ssh_reconnects_after_the_connection_drops(throwaway_host):
    """The reconnect used after a driver reboot: sessions die, the client waits and comes back."""
    with RemoteHost(target(throwaway_host)) as remote:
        remote.run("true")
        assert throwaway_host.cut_connections() >= 1
        remote.wait_for_ssh(timeout_s=20, poll_s=0.2)
        assert remote.run("echo back").stdout.strip() == "back"


def test_wait_for_ssh_gives_up_with_a_hint(tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    remote = RemoteHost(SshTarget("127.0.0.1", "gpuctl", port, None, None))
    started = time.monotonic()
    with pytest.raises(SshError, match="did not come back within 1s"):
        remote.wait_for_ssh(timeout_s=1, poll_s=0.2)
    assert time.monotonic() - started < 5


def test_driver_step_plans_a_reboot_without_running_its_description(throwaway_host):
    with RemoteHost(target(throwaway_host)) as remote:
        plan = DriverStep(check_only_without_gpu=False).plan(remote, settings(throwaway_host))
    assert plan.actions[-1].startswith("reboot if nvidia-smi")
    assert not any(a.startswith("reboot") for a in plan.actions[:-1])
