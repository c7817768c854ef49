"""GKE rules a cluster spec must satisfy, checked on the laptop before anything is created.

GKE refuses these only after the control plane exists (a few minutes and a cluster fee in),
so each is a Violation with a hint here instead. The GCE-wide rules (names, labels, zones)
come from rules.py; this module adds what is particular to node pools.
"""

from __future__ import annotations

import re

from .catalog import GPUS, MACHINES, REGIONS, MachineType
from .gke_spec import ACCELERATORS, BY_GPU, PROJECT_PLACEHOLDER, GkeSpec, GpuPoolSpec
from .rules import single_address_violations
from .rules import (LABEL_KEY_RE, LABEL_VALUE_RE, NAME_RE, REQUIRED_LABELS, ZONE_RE, Violation,
                    check_failed)

MAX_CLUSTER_NAME = 40  # GKE's limit for cluster names
MAX_POOL_NODES = 16  # a guard on the worst case, not a GKE limit: raise it knowingly
PROJECT_RE = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
RELEASE_CHANNELS = ("RAPID", "REGULAR", "STABLE")
# Small shapes only: the system pool runs kube-dns and agents, never workloads.
SYSTEM_MACHINES = ("e2-medium", "e2-standard-2", "e2-standard-4")
MAX_SYSTEM_NODES = 5
DRIVER_VERSIONS = ("DEFAULT", "LATEST")
DISK_TYPES = ("pd-standard", "pd-balanced", "pd-ssd")
_PAIRS_HINT = "T4 runs on n1-*, L4 on g2-standard-*, A100 40GB on a2-highgpu-*"


def gpus_per_node(pool: GpuPoolSpec) -> int:
    """GPUs on each node: the machine's built-in count, else the pool's (default 1)."""
    machine = MACHINES.get(pool.machine_type)
    if machine is not None and machine.builtin_gpu and pool.gpus_per_node is None:
        return machine.builtin_gpu_count
    return pool.gpus_per_node if pool.gpus_per_node is not None else 1


def local_ssds(pool: GpuPoolSpec) -> int:
    """Local NVMe SSDs per node: the pool's count, else what the machine bundles, else the
    smallest count it allows (one 375 GB disk is plenty for images and the model cache)."""
    if pool.local_ssd_count is not None:
        return pool.local_ssd_count
    machine = MACHINES.get(pool.machine_type)
    if machine is None:
        return 0
    if machine.bundled_local_ssd:
        return machine.bundled_local_ssd
    return min(machine.local_ssd_counts, default=0)


def _identity(spec: GkeSpec) -> list[Violation]:
    out: list[Violation] = []
    if len(spec.name) > MAX_CLUSTER_NAME or not NAME_RE.fullmatch(spec.name):
        out.append(Violation("gke-name", f"'{spec.name}' is not a valid GKE cluster name",
                             "use lowercase letters, digits and dashes, start with a letter, "
                             f"at most {MAX_CLUSTER_NAME}"))
    if spec.project != PROJECT_PLACEHOLDER and not PROJECT_RE.fullmatch(spec.project):
        out.append(Violation("project", f"'{spec.project}' is not a Google Cloud project ID",
                             "project IDs are 6-30 lowercase letters, digits and dashes"))
    for key in REQUIRED_LABELS:
        if key not in spec.labels:
            out.append(Violation("labels-required", f"label {key} is missing",
                                 "every gpuctl resource carries the gpuctl-* labels"))
    for key, value in spec.labels.items():
        if not LABEL_KEY_RE.fullmatch(key) or not LABEL_VALUE_RE.fullmatch(value):
            out.append(Violation("label-format", f"label {key}={value!r} is not a valid GCE label",
                                 "labels are lowercase letters, digits, - and _, at most 63"))
    return out


def _cluster(spec: GkeSpec) -> list[Violation]:
    out: list[Violation] = []
    if spec.release_channel not in RELEASE_CHANNELS:
        out.append(Violation("release-channel", f"release channel {spec.release_channel!r} is unknown",
                             f"use one of: {', '.join(RELEASE_CHANNELS)}"))
    if spec.system_machine_type not in SYSTEM_MACHINES:
        out.append(Violation("system-machine",
                             f"{spec.system_machine_type} is not a system pool machine type",
                             f"use one of: {', '.join(SYSTEM_MACHINES)}"))
    if not 1 <= spec.system_min_nodes <= spec.system_max_nodes <= MAX_SYSTEM_NODES:
        out.append(Violation("system-size",
                             f"system pool {spec.system_min_nodes}..{spec.system_max_nodes} nodes "
                             "is not a valid range",
                             f"use 1 <= min <= max <= {MAX_SYSTEM_NODES} (kube-dns needs one node)"))
    out += _disk(spec.system_disk_type, spec.system_disk_size_gb, "system pool")
    out += single_address_violations(spec.control_plane_cidr, "control-plane", "the control plane",
                                     "the control plane", "--api-from")
    if not spec.gpu_pools:
        out.append(Violation("pools-empty", "the cluster has no GPU node pool",
                             "pass --pools, e.g. --pools l4 or --pools l4:2,t4"))
    seen: set[str] = set()
    for pool in spec.gpu_pools:
        if pool.accelerator in seen:
            out.append(Violation("pool-duplicate", f"two pools for {pool.accelerator}",
                                 "one pool per GPU type; raise its max nodes instead"))
        seen.add(pool.accelerator)
    return out


def _zone(spec: GkeSpec) -> list[Violation]:
    if not ZONE_RE.fullmatch(spec.zone):
        return [Violation("zone-format", f"'{spec.zone}' is not a zone name",
                          "zones look like us-central1-a or asia-northeast1-c")]
    if spec.region not in REGIONS:
        return [Violation("region-known", f"gpuctl has no GPU data for region {spec.region}",
                          f"use a zone in one of: {', '.join(REGIONS)}")]
    return []


def _disk(disk_type: str, size_gb: int, what: str) -> list[Violation]:
    out: list[Violation] = []
    if disk_type not in DISK_TYPES:
        out.append(Violation("disk-type", f"{what} disk type {disk_type!r} is unknown",
                             f"use one of: {', '.join(DISK_TYPES)}"))
    if not 10 <= size_gb <= 65536:
        out.append(Violation("disk-size", f"{what} boot disk of {size_gb} GB is out of range",
                             "use 10 to 65536 GB"))
    return out


def _machine_pair(pool: GpuPoolSpec, machine: MachineType) -> list[Violation]:
    accel = BY_GPU[pool.accelerator]
    if not machine.name.startswith(accel.machine_prefix):
        return [Violation("gpu-pair", f"{pool.accelerator} cannot run on {machine.name} in GKE",
                          f"{_PAIRS_HINT}; the default for {accel.short} is {accel.default_machine}")]
    count = gpus_per_node(pool)
    if machine.builtin_gpu:
        if count != machine.builtin_gpu_count:
            return [Violation("gpu-count", f"{machine.name} has {machine.builtin_gpu_count} "
                              f"{pool.accelerator} built in, not {count}",
                              "leave the GPU count out, or pick the machine with that many GPUs")]
        return []
    allowed = machine.attachable_gpus.get(pool.accelerator, ())
    if count not in allowed:
        return [Violation("gpu-count", f"{count}x {pool.accelerator} is not a valid count on "
                          f"{machine.name}", f"use one of: {', '.join(map(str, allowed))}")]
    return []


def _local_ssd(pool: GpuPoolSpec, machine: MachineType) -> list[Violation]:
    count = local_ssds(pool)
    if machine.bundled_local_ssd:
        ok, allowed = count == machine.bundled_local_ssd, (machine.bundled_local_ssd,)
    else:
        allowed = machine.local_ssd_counts
        ok = count == 0 or count in allowed
    if ok:
        return []
    return [Violation("local-ssd-count", f"{count} local SSDs is not a valid count on {machine.name}",
                      f"use 0 or one of: {', '.join(map(str, allowed)) or 'none'}")]


def _pool(spec: GkeSpec, pool: GpuPoolSpec) -> list[Violation]:
    if pool.accelerator not in BY_GPU:
        return [Violation("gke-accelerator", f"{pool.accelerator} is not a GPU gpuctl runs on GKE",
                          f"use one of: {', '.join(ACCELERATORS)}")]
    machine = MACHINES.get(pool.machine_type)
    if machine is None:
        return [Violation("machine-type", f"machine type {pool.machine_type} is not known to gpuctl",
                          f"{_PAIRS_HINT}; known: {', '.join(sorted(MACHINES))}")]
    out = _machine_pair(pool, machine)
    offered = GPUS[pool.accelerator].zones_in(spec.region)
    if spec.region in REGIONS and ZONE_RE.fullmatch(spec.zone) and spec.zone not in offered:
        where = (f"use one of: {', '.join(offered)}" if offered
                 else f"pick a zone in {', '.join(GPUS[pool.accelerator].regions)}")
        out.append(Violation("gpu-zone", f"{GPUS[pool.accelerator].display} is not offered in "
                             f"{spec.zone}", f"{where} (or drop {pool.short} from --pools)"))
    if not 1 <= pool.max_nodes <= MAX_POOL_NODES:
        out.append(Violation("pool-size", f"pool {pool.name} max nodes {pool.max_nodes} is out of range",
                             f"use 1 to {MAX_POOL_NODES}; the pool scales from 0 on demand"))
    out += _local_ssd(pool, machine)
    if pool.driver_version not in DRIVER_VERSIONS:
        out.append(Violation("driver-version", f"GPU driver version {pool.driver_version!r} is unknown",
                             f"use one of: {', '.join(DRIVER_VERSIONS)}"))
    elif pool.driver_version == "LATEST" and not spec.image_type.startswith("COS"):
        out.append(Violation("driver-version", "GKE installs the LATEST driver only on COS nodes",
                             "use DEFAULT, or the COS_CONTAINERD image type"))
    return out + _disk(pool.disk_type, pool.disk_size_gb, f"pool {pool.name}")


def violations(spec: GkeSpec) -> list[Violation]:
    """Every rule the spec breaks, most fundamental first."""
    out = _identity(spec) + _zone(spec) + _cluster(spec)
    for pool in spec.gpu_pools:
        out += _pool(spec, pool)
    return out


def check(spec: GkeSpec) -> None:
    check_failed(violations(spec))
