"""What a GPU node of gpuctl's GKE pools costs per hour, from the price book.

The machine each accelerator runs on comes from the GKE program's table
(gpuctl_infra.gke_spec), so the figure is for the node a pod of that accelerator gets.
"""

from __future__ import annotations

from ..errors import PriceError
from ..prices.model import PriceBook


def node_machine(accelerator: str) -> str | None:
    from gpuctl_infra.gke_spec import BY_GPU

    entry = BY_GPU.get(accelerator)
    return entry.default_machine if entry else None


def gpu_node_hourly(prices: PriceBook, region: str, accelerator: str, gpus: int,
                    spot: bool) -> dict:
    """{"usd_per_hour", "machine", "detail"}; usd_per_hour is None when a price is unknown."""
    machine = node_machine(accelerator)
    model = "spot" if spot else "on-demand"
    if machine is None:
        return {"usd_per_hour": None, "machine": None,
                "detail": f"gpuctl's GKE pools have no {accelerator} node"}
    try:
        host = prices.machine_hourly(region, machine, spot)
        gpu = prices.gpu_hourly(region, accelerator, spot)
    except PriceError as exc:
        return {"usd_per_hour": None, "machine": machine, "detail": exc.message}
    return {"usd_per_hour": round(host + gpus * gpu, 4), "machine": machine,
            "detail": f"{machine} + {gpus}x {accelerator}, {model}, {region}"}
