"""What the Compute Engine stand-in knows of the world: zones, machine types, accelerator types.

Zones and GPUs follow /work/shared/GCP_FACTS.md, kept apart from gpuctl's own catalog on
purpose: were the stand-in built from gpuctl's tables, a wrong table could never fail a test.

    Tokyo (asia-northeast1): T4 and A100 40GB in -a and -c, L4 in -a/-b/-c, H100 in -b only,
    no A100 80GB. us-central1: T4/A100 in -a/-b/-c/-f, A100 80GB in -a/-c, L4 and H100 in
    -a/-b/-c.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

BASE = "https://www.googleapis.com/compute/v1/"  # what GCE writes into selfLink and friends

ZONES = {
    "us-central1-a": "us-central1", "us-central1-b": "us-central1", "us-central1-c": "us-central1",
    "us-central1-f": "us-central1",
    "asia-northeast1-a": "asia-northeast1", "asia-northeast1-b": "asia-northeast1",
    "asia-northeast1-c": "asia-northeast1",
}
REGIONS = sorted(set(ZONES.values()))

# Default subnet ranges of the auto-mode "default" network, for networkIP.
SUBNETS = {"us-central1": "10.128.0.", "asia-northeast1": "10.146.0."}

GPU_DESCRIPTIONS = {
    "nvidia-tesla-t4": "NVIDIA T4",
    "nvidia-l4": "NVIDIA L4",
    "nvidia-tesla-a100": "NVIDIA A100 40GB",
    "nvidia-a100-80gb": "NVIDIA A100 80GB",
    "nvidia-h100-80gb": "NVIDIA H100 80GB",
}

# The quota metric a GPU draws on (spot VMs draw on the PREEMPTIBLE_ twin when it is set).
GPU_QUOTA_METRICS = {
    "nvidia-tesla-t4": "NVIDIA_T4_GPUS",
    "nvidia-l4": "NVIDIA_L4_GPUS",
    "nvidia-tesla-a100": "NVIDIA_A100_GPUS",
    "nvidia-a100-80gb": "NVIDIA_A100_80GB_GPUS",
    "nvidia-h100-80gb": "NVIDIA_H100_GPUS",
}

_US = ["us-central1-a", "us-central1-b", "us-central1-c"]
GPU_ZONES = {
    "nvidia-tesla-t4": ["asia-northeast1-a", "asia-northeast1-c", *_US, "us-central1-f"],
    "nvidia-tesla-a100": ["asia-northeast1-a", "asia-northeast1-c", *_US, "us-central1-f"],
    "nvidia-l4": ["asia-northeast1-a", "asia-northeast1-b", "asia-northeast1-c", *_US],
    "nvidia-h100-80gb": ["asia-northeast1-b", *_US],
    "nvidia-a100-80gb": ["us-central1-a", "us-central1-c"],
}


@dataclass(frozen=True)
class MachineShape:
    name: str
    cpus: int
    memory_mb: int
    gpu: str | None = None  # built-in accelerator (A2, A3, G2); None for N1/E2
    gpu_count: int = 0
    bundled_ssds: int = 0  # local SSDs that come with the type (375 GB each)
    gpu_zones_of: str | None = None  # the GPU whose zones this type lives in
    zones: list[str] = field(default_factory=lambda: list(ZONES))


def _shapes() -> list[MachineShape]:
    gb = 1024
    shapes = [MachineShape("e2-small", 2, 2 * gb), MachineShape("e2-medium", 2, 4 * gb),
              MachineShape("e2-standard-2", 2, 8 * gb), MachineShape("e2-standard-4", 4, 16 * gb)]
    for n in (1, 2, 4, 8, 16, 32):
        shapes.append(MachineShape(f"n1-standard-{n}", n, int(n * 3.75 * gb)))
    for n in (2, 4, 8, 16, 32):
        shapes.append(MachineShape(f"n1-highmem-{n}", n, int(n * 6.5 * gb)))
    for n, gpus in ((4, 1), (8, 1), (12, 1), (16, 1), (24, 2), (32, 1), (48, 4), (96, 8)):
        shapes.append(MachineShape(f"g2-standard-{n}", n, n * 4 * gb, "nvidia-l4", gpus))
    for gpus in (1, 2, 4, 8):
        shapes.append(MachineShape(f"a2-highgpu-{gpus}g", 12 * gpus, 85 * gpus * gb,
                                   "nvidia-tesla-a100", gpus))
        shapes.append(MachineShape(f"a2-ultragpu-{gpus}g", 12 * gpus, 170 * gpus * gb,
                                   "nvidia-a100-80gb", gpus, bundled_ssds=gpus))
        # a3-highgpu-1g: 750 GiB of bundled local SSD, i.e. two 375 GB partitions (unverified count).
        shapes.append(MachineShape(f"a3-highgpu-{gpus}g", 26 * gpus, 234 * gpus * gb,
                                   "nvidia-h100-80gb", gpus, bundled_ssds=2 * gpus))
    out = []
    for s in shapes:
        zones = GPU_ZONES[s.gpu] if s.gpu else list(ZONES)
        out.append(MachineShape(s.name, s.cpus, s.memory_mb, s.gpu, s.gpu_count, s.bundled_ssds,
                                s.gpu, list(zones)))
    return out


MACHINE_SHAPES = {s.name: s for s in _shapes()}


def default_catalog() -> dict[str, dict[str, set[str]]]:
    """zone -> {"machineTypes": {...}, "acceleratorTypes": {...}}; the stand-in's mutable copy."""
    catalog = {zone: {"machineTypes": set(), "acceleratorTypes": set()} for zone in ZONES}
    for shape in MACHINE_SHAPES.values():
        for zone in shape.zones:
            catalog[zone]["machineTypes"].add(shape.name)
    for gpu, zones in GPU_ZONES.items():  # built-in GPUs (L4, A100 80GB, H100) are listed too
        for zone in zones:
            catalog[zone]["acceleratorTypes"].add(gpu)
    return catalog


def numeric_id(*parts: str) -> str:
    """A stable uint64 id in its JSON form (a decimal string), as GCE writes ids."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return str(int.from_bytes(digest[:8], "big") >> 1)


def machine_type_resource(project: str, zone: str, name: str) -> dict:
    shape = MACHINE_SHAPES[name]
    body = {
        "kind": "compute#machineType",
        "id": numeric_id("machineType", name),
        "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
        "name": name,
        "description": f"{shape.cpus} vCPUs, {shape.memory_mb / 1024:g} GB RAM",
        "guestCpus": shape.cpus,
        "memoryMb": shape.memory_mb,
        "imageSpaceGb": 0,
        "maximumPersistentDisks": 128,
        "maximumPersistentDisksSizeGb": "263168",
        "zone": zone,  # GCE writes the bare zone name here, not a URL
        "selfLink": f"{BASE}projects/{project}/zones/{zone}/machineTypes/{name}",
        "isSharedCpu": name in ("e2-small", "e2-medium"),
    }
    if shape.gpu:
        body["accelerators"] = [{"guestAcceleratorType": shape.gpu,
                                 "guestAcceleratorCount": shape.gpu_count}]
    if shape.bundled_ssds:
        body["bundledLocalSsds"] = {"defaultInterface": "NVME", "partitionCount": shape.bundled_ssds}
    return body


def accelerator_type_resource(project: str, zone: str, name: str) -> dict:
    return {
        "kind": "compute#acceleratorType",
        "id": numeric_id("acceleratorType", name),
        "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
        "name": name,
        "description": GPU_DESCRIPTIONS[name],
        "zone": f"{BASE}projects/{project}/zones/{zone}",
        "selfLink": f"{BASE}projects/{project}/zones/{zone}/acceleratorTypes/{name}",
        "maximumCardsPerInstance": 8 if name != "nvidia-tesla-t4" else 4,
    }


def zone_resource(project: str, zone: str) -> dict:
    region = ZONES[zone]
    return {
        "kind": "compute#zone",
        "id": numeric_id("zone", zone),
        "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
        "name": zone,
        "description": zone,
        "status": "UP",
        "region": f"{BASE}projects/{project}/regions/{region}",
        "selfLink": f"{BASE}projects/{project}/zones/{zone}",
        "availableCpuPlatforms": ["Intel Broadwell", "Intel Cascade Lake", "Intel Sapphire Rapids"],
        "supportsPzs": False,
    }
