"""What a GPU node of gpuctl's GKE pools costs per hour, from the price book.

The machine a pod of an accelerator lands on comes from the GKE program's table
(gpuctl_infra.gke_spec: the pool's default machine); a pod that asks for more GPUs than that
machine has needs a bigger machine of the same family, which the catalog may know.
"""

from __future__ import annotations

from ..errors import PriceError
from ..prices.model import PriceBook


def _gpus_on(machine) -> tuple[int, ...]:
    return machine.gpu_counts


def node_machine(accelerator: str, gpus: int = 1) -> tuple[str | None, str]:
    """(machine type, why): the pool's default machine when it holds `gpus`, else the smallest
    catalog machine of the same family that does; None when gpuctl knows none."""
    from gpuctl_infra.catalog import MACHINES
    from gpuctl_infra.gke_spec import BY_GPU

    entry = BY_GPU.get(accelerator)
    if entry is None:
        return None, f"gpuctl's GKE pools have no {accelerator} node"
    default = MACHINES[entry.default_machine]
    if max(_gpus_on(default)) >= gpus:
        return default.name, f"the default gpu-{entry.short} pool's machine"
    fits = [m for m in MACHINES.values() if m.name.startswith(entry.machine_prefix)
            and (m.builtin_gpu in (None, accelerator))
            and (m.builtin_gpu == accelerator or accelerator in m.attachable_gpus)
            and max(_gpus_on(m)) >= gpus]
    if not fits:
        return None, f"no machine gpuctl knows has {gpus}x {accelerator}"
    best = min(fits, key=lambda m: (max(_gpus_on(m)), m.vcpus))
    return best.name, (f"needs a pool of {best.name}: the default gpu-{entry.short} pool "
                       f"({default.name}) has {max(_gpus_on(default))} GPU(s) per node")


def gpu_node_hourly(prices: PriceBook, region: str, accelerator: str, gpus: int,
                    spot: bool) -> dict:
    """{"usd_per_hour", "machine", "detail", "fits_default_pool"}; usd_per_hour is None when
    no machine or no price is known."""
    machine, why = node_machine(accelerator, gpus)
    model = "spot" if spot else "on-demand"
    fits = machine is not None and why.startswith("the default")
    if machine is None:
        return {"usd_per_hour": None, "machine": None, "detail": why, "fits_default_pool": False}
    from gpuctl_infra import gke_rules
    from gpuctl_infra.gke_spec import GpuPoolSpec

    from .costs import gpu_node_hourly as node_price

    # The node a pool of this machine makes (its local SSD and boot disk as the GKE program
    # sets them), priced like every other node: one price for one node.
    pool = GpuPoolSpec(accelerator=accelerator, machine_type=machine, max_nodes=1, spot=spot,
                       gpus_per_node=gpus)
    try:
        usd = node_price(prices, region, machine, accelerator, gke_rules.gpus_per_node(pool),
                         gke_rules.local_ssds(pool), spot, pool.disk_type, pool.disk_size_gb)
    except PriceError as exc:
        return {"usd_per_hour": None, "machine": machine, "detail": exc.message,
                "fits_default_pool": fits}
    detail = f"{machine} + {gpus}x {accelerator}, {model}, {region}"
    if not fits:
        detail += f"; {why}"
    return {"usd_per_hour": round(usd, 4), "machine": machine, "detail": detail,
            "fits_default_pool": fits}
