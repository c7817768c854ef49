"""What the Compute Engine stand-in knows of the world: zones, machine types, accelerator types.

Zones, machine shapes and GPUs come from the generated catalog data
(infra/gpuctl_infra/catalog_data.py, built by scripts/build-catalog.py from the dated CSV
snapshot and Google's documents), read as plain data: not from gpuctl's Python tables, and
never a second hand-written list. tests/test_price_snapshot.py holds that data to the CSV row
by row, so a wrong table fails there. E2 and N1 host shapes (no GPU) exist in every zone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from gpuctl_infra import catalog_data

BASE = "https://www.googleapis.com/compute/v1/"  # what GCE writes into selfLink and friends


def _zone_list(compact: dict[str, str]) -> list[str]:
    return [f"{region}-{suffix}" for region, suffixes in sorted(compact.items()) for suffix in suffixes]


GPU_ZONES = {name: _zone_list(g["zones"]) for name, g in catalog_data.GPUS.items()}
ZONES = {zone: zone.rsplit("-", 1)[0]
         for zones in [*GPU_ZONES.values(), *(_zone_list(m["zones"]) for m in catalog_data.MACHINES.values())]
         for zone in zones}
ZONES = dict(sorted(ZONES.items()))
REGIONS = sorted(set(ZONES.values()))

# Default subnet ranges of the auto-mode "default" network, for networkIP: the two Google
# documents for regions gpuctl's tests name, a distinct made-up /20 for every other region.
SUBNETS = {"us-central1": "10.128.0.", "asia-northeast1": "10.146.0."}
for _i, _region in enumerate(r for r in REGIONS if r not in SUBNETS):
    SUBNETS[_region] = f"10.{200 + _i}.0."

GPU_DESCRIPTIONS = {name: f"NVIDIA {g['display']}" for name, g in catalog_data.GPUS.items()}

# The quota metric a GPU draws on (spot VMs draw on the PREEMPTIBLE_ twin when it is set); the
# names compute.v1.json's Quota.metric enum lists. GPUs it has no metric for draw on none here.
GPU_QUOTA_METRICS = {
    "nvidia-tesla-t4": "NVIDIA_T4_GPUS",
    "nvidia-l4": "NVIDIA_L4_GPUS",
    "nvidia-tesla-a100": "NVIDIA_A100_GPUS",
    "nvidia-a100-80gb": "NVIDIA_A100_80GB_GPUS",
    "nvidia-h100-80gb": "NVIDIA_H100_GPUS",
    "nvidia-tesla-p4": "NVIDIA_P4_GPUS",
    "nvidia-tesla-p100": "NVIDIA_P100_GPUS",
    "nvidia-tesla-v100": "NVIDIA_V100_GPUS",
}


@dataclass(frozen=True)
class MachineShape:
    name: str
    cpus: int
    memory_mb: int
    gpu: str | None = None  # built-in accelerator (A2, A3, A4, G2, G4); None for N1/E2
    gpu_count: int = 0
    bundled_ssds: int = 0  # local SSDs that come with the type (375 GB each)
    gpu_zones_of: str | None = None  # the GPU whose zones this type lives in
    zones: list[str] = field(default_factory=lambda: list(ZONES))
    models: tuple[str, ...] = ("FLEX_START", "SPOT", "STANDARD")  # provisioning models it takes


def _shapes() -> list[MachineShape]:
    gb = 1024
    shapes = [MachineShape("e2-small", 2, 2 * gb), MachineShape("e2-medium", 2, 4 * gb),
              MachineShape("e2-standard-2", 2, 8 * gb), MachineShape("e2-standard-4", 4, 16 * gb)]
    for name, m in sorted(catalog_data.MACHINES.items()):
        memory = int(m["memory_gb"] * gb)
        if m["gpu"] is None:  # N1: GPUs are attached; the host exists wherever GPUs may be
            shapes.append(MachineShape(name, m["vcpus"], memory, models=tuple(m["models"])))
            continue
        shapes.append(MachineShape(name, m["vcpus"], memory, m["gpu"], m["gpus"], m["bundled_ssd"],
                                   m["gpu"], _zone_list(m["zones"]), tuple(m["models"])))
    return shapes


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
