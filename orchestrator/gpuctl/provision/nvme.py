"""Local NVMe: format (RAID0 when several), mount by UUID, fstab, writable by the login user.

Safety first: only Google's local SSD links, or NVMe disks nobody uses, are candidates; a
disk that holds data is left alone unless --format-in-use. Our own filesystem carries the
label gpuctl-nvme, so a run cut off after mkfs recognises its own work and resumes.
"""

from __future__ import annotations

import shlex

from . import facts
from .base import Host, StepPlan, noop, read, skip
from .files import fstab_with_line, write_file_command
from .settings import ProvisionSettings

FS_LABEL = "gpuctl-nvme"
RAID_DEVICE = "/dev/md/gpuctl-nvme"
MOUNT_OPTIONS = "discard,defaults,nofail"


def _flatten(devices):
    for dev in devices:
        yield dev
        yield from _flatten(dev.children)


def candidate_disks(links: dict[str, str], devices) -> list[str]:
    """Google's local SSD links in index order, else unused whole NVMe disks."""
    if links:
        def index(name: str) -> int:
            tail = name.rsplit("-", 1)[-1]
            return int(tail) if tail.isdigit() else 0
        return [links[name] for name in sorted(links, key=index)]
    return [d.path for d in devices if d.type == "disk" and "/nvme" in d.path and not d.in_use]


def _is_ours(host: Host, dev) -> bool:
    """Our filesystem, or a member of our RAID (named in its md superblock)."""
    if dev.label == FS_LABEL:
        return True
    if dev.fstype == "linux_raid_member":
        examined = host.run(f"mdadm --examine {shlex.quote(dev.path)}", sudo=True, check=False)
        return "gpuctl-nvme" in examined.stdout
    return False


class NvmeStep:
    id = "nvme"

    def plan(self, host: Host, s: ProvisionSettings) -> StepPlan:
        mounted = [line.split() for line in read(host, facts.MOUNTS)]
        fstab = read(host, facts.FSTAB)
        if any(len(m) > 1 and m[1] == s.mount_point for m in mounted) and any(
                len(e.split()) > 1 and e.split()[1] == s.mount_point for e in fstab):
            return noop(f"{s.mount_point} is mounted and in fstab")
        links = read(host, facts.LOCAL_SSD_LINKS)
        devices = list(_flatten(read(host, facts.BLOCK_DEVICES)))
        by_path = {d.path: d for d in devices}
        disks = candidate_disks(links, devices)
        if not disks:
            return skip("no local NVMe SSD on this host")
        foreign = [p for p in disks if p in by_path and by_path[p].in_use and not _is_ours(host, by_path[p])]
        if foreign and not s.format_in_use:
            what = ", ".join(f"{p} ({by_path[p].fstype or 'partitioned'})" for p in foreign)
            return skip(f"left alone: {what} already holds data; pass --format-in-use to wipe it")
        return self._format_and_mount(disks, by_path, s)

    def _format_and_mount(self, disks: list[str], by_path: dict, s: ProvisionSettings) -> StepPlan:
        quoted = " ".join(shlex.quote(d) for d in disks)
        target = disks[0] if len(disks) == 1 else RAID_DEVICE
        single_done = len(disks) == 1 and by_path.get(disks[0]) is not None and \
            by_path[disks[0]].label == FS_LABEL
        actions = []
        if len(disks) > 1:
            actions.append(f"mdadm RAID0 {RAID_DEVICE} over {quoted}")
        if not single_done:
            actions.append(f"mkfs.ext4 -L {FS_LABEL} {target}")
        actions += [f"mount {target} at {s.mount_point}",
                    f"fstab: UUID=<uuid> {s.mount_point} ext4 {MOUNT_OPTIONS} 0 2",
                    f"chown {s.login_user} {s.mount_point}"]

        def apply(host: Host) -> None:
            device = disks[0]
            if len(disks) > 1:
                device = _ensure_raid(host, disks)
            current = read(host, facts.BLOCK_DEVICES)
            label = next((d.label for d in _flatten(current) if d.path == device), None)
            if label != FS_LABEL:
                host.run(f"mkfs.ext4 -q -F -L {FS_LABEL} {shlex.quote(device)}", sudo=True)
            # Read the UUID only now: before mkfs it is empty or someone else's.
            uuid = read(host, facts.blkid_uuid_fact(device))
            if not uuid:
                raise RuntimeError(f"no filesystem UUID on {device} after mkfs")
            mp = shlex.quote(s.mount_point)
            host.run(f"mkdir -p {mp} && (mountpoint -q {mp} || mount -o discard,defaults "
                     f"{shlex.quote(device)} {mp})", sudo=True)
            line = f"UUID={uuid} {s.mount_point} ext4 {MOUNT_OPTIONS} 0 2"
            lines = fstab_with_line(read(host, facts.FSTAB), s.mount_point, line)
            host.run(write_file_command("/etc/fstab", "\n".join(lines) + "\n"), sudo=True)
            host.run(f"chown {shlex.quote(s.login_user)}: {mp} && chmod 0775 {mp}", sudo=True)

        return StepPlan(actions=actions, apply=apply)


def _ensure_raid(host: Host, disks: list[str]) -> str:
    """Create the RAID0 array, or reuse the one an interrupted run already made."""
    exists = host.run(f"test -e {RAID_DEVICE}", check=False).exit_code == 0
    if not exists:
        members = " ".join(shlex.quote(d) for d in disks)
        assembled = host.run(f"mdadm --assemble {RAID_DEVICE} {members}", sudo=True, check=False)
        if assembled.exit_code != 0:
            host.run(f"mdadm --create {RAID_DEVICE} --name=gpuctl-nvme --level=0 --run --force "
                     f"--raid-devices={len(disks)} {members}", sudo=True)
    return host.run(f"readlink -f {RAID_DEVICE}", sudo=True).stdout.strip() or RAID_DEVICE
