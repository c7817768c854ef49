"""Nodes shaped like GKE's: the labels, taints and capacity a GKE node pool gives its nodes.

Only what gpuctl's scheduling depends on is modelled: node pool, accelerator, spot, machine
type, zone, arch/os, the GPU taint and the nvidia.com/gpu extended resource. Capacities are
those of the GCE machine types; allocatable is GKE's capacity minus its reservations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .stages import KWOK_NODE_ANNOTATION

GPU_RESOURCE = "nvidia.com/gpu"
# GKE taints every GPU node with this, and its ExtendedResourceToleration admission plugin
# gives pods that request nvidia.com/gpu the matching toleration.
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
NODEPOOL_LABEL = "cloud.google.com/gke-nodepool"
SPOT_LABEL = "cloud.google.com/gke-spot"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
REGION, ZONE = "us-central1", "us-central1-a"


@dataclass(frozen=True)
class NodeShape:
    name: str
    labels: dict[str, str]
    capacity: dict[str, str]
    allocatable: dict[str, str]
    taints: list[dict] = field(default_factory=list)


def _base_labels(name: str, pool: str, machine_type: str) -> dict[str, str]:
    return {
        NODEPOOL_LABEL: pool,
        "cloud.google.com/machine-family": machine_type.split("-")[0],
        "cloud.google.com/gke-os-distribution": "cos",
        INSTANCE_TYPE_LABEL: machine_type,
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
        "kubernetes.io/hostname": name,
        "topology.kubernetes.io/region": REGION,
        "topology.kubernetes.io/zone": ZONE,
    }


def _resources(cpu: str, memory: str, gpus: int = 0) -> dict[str, str]:
    resources = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "95Gi"}
    if gpus:
        resources[GPU_RESOURCE] = str(gpus)
    return resources


def system_node(name: str = "gke-test-system-0") -> NodeShape:
    """An on-demand CPU node of the default pool, where the Web UI and system pods run."""
    return NodeShape(name, _base_labels(name, "system", "e2-standard-4"),
                     capacity=_resources("4", "16Gi"),
                     allocatable=_resources("3920m", "13Gi"))


def spot_gpu_node(name: str, *, accelerator: str, pool: str, machine_type: str,
                  capacity: dict[str, str], allocatable: dict[str, str]) -> NodeShape:
    labels = _base_labels(name, pool, machine_type) | {
        ACCELERATOR_LABEL: accelerator,
        SPOT_LABEL: "true",
        "cloud.google.com/gke-provisioning": "spot",
    }
    return NodeShape(name, labels, capacity, allocatable, taints=[dict(GPU_TAINT)])


def l4_spot_node(name: str) -> NodeShape:
    """g2-standard-8: 1 NVIDIA L4, 8 vCPU, 32 GB."""
    return spot_gpu_node(name, accelerator="nvidia-l4", pool="l4-spot", machine_type="g2-standard-8",
                         capacity=_resources("8", "32Gi", gpus=1),
                         allocatable=_resources("7910m", "27Gi", gpus=1))


def a100_spot_node(name: str) -> NodeShape:
    """a2-highgpu-1g: 1 NVIDIA A100 40GB, 12 vCPU, 85 GB."""
    return spot_gpu_node(name, accelerator="nvidia-tesla-a100", pool="a100-spot",
                         machine_type="a2-highgpu-1g",
                         capacity=_resources("12", "85Gi", gpus=1),
                         allocatable=_resources("11900m", "78Gi", gpus=1))


# The session cluster starts with these: two L4 nodes so an Indexed Job with parallelism 2
# can run at once, one A100 node, and the CPU node.
DEFAULT_NODES = (
    system_node(),
    l4_spot_node("gke-test-l4-spot-0"),
    l4_spot_node("gke-test-l4-spot-1"),
    a100_spot_node("gke-test-a100-spot-0"),
)


def node_manifest(shape: NodeShape) -> dict:
    """A v1 Node the apiserver accepts on create, status included (as a kubelet registers)."""
    key, value = KWOK_NODE_ANNOTATION
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": shape.name, "labels": dict(shape.labels), "annotations": {key: value}},
        "spec": {"taints": [dict(t) for t in shape.taints]},
        "status": {"capacity": dict(shape.capacity), "allocatable": dict(shape.allocatable)},
    }
