"""ThrowawayHost: a real sshd on a Debian 12 chroot in its own namespaces, with fake NVMe disks.

Layout of one host (all under <base>/gpuctl-t-xxxxxx/, removed on stop):
    root/            overlay: the cached rootfs (read-only lower) + upper/ (this host's writes)
    disks/nvme<i>.img sparse files attached to loop devices
    keys/            the client key pair and known_hosts
    sshd.log         sshd's stderr (-e), for when a test needs to know why a login failed

sshd runs as `ip netns exec <ns> unshare --mount --uts --pid --fork --kill-child`:
  * the netns gives it its own address; the runner reaches it over a veth pair;
  * the mount namespace holds a private /proc, /sys, /dev and /run for the chroot, and any
    mount a test makes over SSH (mkfs + mount of a fake NVMe disk), so none of it leaks to
    the runner and all of it vanishes with the host;
  * /dev is a fresh tmpfs with only the nodes a VM's tools need plus this host's loop
    devices, never the runner's /dev (a test must not be able to mkfs the runner's disks);
  * the PID namespace makes sshd PID 1: killing it kills every process the host ever
    started, sessions and nohup'd jobs too;
  * /sys/block is narrowed to this host's disks, so lsblk lists what a VM would list.

What cannot be faked here: the kernel is the runner's. There is no udev (/dev/disk/by-uuid
is not maintained; lsblk reads FSTYPE/UUID/LABEL by probing, so only as root) and no
systemd (start daemons such as cron by hand), and md RAID exists only where the runner's
kernel has CONFIG_MD (see md_supported()).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from . import network, procs
from .disks import attach_loop, detach_loops
from .inside import sshd_script
from .mounts import remove_tree, unmount_under
from .rootfs import TEST_USER, ensure_rootfs

PREFIX = network.PREFIX
BASE_DIR = Path(tempfile.gettempdir()) / "gpuctl-hosts"
DISK_LINK = "google-local-nvme-ssd-{}"  # the name GCE gives local NVMe SSDs under by-id
SSHD_CONFIG = "/etc/ssh/sshd_config.gpuctl"
START_TIMEOUT_S = 15

SSHD_CONFIG_TEXT = """\
Port 22
ListenAddress 0.0.0.0
HostKey /etc/ssh/ssh_host_ed25519_key
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AuthorizedKeysFile .ssh/authorized_keys
StrictModes yes
# No PAM in a chroot without a session manager; accounts are unlocked with '*' instead.
UsePAM no
UseDNS no
PrintMotd no
PidFile /run/sshd.pid
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""


REQUIRED_COMMANDS = ["debootstrap", "ip", "losetup", "unshare", "nsenter", "chroot", "mount",
                     "umount", "mknod", "ssh-keygen"]


def missing_prerequisites() -> list[str]:
    """What this runner lacks to start a throwaway host; empty when it can."""
    missing = [] if os.geteuid() == 0 else ["root (netns, loop devices and mounts need it)"]
    missing += [f"command {c}" for c in REQUIRED_COMMANDS if shutil.which(c) is None]
    if "overlay" not in Path("/proc/filesystems").read_text():
        missing.append("overlayfs in the kernel")
    if not Path("/dev/loop-control").exists():
        missing.append("/dev/loop-control (loop device support)")
    return missing


def md_supported() -> bool:
    """True when the runner's kernel has md (mdadm RAID); the chroot shares that kernel."""
    return Path("/proc/mdstat").exists()


class ThrowawayHost:
    def __init__(self, disks: int = 1, disk_size_mib: int = 256, user: str = TEST_USER,
                 base_dir: Path = BASE_DIR, rootfs: Path | None = None):
        self.disk_count, self.disk_size_mib, self.user = disks, disk_size_mib, user
        self.base_dir, self.rootfs = Path(base_dir), rootfs
        self.name = ""
        self.dir: Path | None = None
        self.address = ""
        self.port = 22
        self.disks: list[str] = []  # /dev/loopN, the same path inside the host and out
        self.disk_links: list[str] = []  # /dev/disk/by-id/google-local-nvme-ssd-<i>
        self.known_hosts_line = ""
        self.start_seconds = 0.0
        self._proc: subprocess.Popen | None = None
        self._listener = 0
        self._pidns: str | None = None
        self._log = None

    # -- paths a client needs ------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def key_path(self) -> Path:
        return self.dir / "keys" / "id_ed25519"

    @property
    def known_hosts_path(self) -> Path:
        return self.dir / "keys" / "known_hosts"

    @property
    def log_path(self) -> Path:
        return self.dir / "sshd.log"

    def sshd_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ssh_argv(self, user: str | None = None) -> list[str]:
        """An OpenSSH command line that trusts only this host's key."""
        return ["ssh", "-i", str(self.key_path), "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts_path}",
                "-p", str(self.port), f"{user or self.user}@{self.address}"]

    def connection(self, user: str | None = None, key_path: Path | None = None,
                   known_hosts: Path | None = None):
        """A Fabric connection that rejects any host key but the one in known_hosts (this
        host's, unless a test passes another file)."""
        from fabric import Connection
        from paramiko import RejectPolicy

        conn = Connection(self.address, user=user or self.user, port=self.port,
                          connect_timeout=10,
                          connect_kwargs={"key_filename": str(key_path or self.key_path),
                                          "look_for_keys": False, "allow_agent": False})
        conn.client.set_missing_host_key_policy(RejectPolicy())
        conn.client.load_host_keys(str(known_hosts or self.known_hosts_path))
        return conn

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> "ThrowawayHost":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "ThrowawayHost":
        started = time.monotonic()
        rootfs = self.rootfs or ensure_rootfs()
        try:
            self._make_dir_and_network()
            self._mount_root(rootfs)
            self._attach_disks()
            self._write_keys_and_config()
            self._start_sshd()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        return self

    def _make_dir_and_network(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        # Locked, so parallel sessions never pick the same /30 and a sweep never sees a
        # netns before its veth (and owner tag) exists.
        with network.machine_lock():
            while True:
                self.name = PREFIX + secrets.token_hex(3)
                self.dir = self.base_dir / self.name
                if not self.dir.exists() and self.name not in network.namespaces():
                    break
            self.dir.mkdir()
            # The owner's pid lets sweep_leftovers() tell a live host from a crashed one.
            (self.dir / "owner.pid").write_text(str(os.getpid()))
            link = network.create(self.name, network.pick_subnet())
        self.address = link.host_ip

    def _mount_root(self, rootfs: Path) -> None:
        for sub in ("root", "upper", "work", "disks", "keys"):
            (self.dir / sub).mkdir()
        # overlayfs: starting a host costs a mount, not a 300 MB copy.
        opts = f"lowerdir={rootfs},upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}"
        _run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.root)])

    def _attach_disks(self) -> None:
        for i in range(self.disk_count):
            loop = attach_loop(self.dir / "disks" / f"nvme{i}.img", self.disk_size_mib)
            self.disks.append(loop)
            self.disk_links.append(f"/dev/disk/by-id/{DISK_LINK.format(i)}")

    def _write_keys_and_config(self) -> None:
        etc = self.root / "etc"
        (etc / "hostname").write_text(self.name + "\n")
        # sudo warns on every call when it cannot resolve its own host name.
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {self.name}\n")
        (self.root / SSHD_CONFIG.lstrip("/")).write_text(SSHD_CONFIG_TEXT)
        host_key = etc / "ssh" / "ssh_host_ed25519_key"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{self.name}",
              "-f", str(host_key)])
        key_type, key_b64 = Path(f"{host_key}.pub").read_text().split()[:2]
        self.known_hosts_line = f"{self.address} {key_type} {key_b64}"
        self.known_hosts_path.write_text(self.known_hosts_line + "\n")
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"gpuctl-test@{self.name}",
              "-f", str(self.key_path)])
        os.chmod(self.key_path, 0o600)
        public = Path(f"{self.key_path}.pub").read_text()
        for account, home in (("root", "/root"), (TEST_USER, f"/home/{TEST_USER}")):
            uid, gid = _ids(self.root, account)
            ssh_dir = self.root / home.lstrip("/") / ".ssh"
            ssh_dir.mkdir(mode=0o700, exist_ok=True)
            (ssh_dir / "authorized_keys").write_text(public)
            os.chmod(ssh_dir / "authorized_keys", 0o600)
            for path in (ssh_dir, ssh_dir / "authorized_keys"):
                os.chown(path, uid, gid)

    def _start_sshd(self) -> None:
        self._log = open(self.log_path, "wb")
        self._proc = subprocess.Popen(
            ["ip", "netns", "exec", self.name,
             "unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child",
             "--propagation", "private", "/bin/sh", "-ec", self._inside_script()],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"sshd for {self.name} exited {self._proc.returncode}:\n"
                                   f"{self.sshd_log()[-2000:]}")
            if not self._listener:
                kids = procs.children_of(self._proc.pid)
                if kids:
                    self._listener, self._pidns = kids[0], procs.pid_namespace(kids[0])
            if self._listener and _port_open(self.address, self.port):
                return
            time.sleep(0.02)
        raise RuntimeError(f"sshd for {self.name} not listening after {START_TIMEOUT_S}s:\n"
                           f"{self.sshd_log()[-2000:]}")

    def _inside_script(self) -> str:
        return sshd_script(self.root, self.name, self.disks, DISK_LINK, SSHD_CONFIG)

    # -- harness-side control ------------------------------------------------------------
    def run_local(self, command: str, check: bool = True,
                  timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a shell command as root inside the host (its namespaces and chroot), without
        SSH: for a test to inspect what provisioning did."""
        argv = ["nsenter", "-t", str(self._listener), "-m", "-u", "-n", "-p", "-r", "-w",
                "/bin/sh", "-c", command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"run_local({command!r}) exited {done.returncode}: {done.stderr}")
        return done

    def session_pids(self) -> list[int]:
        """sshd processes serving connections (everything named sshd but the listener)."""
        return [pid for pid in procs.pids_in_namespace(self._pidns)
                if pid != self._listener and procs.command_name(pid) == "sshd"]

    def cut_connections(self) -> int:
        """Kill every established SSH session but keep the listener, as a dropped network
        connection would. Commands the sessions started lose their sshd like on a real host
        (a pipe closes, SIGHUP on a pty); nohup'd or setsid'd jobs keep running."""
        sessions = self.session_pids()
        left = procs.kill_and_wait(sessions)
        if left:
            raise RuntimeError(f"sshd sessions {left} of {self.name} survived SIGKILL")
        return len(sessions)

    @property
    def listener_pid(self) -> int:
        """The runner PID of the listening sshd (PID 1 inside the host)."""
        return self._listener

    def processes(self) -> list[int]:
        """Runner PIDs of every process of this host (empty once it has stopped)."""
        return procs.pids_in_namespace(self._pidns) if self._pidns else []

    def stop(self) -> None:
        """Tear everything down, in the reverse order of start; each step runs even when an
        earlier one failed, and the failures are raised together at the end."""
        errors: list[str] = []
        _attempt(errors, self._kill_processes)
        _attempt(errors, self._detach_disks)
        if self.dir is not None:
            _attempt(errors, lambda: unmount_under(self.dir))
        if self.name:
            _attempt(errors, lambda: network.delete(self.name))
        if self.dir is not None and not errors:  # never rm -rf past a mount we failed to undo
            _attempt(errors, lambda: remove_tree(self.dir))
        if self._log:
            self._log.close()
            self._log = None
        if errors:
            raise RuntimeError(f"cleaning up {self.name}: " + "; ".join(errors))

    def _kill_processes(self) -> None:
        if self._proc is not None:
            # SIGKILL to sshd, PID 1 of the namespace: the kernel kills and reaps every other
            # process in it, and unshare (still its parent) reaps sshd, so no zombie keeps
            # the namespace alive. Killing unshare first would orphan sshd to the runner's
            # init and leave its reaping to chance. --kill-child covers a listener not found.
            # While unshare runs, the listener PID cannot have been reused.
            if self._listener and self._proc.poll() is None:
                procs.kill_and_wait([self._listener])
            self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None
        stragglers = self.processes() + (network.pids_in(self.name) if self.name else [])
        left = procs.kill_and_wait(stragglers)
        deadline = time.monotonic() + 5
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.02)  # zombies being reaped
        if left or self.processes():
            raise RuntimeError(f"processes {left or self.processes()} survived SIGKILL")

    def _detach_disks(self) -> None:
        if self.dir is not None:
            detach_loops(self.dir / "disks")
        self.disks.clear()


def sweep_leftovers(base_dir: Path = BASE_DIR) -> list[str]:
    """Remove hosts left by crashed runs: their processes, loops, mounts, netns, veth and
    directory. A host whose owner process is still alive is left alone (parallel sessions).
    Returns the names removed."""
    removed = []
    with network.machine_lock():
        for host_dir in sorted(base_dir.glob(PREFIX + "*")) if base_dir.is_dir() else []:
            if not _owner_alive(host_dir):
                _remove_network(host_dir.name)
                detach_loops(host_dir / "disks")
                unmount_under(host_dir)
                remove_tree(host_dir)
                removed.append(host_dir.name)
        # Hosts kept elsewhere (another base dir) leave a netns and veth here too; the owner
        # tag on the veth says whether they are orphans.
        for name in set(network.namespaces()) | set(network.links()):
            if name not in removed and not network.owner_alive(name):
                _remove_network(name)
                removed.append(name)
    return sorted(removed)


def _remove_network(name: str) -> None:
    procs.kill_and_wait(network.pids_in(name))  # sshd and its sessions live in the netns
    network.delete(name)


def _owner_alive(host_dir: Path) -> bool:
    try:
        os.kill(int((host_dir / "owner.pid").read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.2):
            return True
    except OSError:
        return False


def _ids(root: Path, account: str) -> tuple[int, int]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == account:
            return int(fields[2]), int(fields[3])
    raise RuntimeError(f"no user {account} in {root}/etc/passwd")


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def _attempt(errors: list[str], step) -> None:
    try:
        step()
    except Exception as exc:  # keep cleaning; report everything at the end
        errors.append(str(exc))
