"""The fake local NVMe SSDs: sparse image files on loop devices, and getting rid of them.

Loop devices and md arrays belong to the runner's kernel, not to a host's namespaces, so
they outlive a host's processes and must be released explicitly.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def attach_loop(image: Path, size_mib: int) -> str:
    """Create a sparse image (it costs only what is written) and return its /dev/loopN."""
    with open(image, "wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    done = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"losetup {image}: {done.stderr.strip()}")
    return done.stdout.strip()


def detach_loops(disk_dir: Path, timeout: float = 10.0) -> None:
    """Detach every loop device backed by an image in disk_dir. A filesystem mounted inside
    a dying mount namespace may hold the device a moment longer; the kernel then detaches
    on last close (autoclear), so wait for that rather than fail."""
    images = sorted(disk_dir.glob("*.img")) if disk_dir.is_dir() else []
    deadline = time.monotonic() + timeout
    while True:
        attached = [line.split(":")[0] for image in images for line in subprocess.run(
            ["losetup", "-j", str(image)], capture_output=True, text=True).stdout.splitlines()]
        if not attached:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"loop devices still attached: {attached}")
        for loop in attached:
            _stop_md_arrays_on(loop)
            subprocess.run(["losetup", "-d", loop], capture_output=True)
        time.sleep(0.05)


def _stop_md_arrays_on(loop: str) -> None:
    """An md array assembled over a host's disks lives in the (shared) kernel, not in the
    host's namespaces, and keeps the loop device busy; stop it from the runner."""
    holders = Path("/sys/block", os.path.basename(loop), "holders")
    for holder in holders.iterdir() if holders.is_dir() else []:
        if holder.name.startswith("md"):
            subprocess.run(["mdadm", "--stop", f"/dev/{holder.name}"], capture_output=True)
