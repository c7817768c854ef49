"""Local NVMe: format (RAID0 when several), mount by UUID, fstab, writable by the login user.

Safety first: only Google's local SSD links, or NVMe disks nobody uses, are candidates; a
disk that holds data is left alone unless --format-in-use. Our own filesystem carries the
label gpuctl-nvme, so a run cut off after mkfs recognises its own work and resumes.
"""

from __future__ import annotations

import shlex

from . import facts
from .base import Host, StepPlan, ask, read, settled, skip
from .checks import DONE, SKIP, TODO, Check, Verdict, keyed
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


def nvme_probe(mount_point: str) -> str:
    """fstab entries for the mount point, what is mounted there and its UUID (blkid probes as
    root: there may be no udev), whether the login user can write there, and whether the host
    has local NVMe disks at all."""
    mp = shlex.quote(mount_point)
    return (f"awk -v mp={mp} '$1 !~ /^#/ && $2 == mp {{print \"fstab\", $1, $3}}' /etc/fstab\n"
            f"if mountpoint -q {mp}; then src=$(findmnt -n -o SOURCE --mountpoint {mp}); "
            f"echo \"mounted $src $(findmnt -n -o FSTYPE --mountpoint {mp})\"; "
            f"echo \"uuid $($SUDO blkid -s UUID -o value \"$src\" 2>/dev/null)\"; "
            f"t={mp}/.gpuctl-write-check-$$; (: > \"$t\") 2>/dev/null && rm -f \"$t\" && echo writable yes; fi\n"
            "echo \"disks $(ls /dev/disk/by-id 2>/dev/null | grep -c '^google-local-nvme-ssd-') "
            "$(ls /sys/block 2>/dev/null | grep -c '^nvme')\"")


def judge_nvme(text: str, mount_point: str) -> Verdict:
    """DONE only when one fstab line mounts UUID=<u> as ext4 at the mount point, the disk
    mounted there now has UUID u, and the login user can write to it."""
    answers = keyed(text)
    entries = [e.split() for e in answers.get("fstab", [])]
    mounted = (answers.get("mounted") or [""])[0].split()
    uuid = (answers.get("uuid") or [""])[0]
    disks = [int(n) if n.isdigit() else 0 for n in (answers.get("disks") or ["0 0"])[0].split()]
    if not mounted and not any(disks):
        return Verdict(SKIP, "no local NVMe SSD on this host")
    if not mounted:
        return Verdict(TODO, f"nothing is mounted at {mount_point}")
    if len(entries) != 1 or len(entries[0]) != 2:
        return Verdict(TODO, f"/etc/fstab has {len(entries)} entries for {mount_point}, wanted one")
    source, fstype = entries[0]
    if not uuid or source != f"UUID={uuid}":
        return Verdict(TODO, f"fstab mounts {source}, but the disk at {mount_point} is "
                             f"UUID={uuid or 'unknown'}")
    if fstype != "ext4" or mounted[1:2] != ["ext4"]:
        return Verdict(TODO, f"{mount_point} is not ext4 in fstab and in the mount table")
    if "writable" not in answers:
        return Verdict(TODO, f"{mount_point} is not writable by the login user")
    return Verdict(DONE, f"{mounted[0]} mounted at {mount_point} by UUID, writable")


class NvmeStep:
    id = "nvme"

    def check(self, s: ProvisionSettings) -> Check:
        return Check(nvme_probe(s.mount_point), lambda text: judge_nvme(text, s.mount_point))

    def plan(self, host: Host, s: ProvisionSettings, verdict: Verdict | None = None) -> StepPlan:
        done = settled(ask(host, self.check(s), verdict))
        if done:
            return done
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
            # Mounted already (an interrupted run): make sure it is writable, not read-only.
            host.run(f"mkdir -p {mp} && if mountpoint -q {mp}; then mount -o remount,rw {mp}; "
                     f"else mount -o discard,defaults {shlex.quote(device)} {mp}; fi", sudo=True)
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
