"""Google Compute Engine shapes gpuctl knows: machine types, GPUs and where they exist.

Plain data, no cloud calls. Facts come from ../shared/GCP_FACTS.md (late 2026) and Google's
GPU machine-type docs; entries marked UNVERIFIED there are kept as our best reading and named
so in comments, so nobody mistakes them for checked facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LOCAL_SSD_GB = 375  # every GCE local NVMe SSD partition is 375 GB


@dataclass(frozen=True)
class GpuType:
    name: str  # the GCE accelerator type, e.g. nvidia-tesla-t4
    display: str  # what a person calls it
    memory_gb: int
    # region -> zone suffixes where the accelerator is offered
    zones: dict[str, tuple[str, ...]]

    def zones_in(self, region: str) -> list[str]:
        return [f"{region}-{suffix}" for suffix in self.zones.get(region, ())]

    @property
    def regions(self) -> list[str]:
        return sorted(self.zones)


@dataclass(frozen=True)
class MachineType:
    name: str
    vcpus: int
    memory_gb: float
    # A GPU that comes with the machine type (A2, A3, G2) rather than being attached.
    builtin_gpu: str | None = None
    builtin_gpu_count: int = 0
    # GPUs that may be attached with guest_accelerators (N1 only), with the allowed counts.
    attachable_gpus: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # Local SSDs that come with the machine type; when non-zero, adding scratch disks is an error.
    bundled_local_ssd: int = 0
    # Scratch NVMe counts one may add (0 always allowed); empty when bundled.
    local_ssd_counts: tuple[int, ...] = ()
    # Only spot (or flex-start) capacity exists for this type.
    spot_only: bool = False
    # Needs the gVNIC network interface.
    needs_gvnic: bool = False

    @property
    def family(self) -> str:
        return self.name.split("-", 1)[0]


GPUS: dict[str, GpuType] = {
    g.name: g
    for g in (
        GpuType(
            "nvidia-tesla-t4",
            "T4 16GB",
            16,
            {"us-central1": ("a", "b", "c", "f"), "asia-northeast1": ("a", "c")},
        ),
        GpuType(
            "nvidia-l4",
            "L4 24GB",
            24,
            {"us-central1": ("a", "b", "c"), "asia-northeast1": ("a", "b", "c")},
        ),
        GpuType(
            "nvidia-tesla-a100",
            "A100 40GB",
            40,
            {"us-central1": ("a", "b", "c", "f"), "asia-northeast1": ("a", "c")},
        ),
        # Tokyo has no A100 80GB (GCP_FACTS.md).
        GpuType("nvidia-a100-80gb", "A100 80GB", 80, {"us-central1": ("a", "c")}),
        GpuType(
            "nvidia-h100-80gb",
            "H100 80GB",
            80,
            {"us-central1": ("a", "b", "c"), "asia-northeast1": ("b",)},
        ),
    )
}

_N1_LOCAL_SSD = (1, 2, 3, 4, 5, 6, 7, 8, 16, 24)
_T4_COUNTS = (1, 2, 4)

MACHINES: dict[str, MachineType] = {
    m.name: m
    for m in (
        MachineType("n1-standard-8", 8, 30, attachable_gpus={"nvidia-tesla-t4": _T4_COUNTS},
                    local_ssd_counts=_N1_LOCAL_SSD),
        MachineType("n1-highmem-8", 8, 52, attachable_gpus={"nvidia-tesla-t4": _T4_COUNTS},
                    local_ssd_counts=_N1_LOCAL_SSD),
        MachineType("n1-highmem-16", 16, 104, attachable_gpus={"nvidia-tesla-t4": _T4_COUNTS},
                    local_ssd_counts=_N1_LOCAL_SSD),
        # G2: the L4 is part of the type; one optional local SSD on the small shapes (UNVERIFIED).
        MachineType("g2-standard-8", 8, 32, builtin_gpu="nvidia-l4", builtin_gpu_count=1,
                    local_ssd_counts=(1,)),
        MachineType("g2-standard-16", 16, 64, builtin_gpu="nvidia-l4", builtin_gpu_count=1,
                    local_ssd_counts=(1,)),
        # A2 Standard: A100 40GB built in; scratch NVMe counts grow with the GPU count.
        MachineType("a2-highgpu-1g", 12, 85, builtin_gpu="nvidia-tesla-a100", builtin_gpu_count=1,
                    local_ssd_counts=(1, 2, 4, 8)),
        MachineType("a2-highgpu-2g", 24, 170, builtin_gpu="nvidia-tesla-a100", builtin_gpu_count=2,
                    local_ssd_counts=(2, 4, 8)),
        MachineType("a2-highgpu-4g", 48, 340, builtin_gpu="nvidia-tesla-a100", builtin_gpu_count=4,
                    local_ssd_counts=(4, 8)),
        MachineType("a2-highgpu-8g", 96, 680, builtin_gpu="nvidia-tesla-a100", builtin_gpu_count=8,
                    local_ssd_counts=(8,)),
        # A2 Ultra: A100 80GB with local SSD bundled; scratch disks must not be added.
        MachineType("a2-ultragpu-1g", 12, 170, builtin_gpu="nvidia-a100-80gb", builtin_gpu_count=1,
                    bundled_local_ssd=1),
        MachineType("a2-ultragpu-4g", 48, 680, builtin_gpu="nvidia-a100-80gb", builtin_gpu_count=4,
                    bundled_local_ssd=4),
        # A3 High 1g: H100 80GB, bundled local SSD (count UNVERIFIED), spot/flex-start only, gVNIC.
        MachineType("a3-highgpu-1g", 26, 234, builtin_gpu="nvidia-h100-80gb", builtin_gpu_count=1,
                    bundled_local_ssd=2, spot_only=True, needs_gvnic=True),
    )
}

REGIONS = ("us-central1", "asia-northeast1")


def region_of(zone: str) -> str:
    """us-central1-a -> us-central1."""
    return zone.rsplit("-", 1)[0]

