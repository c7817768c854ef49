"""What a GKE cluster costs per hour: the cluster fee, the system pool, and each GPU node.

A GPU node is priced like a VM (cost.py): host + GPUs + local SSD + boot disk, from the price
book in force. Idle, a cluster bills its fee and its system pool only; GPU pools start at zero
nodes, so the plan states both what it costs idle and what each GPU node adds.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuctl_infra import gke_rules
from gpuctl_infra.catalog import GPUS, LOCAL_SSD_GB, MACHINES
from gpuctl_infra.gke_spec import GkeSpec, GpuPoolSpec

from ..errors import PriceError
from ..prices.model import HOURS_PER_MONTH, PriceBook

# GCP_FACTS.md: 0.10 USD per cluster-hour. The free tier credit covers one zonal cluster per
# billing account; we count the fee anyway, since it may already be used by another cluster.
CLUSTER_FEE_USD_PER_HOUR = 0.10

# E2 on-demand list prices, USD/hour. The price book covers GPU machine types only (catalog.py),
# so the system pool's shapes are priced here. us-central1: Google's published E2 rates
# (0.021811/vCPU-h + 0.002923/GB-h; e2-medium bills 1 vCPU of its 2 shared). asia-northeast1:
# ESTIMATED at about 1.29x us-central1 as other Tokyo E2 figures are (unverified).
SYSTEM_MACHINE_USD_PER_HOUR: dict[str, dict[str, float]] = {
    "us-central1": {"e2-medium": 0.033503, "e2-standard-2": 0.067006, "e2-standard-4": 0.134012},
    "asia-northeast1": {"e2-medium": 0.04327, "e2-standard-2": 0.08654, "e2-standard-4": 0.17308},
}


@dataclass(frozen=True)
class NodeCost:
    pool: str
    detail: str  # "g2-standard-8 + 1x L4 24GB, spot"
    usd_per_hour: float

    def as_dict(self) -> dict:
        return {"pool": self.pool, "detail": self.detail, "usd_per_node_hour": round(self.usd_per_hour, 4)}


@dataclass(frozen=True)
class ClusterCost:
    region: str
    fee: float
    system: NodeCost
    system_nodes: tuple[int, int]  # min, max
    gpu: tuple[tuple[NodeCost, int], ...]  # per-node cost and max nodes of each GPU pool

    @property
    def idle_hourly(self) -> float:
        """Fee + the system pool at its minimum: what it bills with no GPU pod anywhere."""
        return self.fee + self.system_nodes[0] * self.system.usd_per_hour

    @property
    def max_hourly(self) -> float:
        """Every pool at its maximum: the most the autoscaler can spend per hour."""
        return (self.fee + self.system_nodes[1] * self.system.usd_per_hour
                + sum(node.usd_per_hour * count for node, count in self.gpu))

    def as_dict(self) -> dict:
        return {
            "region": self.region,
            "cluster_fee_usd_per_hour": self.fee,
            "system_pool": {**self.system.as_dict(), "min_nodes": self.system_nodes[0],
                            "max_nodes": self.system_nodes[1]},
            "gpu_pools": [{**node.as_dict(), "max_nodes": count} for node, count in self.gpu],
            "idle_usd_per_hour": round(self.idle_hourly, 4),
            "idle_usd_per_day": round(self.idle_hourly * 24, 2),
            "max_usd_per_hour": round(self.max_hourly, 4),
        }


def disk_hourly(book: PriceBook, region: str, disk_type: str, size_gb: int) -> float:
    return size_gb * book.disk_gb_month(region, disk_type, False) / HOURS_PER_MONTH


def system_machine_hourly(region: str, machine_type: str) -> float:
    try:
        return SYSTEM_MACHINE_USD_PER_HOUR[region][machine_type]
    except KeyError:
        raise PriceError(f"no price for system machine {machine_type} in {region}",
                         "use e2-medium, e2-standard-2 or e2-standard-4 in us-central1 or "
                         "asia-northeast1") from None


def gpu_node_hourly(book: PriceBook, region: str, machine_type: str, accelerator: str,
                    gpus: int, local_ssds: int, spot: bool, disk_type: str, disk_gb: int) -> float:
    """One GPU node: host + GPUs + local SSD + boot disk (GKE bills the node VM like any VM)."""
    total = book.machine_hourly(region, machine_type, spot)
    total += gpus * book.gpu_hourly(region, accelerator, spot)
    if local_ssds:
        total += (local_ssds * LOCAL_SSD_GB * book.disk_gb_month(region, "local-ssd", spot)
                  / HOURS_PER_MONTH)
    return total + disk_hourly(book, region, disk_type, disk_gb)


def pool_node_cost(book: PriceBook, region: str, pool: GpuPoolSpec) -> NodeCost:
    gpus = gke_rules.gpus_per_node(pool)
    ssds = gke_rules.local_ssds(pool)
    usd = gpu_node_hourly(book, region, pool.machine_type, pool.accelerator, gpus, ssds,
                          pool.spot, pool.disk_type, pool.disk_size_gb)
    machine = MACHINES[pool.machine_type]
    detail = (f"{machine.name} + {gpus}x {GPUS[pool.accelerator].display}"
              + (f" + {ssds}x 375 GB NVMe" if ssds else "") + (", spot" if pool.spot else ""))
    return NodeCost(pool.name, detail, usd)


def system_node_cost(book: PriceBook, spec: GkeSpec) -> NodeCost:
    # Spot system nodes are priced at the on-demand rate: an upper bound, as no E2 spot rate
    # is in the book.
    usd = (system_machine_hourly(spec.region, spec.system_machine_type)
           + disk_hourly(book, spec.region, spec.system_disk_type, spec.system_disk_size_gb))
    return NodeCost("system", f"{spec.system_machine_type}, on-demand", usd)


def cluster_cost(spec: GkeSpec, book: PriceBook) -> ClusterCost:
    return ClusterCost(
        region=spec.region,
        fee=CLUSTER_FEE_USD_PER_HOUR,
        system=system_node_cost(book, spec),
        system_nodes=(spec.system_min_nodes, spec.system_max_nodes),
        gpu=tuple((pool_node_cost(book, spec.region, pool), pool.max_nodes) for pool in spec.gpu_pools),
    )
