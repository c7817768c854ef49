"""The typed spec the GKE program is a function of: one zonal cluster, a small CPU system pool,
and one spot GPU node pool per accelerator.

The orchestrator builds a GkeSpec from flags and config; the program reads nothing else.
Frozen (and pools a tuple) so a spec checked by the rules cannot change before it is applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .spec import CALLER_ADDRESS_PLACEHOLDER

# Shown in dry-run plans when no project is configured; a live apply refuses it.
PROJECT_PLACEHOLDER = "your-project-id"

# Every GPU node carries this taint, so only pods that tolerate it (and ask for a GPU) land
# there; kube-system and other CPU pods stay on the cheap system pool.
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}

# Node scopes: write logs and metrics, pull images from Artifact Registry / GCR. Workloads get
# their own cloud identity through Workload Identity, never through the node's scopes.
NODE_OAUTH_SCOPES = (
    "https://www.googleapis.com/auth/logging.write",
    "https://www.googleapis.com/auth/monitoring",
    "https://www.googleapis.com/auth/devstorage.read_only",
)


@dataclass(frozen=True)
class Accelerator:
    short: str  # what a user types: t4, l4, a100
    gpu: str  # the GCE/GKE accelerator type
    default_machine: str
    machine_prefix: str  # the machine family GKE pairs this GPU with


# The GPUs gpuctl offers on GKE, with the machine each runs on by default (all in the catalog,
# so every pool can be priced and its local SSD counts checked).
ACCELERATORS: dict[str, Accelerator] = {
    a.short: a
    for a in (
        Accelerator("t4", "nvidia-tesla-t4", "n1-standard-8", "n1-"),
        Accelerator("l4", "nvidia-l4", "g2-standard-8", "g2-standard-"),
        Accelerator("a100", "nvidia-tesla-a100", "a2-highgpu-1g", "a2-highgpu-"),
    )
}
BY_GPU: dict[str, Accelerator] = {a.gpu: a for a in ACCELERATORS.values()}


@dataclass(frozen=True)
class GpuPoolSpec:
    accelerator: str  # GKE accelerator type, e.g. nvidia-l4
    machine_type: str
    max_nodes: int
    spot: bool = True
    # GPUs per node; None means what the machine type has built in (or 1 on N1).
    gpus_per_node: int | None = None
    # Local NVMe SSDs backing the node's ephemeral storage (container images, emptyDir, the
    # HF cache); None means the smallest count the machine allows, 0 none.
    local_ssd_count: int | None = None
    disk_size_gb: int = 100  # boot disk; training images are several GB
    disk_type: str = "pd-balanced"
    driver_version: str = "DEFAULT"  # GKE installs the NVIDIA driver: DEFAULT or LATEST

    @property
    def short(self) -> str:
        return BY_GPU[self.accelerator].short if self.accelerator in BY_GPU else self.accelerator

    @property
    def name(self) -> str:
        """The node pool's name in the cluster: gpu-l4, gpu-t4, gpu-a100."""
        return f"gpu-{self.short}"


@dataclass(frozen=True)
class GkeSpec:
    name: str  # cluster name; also names the stack (gke-<name>) and the kube context
    zone: str
    project: str
    gpu_pools: tuple[GpuPoolSpec, ...]
    labels: dict[str, str] = field(default_factory=dict)
    release_channel: str = "REGULAR"
    system_machine_type: str = "e2-standard-2"
    system_min_nodes: int = 1
    system_max_nodes: int = 2
    # On-demand by default: kube-dns and the metrics agents live there, and a preempted system
    # node stalls every scale-up until it is back.
    system_spot: bool = False
    system_disk_size_gb: int = 50
    system_disk_type: str = "pd-standard"
    network: str = "default"
    image_type: str = "COS_CONTAINERD"
    # The one address the control plane answers (authorized networks): the caller's, as for SSH.
    control_plane_cidr: str = CALLER_ADDRESS_PLACEHOLDER

    @property
    def region(self) -> str:
        return self.zone.rsplit("-", 1)[0]

    @property
    def workload_pool(self) -> str:
        return f"{self.project}.svc.id.goog"

    @property
    def stack_name(self) -> str:
        return stack_name(self.name)

    @property
    def node_account_id(self) -> str:
        """The nodes' own service account (IAM: 6-30 characters, [a-z]([-a-z0-9]*[a-z0-9]))."""
        return f"gpuctl-{self.name}"[:30].rstrip("-")


def stack_name(cluster: str) -> str:
    return f"gke-{cluster}"
