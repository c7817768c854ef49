"""Facts about a host: each is a shell command plus a pure parser, tested on canned output."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Fact(Generic[T]):
    name: str
    command: str
    parse: Callable[[str], T]
    sudo: bool = False


@dataclass(frozen=True)
class OsInfo:
    id: str  # ubuntu, debian
    version_id: str  # 22.04, 12
    pretty_name: str

    @property
    def slug(self) -> str:
        return f"{self.id}-{self.version_id}"


def parse_os_release(text: str) -> OsInfo:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            try:
                values[key.strip()] = " ".join(shlex.split(value)) if value.strip() else ""
            except ValueError:  # unbalanced quotes: keep the raw text
                values[key.strip()] = value.strip().strip("\"'")
    return OsInfo(values.get("ID", "unknown").lower(), values.get("VERSION_ID", ""),
                  values.get("PRETTY_NAME", values.get("NAME", "unknown")))


@dataclass(frozen=True)
class BlockDevice:
    path: str
    type: str  # disk, part, raid0, loop, ...
    size: int
    fstype: str | None
    uuid: str | None
    label: str | None
    mountpoints: tuple[str, ...]
    children: tuple["BlockDevice", ...] = ()

    @property
    def in_use(self) -> bool:
        """Holds a filesystem, partitions, a RAID member or a mount: someone's data."""
        return bool(self.fstype or self.children or self.mountpoints)


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _device(node: dict) -> BlockDevice:
    mounts = node.get("mountpoints")
    if not isinstance(mounts, list):  # older lsblk has a single mountpoint
        mounts = [node.get("mountpoint")]
    size = node.get("size")
    children = node.get("children")
    return BlockDevice(
        path=_text(node.get("path")) or f"/dev/{_text(node.get('name')) or '?'}",
        type=_text(node.get("type")) or "",
        size=int(size) if isinstance(size, (int, str)) and str(size).isdigit() else 0,
        fstype=_text(node.get("fstype")),
        uuid=_text(node.get("uuid")),
        label=_text(node.get("label")),
        mountpoints=tuple(m for m in mounts if _text(m)),
        children=tuple(_device(c) for c in children if isinstance(c, dict))
        if isinstance(children, list) else (),
    )


def parse_lsblk(text: str) -> list[BlockDevice]:
    """lsblk -J -b -o PATH,NAME,TYPE,SIZE,FSTYPE,UUID,LABEL,MOUNTPOINTS; junk gives []."""
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return []
    nodes = data.get("blockdevices") if isinstance(data, dict) else None
    if not isinstance(nodes, list):
        return []
    return [_device(n) for n in nodes if isinstance(n, dict)]


def parse_by_id(text: str) -> dict[str, str]:
    """Lines 'NAME TARGET' from find -printf '%f %l\\n' -> {name: resolved /dev path}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            name, target = parts
            out[name] = "/dev/" + target.rsplit("/", 1)[-1] if not target.startswith("/dev/") else target
    return out


def parse_blkid_uuid(text: str) -> str | None:
    value = text.strip()
    return value if re.fullmatch(r"[0-9a-fA-F-]{8,36}", value) else None


@dataclass(frozen=True)
class GpuInfo:
    name: str
    driver: str
    memory_mib: int
    utilization: int | None


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """nvidia-smi --query-gpu=name,driver_version,memory.total,utilization.gpu
    --format=csv,noheader,nounits"""
    gpus = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 4 or not fields[0]:
            continue
        memory = int(fields[2]) if fields[2].isdigit() else 0
        util = int(fields[3]) if fields[3].isdigit() else None
        gpus.append(GpuInfo(fields[0], fields[1], memory, util))
    return gpus


def parse_nvcc_version(text: str) -> str | None:
    """'Cuda compilation tools, release 11.8, V11.8.89' -> '11.8'."""
    match = re.search(r"release (\d+\.\d+)", text)
    return match.group(1) if match else None


def parse_python_version(text: str) -> str | None:
    """'Python 3.10.12' -> '3.10'."""
    match = re.search(r"Python (\d+)\.(\d+)", text)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def parse_timezone(text: str) -> str | None:
    """readlink of /etc/localtime: '/usr/share/zoneinfo/Asia/Tokyo' -> 'Asia/Tokyo'."""
    match = re.search(r"zoneinfo/(.+)$", text.strip())
    return match.group(1) if match else (text.strip() or None)


def parse_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


OS_RELEASE = Fact("os", "cat /etc/os-release", parse_os_release)
BLOCK_DEVICES = Fact("disks", "lsblk -J -b -o PATH,NAME,TYPE,SIZE,FSTYPE,UUID,LABEL,MOUNTPOINTS",
                     parse_lsblk, sudo=True)
LOCAL_SSD_LINKS = Fact("local_ssd_links",
                       "find /dev/disk/by-id -maxdepth 1 -name 'google-local-nvme-ssd-*' "
                       "-printf '%f %l\\n' 2>/dev/null || true", parse_by_id)
GPUS = Fact("gpus", "nvidia-smi --query-gpu=name,driver_version,memory.total,utilization.gpu "
                    "--format=csv,noheader,nounits 2>/dev/null || true", parse_nvidia_smi)
NVCC = Fact("cuda", "(nvcc --version || /usr/local/cuda/bin/nvcc --version) 2>/dev/null || true",
            parse_nvcc_version)
TIMEZONE = Fact("timezone", "readlink -f /etc/localtime 2>/dev/null || cat /etc/timezone", parse_timezone)
FSTAB = Fact("fstab", "cat /etc/fstab 2>/dev/null || true", parse_lines)
MOUNTS = Fact("mounts", "cat /proc/mounts", parse_lines)


def python_version_fact(version: str) -> Fact[str | None]:
    return Fact("python", f"python{version} --version 2>&1 || true", parse_python_version)


def blkid_uuid_fact(device: str) -> Fact[str | None]:
    return Fact("uuid", f"blkid -s UUID -o value {shlex.quote(device)} || true", parse_blkid_uuid,
                sudo=True)
