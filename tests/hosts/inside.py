"""The shell script that turns a fresh set of namespaces into a host, then execs sshd.

It runs as root on the runner's binaries (mount, mknod) inside the host's new mount, UTS
and PID namespaces, before chroot: everything it mounts lives and dies with the host.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path


def sshd_script(root: Path, hostname: str, disks: list[str], disk_link: str,
                sshd_config: str) -> str:
    """Mount a VM-like /proc, /sys, /dev and /run over the chroot at `root`, then exec sshd.
    `disks` are the runner's /dev/loopN of this host; `disk_link` names their by-id links."""
    r = shlex.quote(str(root))
    return "\n".join([
        f"hostname {shlex.quote(hostname)}",
        f"mount -t proc proc {r}/proc",  # the new PID namespace's view
        *_sys_lines(r, disks),
        *_dev_lines(r, disks, disk_link),
        f"mount -t tmpfs -o mode=0755,nosuid,nodev,size=16m run {r}/run",
        f"mkdir -m 0755 {r}/run/sshd; mkdir -m 1777 {r}/run/lock",
        f"exec chroot {r} /usr/sbin/sshd -D -e -f {sshd_config}",
    ])


def _sys_lines(r: str, disks: list[str]) -> list[str]:
    lines = [
        f"mount -t sysfs sysfs {r}/sys",  # shows this netns's interfaces
        # No udevd here, so libudev finds each disk in /sys/class/block but with no
        # properties, and lsblk then shows no FSTYPE/UUID/LABEL (it asks blkid only when
        # libudev knows nothing of the device). Hiding /sys/class/block makes lsblk probe
        # with blkid as root, which gives what udev gives on a real VM.
        f"mount -t tmpfs -o ro,size=4k,mode=0755 no-udev {r}/sys/class/block",
        # /sys/block lists every block device of the runner (its disk, other hosts' loops);
        # list only this host's disks, as a VM would. /sys/dev/block stays whole.
        f"mount -t tmpfs -o size=4k,mode=0755 host-disks {r}/sys/block",
    ]
    for loop in disks:
        name = os.path.basename(loop)
        target = os.readlink(f"/sys/block/{name}")  # ../devices/virtual/block/loopN
        lines.append(f"ln -s {shlex.quote(target)} {r}/sys/block/{name}")
    return lines + [f"mount -o remount,ro {r}/sys/block"]


def _dev_lines(r: str, disks: list[str], disk_link: str) -> list[str]:
    lines = [
        f"mount -t tmpfs -o mode=0755,nosuid,size=8m dev {r}/dev",
        f"cd {r}/dev",
        "mknod -m 666 null c 1 3; mknod -m 666 zero c 1 5; mknod -m 666 full c 1 7",
        "mknod -m 666 random c 1 8; mknod -m 666 urandom c 1 9; mknod -m 666 tty c 5 0",
        "ln -s /proc/self/fd fd; ln -s /proc/self/fd/0 stdin",
        "ln -s /proc/self/fd/1 stdout; ln -s /proc/self/fd/2 stderr",
        # A private devpts instance, so ptys allocated here are not the runner's.
        "mkdir pts shm",
        "mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts pts",
        "ln -s pts/ptmx ptmx; mount -t tmpfs -o mode=1777,nosuid,nodev shm shm",
        "mkdir -p disk/by-id",
    ]
    for i, loop in enumerate(disks):
        st, name = os.stat(loop), os.path.basename(loop)
        # Same name as on the runner: lsblk finds a disk as /sys/block/<name> and opens
        # /dev/<name>. Links named and shaped like udev's on GCE. gid 6 is 'disk'.
        lines += [f"mknod -m 660 {name} b {os.major(st.st_rdev)} {os.minor(st.st_rdev)}",
                  f"chgrp 6 {name}",
                  f"ln -s ../../{name} disk/by-id/{disk_link.format(i)}"]
    return lines + ["cd /"]
