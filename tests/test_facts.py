"""Fact parsers on canned output from real tools, and on anything at all (hypothesis)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gpuctl.provision import facts
from gpuctl.provision.files import fstab_with_line
from gpuctl.provision.nvme import candidate_disks

UBUNTU_2204 = """PRETTY_NAME="Ubuntu 22.04.4 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
ID=ubuntu
ID_LIKE=debian
"""
DEBIAN_12 = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
"""

# lsblk -J -b on an a2-highgpu-1g: SCSI boot disk, one local NVMe SSD (unformatted).
LSBLK_A2 = json.dumps({"blockdevices": [
    {"path": "/dev/sda", "name": "sda", "type": "disk", "size": 107374182400, "fstype": None,
     "uuid": None, "label": None, "mountpoints": [None], "children": [
         {"path": "/dev/sda1", "name": "sda1", "type": "part", "size": 107257838080,
          "fstype": "ext4", "uuid": "0e3a-11", "label": "cloudimg-rootfs", "mountpoints": ["/"]},
         {"path": "/dev/sda15", "name": "sda15", "type": "part", "size": 109051904,
          "fstype": "vfat", "uuid": "A1B2-C3D4", "label": "UEFI", "mountpoints": ["/boot/efi"]}]},
    {"path": "/dev/nvme0n1", "name": "nvme0n1", "type": "disk", "size": 402653184000,
     "fstype": None, "uuid": None, "label": None, "mountpoints": [None]},
    {"path": "/dev/nvme0n2", "name": "nvme0n2", "type": "disk", "size": 402653184000,
     "fstype": "ext4", "uuid": "d1c7c0f2-6c8e-4a0c-9a57-2f1f2a8c1f11", "label": "data",
     "mountpoints": [None]},
]})

NVIDIA_SMI_4 = """NVIDIA A100-SXM4-40GB, 535.183.01, 40960, 0
NVIDIA A100-SXM4-40GB, 535.183.01, 40960, 97
NVIDIA A100-SXM4-40GB, 535.183.01, 40960, 100
NVIDIA A100-SXM4-40GB, 535.183.01, 40960, [N/A]
"""


def test_os_release():
    assert facts.parse_os_release(UBUNTU_2204) == facts.OsInfo("ubuntu", "22.04", "Ubuntu 22.04.4 LTS")
    info = facts.parse_os_release(DEBIAN_12)
    assert info.slug == "debian-12" and info.pretty_name == "Debian GNU/Linux 12 (bookworm)"


def test_lsblk_marks_disks_in_use():
    devices = {d.path: d for d in facts.parse_lsblk(LSBLK_A2)}
    assert devices["/dev/sda"].in_use  # has partitions, one mounted at /
    assert devices["/dev/sda"].children[0].mountpoints == ("/",)
    assert not devices["/dev/nvme0n1"].in_use
    assert devices["/dev/nvme0n2"].in_use and devices["/dev/nvme0n2"].label == "data"


def test_lsblk_older_single_mountpoint_field():
    old = json.dumps({"blockdevices": [{"name": "vdb", "type": "disk", "size": "10",
                                        "mountpoint": "/data", "fstype": "xfs"}]})
    [dev] = facts.parse_lsblk(old)
    assert dev.path == "/dev/vdb" and dev.mountpoints == ("/data",) and dev.size == 10


def test_candidates_prefer_google_links_in_index_order():
    links = facts.parse_by_id("google-local-nvme-ssd-1 ../../nvme0n2\n"
                              "google-local-nvme-ssd-0 ../../nvme0n1\n")
    assert links == {"google-local-nvme-ssd-1": "/dev/nvme0n2", "google-local-nvme-ssd-0": "/dev/nvme0n1"}
    assert candidate_disks(links, []) == ["/dev/nvme0n1", "/dev/nvme0n2"]


def test_candidates_without_links_are_unused_nvme_disks_only():
    devices = facts.parse_lsblk(LSBLK_A2)
    assert candidate_disks({}, devices) == ["/dev/nvme0n1"]  # never sda, never the disk with data


def test_nvidia_smi_four_gpus():
    gpus = facts.parse_nvidia_smi(NVIDIA_SMI_4)
    assert len(gpus) == 4
    assert gpus[0] == facts.GpuInfo("NVIDIA A100-SXM4-40GB", "535.183.01", 40960, 0)
    assert [g.utilization for g in gpus] == [0, 97, 100, None]


def test_nvidia_smi_missing_or_failing():
    assert facts.parse_nvidia_smi("") == []
    assert facts.parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate with the "
                                  "NVIDIA driver.") == []


def test_blkid_and_versions():
    assert facts.parse_blkid_uuid("d1c7c0f2-6c8e-4a0c-9a57-2f1f2a8c1f11\n") == \
        "d1c7c0f2-6c8e-4a0c-9a57-2f1f2a8c1f11"
    assert facts.parse_blkid_uuid("") is None  # before mkfs: nothing, never a made-up UUID
    assert facts.parse_nvcc_version("nvcc: NVIDIA (R) Cuda compiler driver\n"
                                    "Cuda compilation tools, release 11.8, V11.8.89\n") == "11.8"
    assert facts.parse_python_version("Python 3.10.12") == "3.10"
    assert facts.parse_python_version("sh: 1: python3.10: not found") is None
    assert facts.parse_timezone("/usr/share/zoneinfo/Asia/Tokyo\n") == "Asia/Tokyo"
    assert facts.parse_timezone("Etc/UTC\n") == "Etc/UTC"


def test_fstab_line_replaces_the_old_entry_for_the_mount_point():
    current = ["# /etc/fstab", "LABEL=cloudimg-rootfs / ext4 defaults 0 1",
               "UUID=old /mnt/disks/nvme ext4 discard,defaults,nofail 0 2"]
    new = fstab_with_line(current, "/mnt/disks/nvme", "UUID=new /mnt/disks/nvme ext4 x 0 2")
    assert new == current[:2] + ["UUID=new /mnt/disks/nvme ext4 x 0 2"]
    assert fstab_with_line(new, "/mnt/disks/nvme", new[-1]) == new  # idempotent


PARSERS = [facts.parse_os_release, facts.parse_lsblk, facts.parse_by_id, facts.parse_blkid_uuid,
           facts.parse_nvidia_smi, facts.parse_nvcc_version, facts.parse_python_version,
           facts.parse_timezone, facts.parse_lines]


@settings(max_examples=200)
@given(text=st.text(), which=st.sampled_from(PARSERS))
def test_parsers_never_raise_on_any_text(text, which):
    which(text)


@settings(max_examples=100)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda children: st.lists(children, max_size=3)
                    | st.dictionaries(st.sampled_from(["blockdevices", "path", "name", "type", "size",
                                                       "children", "mountpoints", "fstype"]), children,
                                      max_size=4), max_leaves=12))
def test_lsblk_parser_survives_malformed_json(data):
    try:
        facts.parse_lsblk(json.dumps(data))
    except (TypeError, ValueError, AttributeError) as exc:  # pragma: no cover - documents the bug
        raise AssertionError(f"parse_lsblk crashed on {data!r}: {exc}") from exc
