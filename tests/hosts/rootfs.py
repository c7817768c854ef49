"""Build (once) and cache a minimal Debian 12 rootfs for throwaway hosts.

The cache lives at ~/.cache/gpuctl-dev/rootfs-bookworm-<ROOTFS_VERSION>/ and is used read-only
as an overlay lower layer, so it must never be half-built: debootstrap writes into a temp
directory beside it, and one rename publishes it. Bump ROOTFS_VERSION whenever the package
list or the customisation below changes; old caches are simply left unused.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

from .mounts import remove_tree

ROOTFS_VERSION = "v3"
SUITE = "bookworm"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
TEST_USER = "gpuctl"

# What provisioning touches on a real GCE VM, minus systemd/udev (a chroot has no init).
# Shaped like a stock cloud image: python3 without its venv package and no build tools, so
# a step that needs more must install it (tests serve the .debs: tests/hosts/debs.py).
PACKAGES = [
    "openssh-server", "openssh-sftp-server", "sudo", "cron", "util-linux", "mount",
    "e2fsprogs", "mdadm", "python3", "iproute2", "procps", "tzdata", "ca-certificates",
]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpuctl-dev"


def rootfs_path() -> Path:
    return cache_root() / f"rootfs-{SUITE}-{ROOTFS_VERSION}"


def apt_mirror(etc_apt: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses for `bookworm`, so the build goes where apt
    already can (a local mirror or proxy); deb.debian.org when none is configured."""
    for source in sorted(etc_apt.glob("sources.list.d/*.sources")):
        for stanza in re.split(r"\n\s*\n", source.read_text()):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, flags=re.M))
            if SUITE in fields.get("Suites", "").split() and "deb" in fields.get("Types", ""):
                return fields["URIs"].split()[0]
    lists = [etc_apt / "sources.list", *sorted(etc_apt.glob("sources.list.d/*.list"))]
    for source in lists:
        if not source.is_file():
            continue
        for line in source.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()  # drop "[signed-by=...]" options
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    return FALLBACK_MIRROR


def ensure_rootfs(log=print) -> Path:
    """Return the cached rootfs, building it first when it is missing."""
    target = rootfs_path()
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # A lock, so two pytest sessions (or xdist workers) do not both run debootstrap.
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_dir():  # another process built it while we waited
            return target
        _remove_stale_builds(target)
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
        started = time.monotonic()
        try:
            _debootstrap(tmp, apt_mirror(), lock.fileno())
            _customise(tmp)
            os.rename(tmp, target)
        finally:
            if tmp.exists():
                remove_tree(tmp)
        log(f"built {target} in {time.monotonic() - started:.0f}s")
    return target


def _remove_stale_builds(target: Path) -> None:
    # Builds killed mid-way leave temp dirs (perhaps with /proc still mounted by debootstrap);
    # we hold the lock, so nothing else is building into them.
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        remove_tree(stale)


def _debootstrap(tmp: Path, mirror: str, lock_fd: int) -> None:
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
           SUITE, str(tmp), mirror]
    # debootstrap inherits the lock: if this process is SIGKILLed, the lock stays held until
    # the orphaned debootstrap is done, so the next build never deletes a dir being written.
    # Its own session, so an exception here (Ctrl-C) can stop all of it, dpkg included.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            pass_fds=(lock_fd,), start_new_session=True)
    try:
        output, _ = proc.communicate()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if proc.returncode != 0:
        log_file = tmp / "debootstrap" / "debootstrap.log"
        detail = log_file.read_text() if log_file.exists() else output
        raise RuntimeError(f"debootstrap from {mirror} failed ({proc.returncode}):\n"
                           f"{detail[-3000:]}")


def _chroot(root: Path, script: str) -> None:
    subprocess.run(["chroot", str(root), "/bin/sh", "-ec", script], check=True,
                   capture_output=True, text=True)


def _customise(root: Path) -> None:
    # The test user: passwordless sudo like the GCE image's default user. Its password is
    # '*' rather than useradd's '!', because sshd without PAM refuses '!' as a locked account.
    _chroot(root, f"""
        useradd --create-home --shell /bin/bash --groups sudo {TEST_USER}
        usermod --password '*' {TEST_USER}
        usermod --password '*' root
        echo '{TEST_USER} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{TEST_USER}
        chmod 0440 /etc/sudoers.d/{TEST_USER}
        rm -f /etc/ssh/ssh_host_*
        apt-get clean
    """)
    # Every host gets its own host key, generated by the harness; none is baked in.
    (root / "etc/gpuctl-test-rootfs").write_text(f"{SUITE}-{ROOTFS_VERSION}\n")
