"""The throwaway-host facility is real: a Debian 12 sshd we reach over a veth, that verifies
keys both ways, has fake local NVMe disks we can format and mount, can drop connections on
demand, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest

from tests.hosts import network
from tests.hosts.fixtures import host_rootfs, throwaway_host, throwaway_host_two_disks  # noqa: F401
from tests.hosts.host import ThrowawayHost, md_supported, sweep_leftovers

REPO = Path(__file__).resolve().parents[1]


def run(conn, command: str):
    return conn.run(command, hide=True, warn=True, in_stream=False)


def test_login_verifies_the_host_key_and_runs_commands_on_debian_12(throwaway_host):
    with throwaway_host.connection() as conn:
        uname = run(conn, "uname -a")
        os_release = run(conn, "cat /etc/os-release")
        sudo = run(conn, "sudo -n true")
        whoami = run(conn, "whoami")
    assert uname.ok and uname.stdout.startswith(f"Linux {throwaway_host.name} ")
    assert 'ID=debian' in os_release.stdout and 'VERSION_ID="12"' in os_release.stdout
    assert sudo.exited == 0, sudo.stderr
    assert whoami.stdout.strip() == "gpuctl"


def test_root_logs_in_by_key(throwaway_host):
    with throwaway_host.connection(user="root") as conn:
        assert run(conn, "id -u").stdout.strip() == "0"


def test_openssh_client_works_with_the_harness_known_hosts(throwaway_host):
    done = subprocess.run(throwaway_host.ssh_argv() + ["echo", "over-openssh"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "over-openssh"


def test_an_unknown_or_changed_host_key_is_rejected(throwaway_host, tmp_path):
    nothing_known = tmp_path / "empty_known_hosts"
    nothing_known.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        throwaway_host.connection(known_hosts=nothing_known).open()

    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)],
                   check=True)
    key_type, key_b64 = Path(f"{impostor}.pub").read_text().split()[:2]
    changed = tmp_path / "changed_known_hosts"
    changed.write_text(f"{throwaway_host.address} {key_type} {key_b64}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        throwaway_host.connection(known_hosts=changed).open()


def test_a_wrong_client_key_is_refused_and_passwords_are_off(throwaway_host, tmp_path):
    wrong = tmp_path / "wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    with pytest.raises(paramiko.AuthenticationException):
        throwaway_host.connection(key_path=wrong).open()

    transport = paramiko.Transport((throwaway_host.address, throwaway_host.port))
    try:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password("gpuctl", "gpuctl")
        assert refused.value.allowed_types == ["publickey"]
    finally:
        transport.close()


def test_fake_local_nvme_disks_look_like_gce_ones(throwaway_host_two_disks):
    host = throwaway_host_two_disks
    with host.connection() as conn:
        links = run(conn, "find /dev/disk/by-id -mindepth 1 -maxdepth 1 -printf '%f %l\\n' | sort")
        lsblk = run(conn, "lsblk -b -n -o PATH,SIZE")
    expected_links = [f"google-local-nvme-ssd-{i} ../../{os.path.basename(d)}"
                      for i, d in enumerate(host.disks)]
    assert links.stdout.split("\n")[:-1] == expected_links
    # Only this host's disks, each 256 MiB: not the runner's disk nor other hosts' loops.
    assert sorted(lsblk.stdout.split("\n")[:-1]) == sorted(
        f"{d} {256 * 1024 * 1024}" for d in host.disks)


def test_a_disk_can_be_formatted_and_mounted_by_uuid_inside(throwaway_host):
    host = throwaway_host
    disk = host.disk_links[0]
    with host.connection() as conn:
        mkfs = run(conn, f"sudo mkfs.ext4 -q -F -L scratch {disk}")
        uuid = run(conn, f"sudo blkid -s UUID -o value {disk}").stdout.strip()
        mount = run(conn, f"sudo mkdir -p /mnt/disks/nvme && sudo mount UUID={uuid} "
                          "/mnt/disks/nvme && echo written | sudo tee /mnt/disks/nvme/probe")
        lsblk = run(conn, f"sudo lsblk -n -o FSTYPE,LABEL,UUID,MOUNTPOINTS {host.disks[0]}")
    assert mkfs.exited == 0, mkfs.stderr
    assert mount.exited == 0, mount.stderr
    assert lsblk.stdout.split() == ["ext4", "scratch", uuid, "/mnt/disks/nvme"]
    # Seen from the harness without SSH, and only inside the host's mount namespace.
    assert host.run_local("cat /mnt/disks/nvme/probe").stdout == "written\n"
    assert "/mnt/disks/nvme" not in Path("/proc/self/mountinfo").read_text()


def test_md_raid_works_exactly_when_the_runner_kernel_has_md(throwaway_host_two_disks):
    links = " ".join(throwaway_host_two_disks.disk_links)
    with throwaway_host_two_disks.connection() as conn:
        created = run(conn, "sudo mdadm --create /dev/md/t --level=0 --raid-devices=2 --run "
                            f"{links}")
    assert (created.exited == 0) == md_supported(), created.stderr


def test_cut_connections_drops_sessions_but_keeps_the_listener(throwaway_host):
    host = throwaway_host
    conn = host.connection()
    assert run(conn, "nohup sleep 300 >/dev/null 2>&1 </dev/null &").exited == 0
    running = conn.run("sleep 60", asynchronous=True, hide=True, warn=True, in_stream=False)
    listener = host.listener_pid

    assert host.cut_connections() >= 1
    assert running.join().exited == -1  # the channel closed without an exit status
    assert not conn.is_connected
    assert host.run_local("pgrep -x sleep -a").stdout.count("sleep 300") == 1  # nohup'd job
    with host.connection() as fresh:
        assert run(fresh, "echo back").stdout == "back\n"
    assert host.listener_pid == listener and listener in host.processes()
    conn.close()


def _leftovers(name: str, host_dir: Path) -> list[str]:
    found = []
    if name in network.namespaces() or name in network.links():
        found.append(f"netns/veth {name}")
    loops = subprocess.run(["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"],
                           capture_output=True, text=True).stdout
    found += [f"loop {line}" for line in loops.splitlines() if str(host_dir) in line]
    found += [f"mount {line}" for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if str(host_dir) in line]
    if host_dir.exists():
        found.append(f"dir {host_dir}")
    return found


def test_stop_leaves_nothing_behind_even_with_a_mounted_disk(host_rootfs):
    host = ThrowawayHost(disks=2, rootfs=host_rootfs)
    with host:
        name, host_dir = host.name, host.dir
        with host.connection() as conn:
            busy = run(conn, f"sudo mkfs.ext4 -q -F {host.disks[1]} && sudo mkdir -p /mnt/d && "
                             f"sudo mount {host.disks[1]} /mnt/d && "
                             "(nohup sleep 600 >/dev/null 2>&1 </dev/null &)")
            assert busy.exited == 0, busy.stderr
        pids = host.processes()
        assert len(pids) >= 2 and not _leftovers("none", Path("/nonexistent"))
        assert _leftovers(name, host_dir)  # the check sees a live host
    assert _leftovers(name, host_dir) == []
    assert host.processes() == []
    assert [p for p in pids if Path(f"/proc/{p}").exists()] == []


def test_a_failed_start_cleans_up_what_it_made(tmp_path):
    not_a_rootfs = tmp_path / "empty"
    not_a_rootfs.mkdir()
    host = ThrowawayHost(rootfs=not_a_rootfs)
    with pytest.raises(FileNotFoundError):
        host.start()
    assert host.name and _leftovers(host.name, host.dir) == []


def test_sweep_removes_hosts_of_a_crashed_run(host_rootfs, tmp_path):
    # A harness process that dies by SIGKILL with a host up: no __exit__, no stop(). Its own
    # base dir, so a parallel session's sweep cannot take this test's leftovers first.
    base = tmp_path / "hosts"
    script = ("import os, signal, sys\n"
              "from tests.hosts.host import ThrowawayHost\n"
              f"host = ThrowawayHost(disks=1, base_dir={str(base)!r}, "
              f"rootfs={str(host_rootfs)!r}).start()\n"
              "print(host.name, host.dir, flush=True)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    crashed = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                             text=True, timeout=60)
    assert crashed.returncode == -9, crashed.stderr
    name, host_dir = crashed.stdout.split()
    assert _leftovers(name, Path(host_dir))  # its sshd, netns, loop and overlay live on

    assert name in sweep_leftovers(base)
    assert _leftovers(name, Path(host_dir)) == []
