"""What a GKE cluster costs per hour: the cluster fee, the system pool, and each GPU node.

A GPU node is priced like a VM (cost.py): host + GPUs + local SSD + boot disk, from the price
book in force. Idle, a cluster bills its fee and its system pool only; GPU pools start at zero
nodes, so the plan states both what it costs idle and what each GPU node adds.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuctl_infra import gke_rules
from gpuctl_infra.catalog import GPUS, MACHINES
from gpuctl_infra.gke_spec import GkeSpec, GpuPoolSpec

from ..cost import node_hourly
from ..errors import PriceError
from ..prices.model import HOURS_PER_MONTH, PriceBook

# GCP_FACTS.md: 0.10 USD per cluster-hour. The free tier credit covers one zonal cluster per
# billing account; we count the fee anyway, since it may already be used by another cluster.
CLUSTER_FEE_USD_PER_HOUR = 0.10

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


def system_machine_hourly(region: str, machine_type: str, book: PriceBook | None = None) -> float:
    """An E2 system node's host, on demand, from the price book (E2 rates are in it where
    Google's pages were read; elsewhere the book says it has none)."""
    if book is None:
        from ..prices.store import active_price_book

        book = active_price_book()
    return book.machine_hourly(region, machine_type, False)


def gpu_node_hourly(book: PriceBook, region: str, machine_type: str, accelerator: str,
                    gpus: int, local_ssds: int, spot: bool, disk_type: str, disk_gb: int) -> float:
    """One GPU node, priced by the one price function (cost.node_hourly): host + GPUs + local
    SSD + boot disk + its external IPv4 address. Raises PriceError when an item has no price."""
    hourly = node_hourly(book, region, machine_type, gpu=accelerator, gpus=gpus,
                         local_ssds=local_ssds, model="SPOT" if spot else "STANDARD",
                         disk_type=disk_type, disk_gb=disk_gb)
    if hourly.unknown:
        line = next(line for line in hourly.lines if line.usd_per_hour is None)
        raise PriceError(line.note or f"no price for {line.item} in {region}",
                         "run `gpuctl prices refresh` with Google Cloud credentials")
    return hourly.running


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
    usd = (system_machine_hourly(spec.region, spec.system_machine_type, book)
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
